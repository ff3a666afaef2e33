"""The conv autoencoder's batch-64 gradient (:func:`cgdbench.problems.conv.conv_pass`) with other sample blocks
and chunk counts, interleaved in one process: does a larger block (the 7×7 layers' 803 KB weight matrices
read once per block) pay?

    python benchmarks/conv_blocks.py [--threads 1] [--rounds 15] [--cases 8:8,16:4,32:2,16:8,4:8]

A case ``B:C`` is ``parse_arch(block=B)`` with ``pass_buffers(arch, chunks=C)``.  The block changes no bit
(docs: conv.py's summation order); the chunk count changes the grouping of the gradient's sum (and caps the
threads a batch can use), so it is a measurement, not an option.  Min and median ms over the rounds.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--cases", default="8:8,16:4,32:2,16:8,4:8")
    ns = ap.parse_args(argv)
    from cgdbench import problems
    from cgdbench.problems import conv as C
    numba.set_num_threads(ns.threads)
    p = problems.get("conv-autoencoder").create()
    x = p.x0("random", seed=0)
    rows = np.sort(np.random.default_rng(0).choice(p.m, ns.batch, replace=False)).astype(np.int64)
    cases = {}
    for spec in ns.cases.split(","):
        block, chunks = (int(v) for v in spec.split(":"))
        arch = C.parse_arch(None, block=block)
        cases[spec] = (arch, C.pass_buffers(arch, chunks=chunks, slots=ns.threads))
    g = np.zeros(p.d)
    for arch, buf in cases.values():  # compile / warm
        C.conv_pass(arch.Iv, p.F, 0.0, x, rows, ns.batch, g, *buf)
    times = {k: [] for k in cases}
    for _ in range(ns.rounds):
        for k, (arch, buf) in cases.items():
            t = time.perf_counter()
            C.conv_pass(arch.Iv, p.F, 0.0, x, rows, ns.batch, g, *buf)
            times[k].append(time.perf_counter() - t)
    res = {k: {"min_ms": round(1e3 * min(v), 2), "median_ms": round(1e3 * float(np.median(v)), 2),
               "scratch_MB": round(cases[k][0].scratch_size() * 8 / 1e6, 1)} for k, v in times.items()}
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
