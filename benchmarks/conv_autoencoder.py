"""The saddle paper's convolutional autoencoder: one minibatch gradient (batch 64, forward + backward)
of the jitted kernels against the NumPy reference, and 2 threads against 1, side by side in one process.

    python benchmarks/conv_autoencoder.py [--dataset digits|mnist|PATH] [--repeats 15] [--batch 64]

Setting: the default architecture (encoder conv 16 k3 s2 p1, 32 k3 s2 p1, 64 k7 s1 p0; the mirror
decoder; d = 210,369) on 28×28 images, PyTorch's init, the same 64 random rows for every timing.
``jit 1T``/``jit 2T`` are :func:`cgdbench.problems.conv.conv_pass` (8 fixed chunks, reduced in order)
with ``numba.set_num_threads(1)``/``(2)``; ``numpy`` is :func:`cgdbench.reference.conv_ae_loss_grad_ref`
(vectorised over the batch, tensordot per kernel offset, BLAS with its default threads).  Rounds are
interleaved (three timed calls of each per round, after one untimed call that lets the previous case's
spinning BLAS/OpenMP threads go idle) so a burst of load hits all alike; min and median of 3·``--repeats``.
``OPENBLAS_NUM_THREADS=1`` gives the one-thread NumPy figure.
The issue's targets: jit ≥ 5x numpy, 2T ≥ 1.7x 1T on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ns = ap.parse_args(argv)
    from cgdbench import problems, reference
    from cgdbench.problems.conv import conv_pass, pass_buffers
    p = problems.get("conv-autoencoder").create(dataset=ns.dataset, data_dir=ns.data_dir)
    x = p.x0("random", seed=0)
    rows = np.sort(np.random.default_rng(0).choice(p.m, ns.batch, replace=False)).astype(np.int64)
    g = np.empty(p.d)
    bufs = pass_buffers(p.arch)
    threads = numba.config.NUMBA_NUM_THREADS

    def jit(nt):
        numba.set_num_threads(nt)
        return conv_pass(p.Iv, p.F, 0.0, x, rows, rows.size, g, *bufs)

    def ref():
        return reference.conv_ae_loss_grad_ref(p.arch, x, p.F[rows])

    cases = {"jit 1T": lambda: jit(1), "numpy": ref}
    if threads >= 2:
        cases["jit 2T"] = lambda: jit(2)
    for fn in cases.values():  # compile / warm up
        fn()
    f1 = jit(1)
    assert abs(f1 - ref()[0]) <= 1e-9 * abs(f1), "kernel and reference disagree"
    times = {k: [] for k in cases}
    for _ in range(ns.repeats):
        for k, fn in cases.items():
            fn()  # a call before the timed ones: the other case's spinning threads (BLAS, OpenMP) go idle
            for _ in range(3):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    numba.set_num_threads(threads)
    res = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * float(np.median(v))} for k, v in times.items()}
    out = {"problem": p.dataset_info["architecture"], "d": p.d, "batch": ns.batch, "times": res,
           "numpy_over_jit_1T": res["numpy"]["median_ms"] / res["jit 1T"]["median_ms"]}
    if "jit 2T" in res:
        out["numpy_over_jit_2T"] = res["numpy"]["median_ms"] / res["jit 2T"]["median_ms"]
        out["jit_1T_over_2T"] = res["jit 1T"]["median_ms"] / res["jit 2T"]["median_ms"]
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
