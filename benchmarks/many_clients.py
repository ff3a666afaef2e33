"""Per-iteration time against the number of clients, in one process: is an iteration's cost the
data's (O(nnz + n·k)) rather than O(n·d)?

    python benchmarks/many_clients.py [--dataset w8a] [--clients 100,1000,10000,49749] [--iters 400]
                                      [--log-every 1] [--metrics every] [--repeats 5] [--json]

det-CGD1, rand-1, diag-inv.  µs per iteration by the difference of two run lengths (K and 2K,
best of ``--repeats``, the client counts interleaved per round).  ``49749`` on w8a is one row per
client.  Also printed: the bytes of the run's aggregation buffers (per-range rows, independent of
n) and of the per-client column index (O(nnz + n)).  Threads: ``NUMBA_NUM_THREADS``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="w8a")
    ap.add_argument("--clients", default="100,1000,10000,49749")
    ap.add_argument("--iters", type=int, default=400, help="K: runs of K and 2K iterations are timed")
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--metrics", default="every", choices=("every", "logged"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)

    import numba
    from cgdbench import RunConfig, build, run
    from cgdbench.algorithms._common import SketchBufs, Work
    from cgdbench.algorithms.det_cgd import DetCgdJob

    K = ns.iters
    try:
        counts = [int(c) for c in ns.clients.split(",")]
    except ValueError:
        ap.error(f"--clients {ns.clients!r}: write client counts separated by commas, e.g. 100,1000")
    cells = {}
    for n in counts:
        cfg = {k: RunConfig(dataset=ns.dataset, clients=n, algorithm="det-cgd1", compressor="rand-1",
                            stepsize="diag-inv", iters=k, log_every=ns.log_every, metrics=ns.metrics)
               for k in (K, 2 * K)}
        built = {k: build(c, data_dir=ns.data_dir) for k, c in cfg.items()}
        job = DetCgdJob(built[K])
        packs = [a for a in job.args if isinstance(a, (Work, SketchBufs))]
        agg = sum(a.nbytes for pack in packs for a in pack)
        # O(n + nnz): the clients' column index and their random-stream keys
        cols = sum(a.nbytes for a in built[K].problem.client_columns) + 8 * n
        cells[n] = dict(cfg=cfg, built=built, best={K: math.inf, 2 * K: math.inf}, agg_bytes=agg, col_bytes=cols)
        for k in (K, 2 * K):
            run(cfg[k], built=built[k])  # compile / warm
    for _ in range(ns.repeats):
        for n, c in cells.items():
            for k in (K, 2 * K):
                c["best"][k] = min(c["best"][k], run(c["cfg"][k], built=c["built"][k]).meta["run_seconds"])
    us = {n: (c["best"][2 * K] - c["best"][K]) / K * 1e6 for n, c in cells.items()}
    out = {"dataset": ns.dataset, "threads": numba.get_num_threads(), "log_every": ns.log_every,
           "metrics": ns.metrics, "K": K, "us_per_iteration": us,
           "aggregation_bytes": {n: c["agg_bytes"] for n, c in cells.items()},
           "column_index_bytes": {n: c["col_bytes"] for n, c in cells.items()}}
    if ns.json:
        print(json.dumps(out))
        return
    first = us[counts[0]]
    print(f"{ns.dataset}, det-CGD1 rand-1 diag-inv, log every {ns.log_every} (--metrics {ns.metrics}), "
          f"{numba.get_num_threads()} thread(s); µs/iteration by the difference of {K} and {2 * K} iterations, "
          f"best of {ns.repeats}")
    print(f"  {'clients':>8} {'µs/iter':>9} {'vs first':>8} {'aggregation':>12} {'client index':>13}")
    for n in counts:
        print(f"  {n:>8} {us[n]:9.1f} {us[n] / first:7.2f}x {cells[n]['agg_bytes'] / 1e3:9.1f} kB "
              f"{cells[n]['col_bytes'] / 1e6:10.2f} MB")


if __name__ == "__main__":
    from cgdbench.errors import CgdbenchError
    try:
        sys.exit(main())
    except CgdbenchError as exc:  # bad data or options: one line, not a traceback
        sys.exit(f"{sys.argv[0]}: error: {exc}")
