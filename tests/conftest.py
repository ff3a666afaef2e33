import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real LIBSVM files come through the package's one data-directory rule
# (cgdbench.data.data_dirs); in this workspace they sit in ../shared/datasets.
os.environ.setdefault("CGDBENCH_DATA", str(ROOT.parent / "shared" / "datasets"))


def shared_datasets() -> Path:
    """The directory that holds a1a under the data-directory rule.

    Tests that need the real files fail (never skip) when they are missing: CI always has them.
    """
    from cgdbench import data
    path = data.locate("a1a")
    if path is None:
        pytest.fail(f"real datasets not found in {[str(p) for p in data.data_dirs()]}; set CGDBENCH_DATA "
                    "to the directory that holds a1a (../shared/datasets here)")
    return path.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_datasets()


@pytest.fixture(scope="session")
def small_dataset():
    """A small synthetic dataset (fast tests)."""
    from cgdbench.data import Dataset, _canonical_csr, synthetic_a1a
    A, b = synthetic_a1a(seed=3, m=60, d=12, groups=4)
    return Dataset("tiny", _canonical_csr(A), b, "generated", None)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def cli_main(capsys, monkeypatch):
    """``cli_main(args, cwd=None)``: ``cgdbench ARGS`` run by ``main`` in this process (no interpreter start and
    kernel load per call, ~1.5 s on a 2-core machine), ``(exit code, stdout, stderr)``.  An exception escaping
    ``main`` fails the test; argparse's own exit (bad syntax) is its exit code."""
    from cgdbench.cli import main

    def call(args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as exc:
            rc = exc.code
        out = capsys.readouterr()
        return rc, out.out, out.err
    return call
