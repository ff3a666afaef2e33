"""pytest-benchmark suite for the kernels (not part of the default `pytest` run).

    pytest benchmarks/pytest_suite --benchmark-autosave                 # record
    pytest benchmarks/pytest_suite --benchmark-compare --benchmark-compare-fail=min:50%

(This folder has no ``__init__.py`` so that asv's discovery does not import it.)

Each kernel is timed next to its NumPy reference so a saved run also holds the ratio.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

_shared = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
if not os.environ.get("CGDBENCH_DATA") and (_shared / "a1a").is_file():  # this workspace's layout
    os.environ["CGDBENCH_DATA"] = str(_shared)

from cgdbench import RunConfig, build, compressors, data, run  # noqa: E402
from cgdbench.problems.logreg import LogRegNonconvex, logistic_client_grad  # noqa: E402
from cgdbench.reference import logistic_loss_grad  # noqa: E402

#: None: names resolve by cgdbench's data-directory rule; a1a when it is found, else the synthetic default
DATA_DIR = None
HAVE_A1A = data.locate("a1a") is not None


@pytest.fixture(scope="module")
def a1a():
    p = LogRegNonconvex(data.load("a1a" if HAVE_A1A else None), lam=0.1)
    A = sp.csr_matrix((p.values, p.indices, p.indptr), shape=(p.m, p.d))
    x = np.random.default_rng(0).normal(size=p.d) * 0.1
    return p, A, x


def test_logistic_grad_kernel(benchmark, a1a):
    p, _, x = a1a
    g, z = np.empty(p.d), np.empty(p.m)
    benchmark(logistic_client_grad, x, p.indptr, p.indices, p.values, p.b, 0, p.m, 1.0 / p.m, True, g, z)


def test_logistic_grad_numpy(benchmark, a1a):
    p, A, x = a1a

    benchmark(logistic_loss_grad, A, p.b, x)


@pytest.mark.parametrize("spec", ["rand-1", "rand-k:0.01", "bern-q:0.1"])
@pytest.mark.parametrize("d", [1_000, 100_000])
def test_sketch_messages(benchmark, spec, d):
    sk = compressors.make(spec, d, np.linspace(0, d, 11).astype(np.int64))
    g = np.random.default_rng(0).normal(size=d)
    sk.messages(g, 0, 2)
    benchmark(sk.messages, g, 0, 1000)


def test_engine_100_iterations_100_clients(benchmark):
    cfg = RunConfig(dataset="a1a" if HAVE_A1A else None, clients=100, compressor="rand-1",
                    stepsize="diag-inv", iters=100)
    b = build(cfg, data_dir=DATA_DIR)
    run(cfg, built=b)
    benchmark(run, cfg, built=b)
