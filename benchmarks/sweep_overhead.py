"""What a sweep costs beyond its iterations: in-process vs a shell loop of `cgdbench run`, 1 vs 2 workers.

    python benchmarks/sweep_overhead.py [--data-dir DIR] [--seeds 5] [--iters 2000] [--loop-cells 5]

The sweep: a1a, 10 clients, K = 2000, log every 10, det-CGD1 and det-CGD2 × rand-1 / rand-k:10 ×
diag-inv / l-inv × ``--seeds`` seeds (40 cells with 5 seeds).  For each way of running it the
script reports the wall time against the sum of the cells' iteration seconds (``run_seconds``)
plus their setup (``compile_seconds``: data, stepsize and kernel build or load, which an
in-process sweep pays once per distinct setting), each run into a fresh temporary file.  The
shell loop runs ``--loop-cells`` cells as separate processes and is extrapolated per cell.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def grid(seeds, iters):
    return {"dataset": "a1a", "clients": 10, "iters": iters, "log_every": 10, "algorithm": ["det-cgd1", "det-cgd2"],
            "compressor": ["rand-1", "rand-k:10"], "stepsize": ["diag-inv", "l-inv"], "seed": list(range(seeds))}


def stored_seconds(path):
    from cgdbench import store
    run = setup = 0.0
    for i in store.list_runs(path):
        m = store.read_run(path, i)["meta"]
        run += m["run_seconds"]
        setup += m["compile_seconds"]
    return run, setup


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--loop-cells", type=int, default=5)
    ns = ap.parse_args(argv)
    from cgdbench import sweep
    sw = sweep.expand(grid(ns.seeds, ns.iters))
    print(f"{len(sw.cells)} cells: a1a, 10 clients, K = {ns.iters}, log every 10", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # warm Numba's disk cache so every variant below loads, not compiles, the kernels
        sweep.run_sweep(sweep.expand({**grid(1, 5), "seed": 0}), Path(tmp) / "warm.h5", data_dir=ns.data_dir,
                        progress=False, log=lambda m: None)
        rows = []
        for label, kw in (("in-process", {}), ("2 workers", {"workers": 2})):
            out = Path(tmp) / f"{label}.h5"
            t = time.perf_counter()
            sweep.run_sweep(sw, out, data_dir=ns.data_dir, progress=False, log=lambda m: None, **kw)
            wall = time.perf_counter() - t
            run, setup = stored_seconds(out)
            rows.append((label, len(sw.cells), wall, run, setup))
        out = Path(tmp) / "loop.h5"
        t = time.perf_counter()
        for c in sw.cells[:ns.loop_cells]:
            cfg = c.config
            cmd = [sys.executable, "-m", "cgdbench.cli", "run", "--dataset", cfg.dataset, "--clients", str(cfg.clients),
                   "--iters", str(cfg.iters), "--log-every", "10", "--algorithm", cfg.algorithm, "--compressor",
                   cfg.compressor, "--stepsize", cfg.stepsize, "--seed", str(cfg.seed), "--out", str(out), "--quiet"]
            if ns.data_dir:
                cmd += ["--data-dir", ns.data_dir]
            subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t
        run, setup = stored_seconds(out)
        rows.append(("shell loop", ns.loop_cells, wall, run, setup))
    print(f"{'how':<12} {'cells':>5} {'wall s':>8} {'Σ iterations s':>15} {'Σ setup s':>10} "
          f"{'wall/(iter+setup)':>18} {'wall/iter':>10}")
    for label, n, wall, run, setup in rows:
        print(f"{label:<12} {n:>5} {wall:8.2f} {run:15.2f} {setup:10.2f} {wall / (run + setup):18.2f} "
              f"{wall / run:10.1f}")
    print(json.dumps([dict(zip(("how", "cells", "wall", "iterations", "setup"), r)) for r in rows]))


if __name__ == "__main__":
    main()
