"""The engine against a bare two-pass CSR kernel (the floor), under each threading setting, quiet and loaded.

    python benchmarks/threading_policy.py [--data-dir DIR] [--settings default,omp-spin,...] [--load 0,1]

Every cell is a fresh process (Numba's threading layer and OpenMP's wait policy are fixed
per process) that times, side by side and interleaved, µs per iteration of

* the **floor**: z = A x per row, one exp per row, g = Aᵀ s, ``prange`` over the same fixed
  client ranges as the engine, ranges reduced in order, then x ← x − γ g.  It is what any
  first-order method on this data must do per iteration, with nothing else;
* the **engine**: ``cgdbench.run`` of det-CGD1, rand-1, diag-inv (metrics logged every
  ``--log-every`` iterations), per-iteration seconds as the run reports them.

``--load 1`` starts one competing CPU-bound process (``python -c 'while True: pass'``)
for the cell and kills it by its PID afterwards.  The median of ``--repeats`` timings is
reported with the 10-90% spread.  Settings:

===============  =============================================================
``default``      the package's policy: Numba's layer, the path chosen per chunk
``omp-spin``     OpenMP, default (spinning) wait, always the parallel path: the
                 behaviour before the policy
``omp-passive``  OpenMP with ``OMP_WAIT_POLICY=passive``, always parallel
``workqueue``    Numba's workqueue layer, always parallel
``tbb``          TBB, always parallel (needs the ``tbb`` wheel and its library on
                 ``LD_LIBRARY_PATH``; reported unavailable otherwise)
===============  =============================================================

The floor kernel has only one path, so under ``default`` it shows the parallel floor.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "omp-spin": {"NUMBA_THREADING_LAYER": "omp", "CGDBENCH_PATH": "parallel"},
    "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive", "CGDBENCH_PATH": "parallel"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue", "CGDBENCH_PATH": "parallel"},
    "tbb": {"NUMBA_THREADING_LAYER": "tbb", "CGDBENCH_PATH": "parallel"},
}

CHILD = r"""
import json, sys, time
import numpy as np
import numba
args = json.loads(sys.argv[1])
import cgdbench
from cgdbench import RunConfig, build, run
from cgdbench.algorithms._common import client_ranges

sys.path.insert(0, args["bench_dir"])
from peers import floor_kernel  # the floor: one definition, shared with peers.py
floor_iterations = floor_kernel()

cfg = RunConfig(dataset=args["dataset"], clients=args["clients"], algorithm="det-cgd1", compressor="rand-1",
                stepsize="diag-inv", iters=args["iters"], log_every=args["log_every"])
b = build(cfg, data_dir=args["data_dir"])
p = b.problem
# the floor's ranges: the engine's client ranges, in rows
ranges = client_ranges(p.n)
row_ptr = p.client_ptr[ranges]
gbuf = np.zeros((ranges.size - 1, p.d))
x = np.zeros(p.d)
K = args["iters"]
floor_iterations(1, x, p.indptr, p.indices, p.values, p.b, row_ptr, gbuf, 1e-3)  # compile
run(cfg, built=b)  # compile
fl, en = [], []
for _ in range(args["repeats"]):
    x[:] = 0.0
    t = time.perf_counter()
    floor_iterations(K, x, p.indptr, p.indices, p.values, p.b, row_ptr, gbuf, 1e-3)
    fl.append((time.perf_counter() - t) / K)
    tr = run(cfg, built=b)
    en.append(tr.meta["run_seconds"] / K)
print(json.dumps({"layer": numba.threading_layer(), "threads": numba.get_num_threads(), "floor": fl, "engine": en,
                  "omp_wait_policy": __import__("os").environ.get("OMP_WAIT_POLICY")}))
"""


def _q(v, q):
    import numpy as np
    return float(np.quantile(v, q))


def cell(setting: str, threads: int, load: int, ns) -> dict | None:
    own = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "CGDBENCH_PATH")
    env = {k: v for k, v in os.environ.items() if k not in own}
    env.update(SETTINGS[setting], NUMBA_NUM_THREADS=str(threads))
    args = json.dumps({"dataset": ns.dataset, "clients": ns.clients, "iters": ns.iters, "log_every": ns.log_every,
                       "data_dir": ns.data_dir, "repeats": ns.repeats,
                       "bench_dir": os.path.dirname(os.path.abspath(__file__))})
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        time.sleep(0.2 if load else 0)
        r = subprocess.run([sys.executable, "-c", CHILD, args], env=env, capture_output=True, text=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None, help="where a1a/w8a are (default: cgdbench's data-directory rule)")
    ap.add_argument("--dataset", default="a1a")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--settings", default="default,omp-spin,omp-passive,workqueue,tbb")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--load", default="0,1", help="competing CPU-bound processes per cell (comma list)")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)
    from cgdbench import data
    if ns.dataset in data.manifest() and data.locate(ns.dataset, ns.data_dir) is None:
        ap.error(f"dataset {ns.dataset!r} not found in {', '.join(map(str, data.data_dirs(ns.data_dir)))}; "
                 "pass --data-dir, set CGDBENCH_DATA or run `cgdbench datasets add DIR`")
    rows = []
    print(f"{ns.dataset}, {ns.clients} clients, det-CGD1 rand-1 diag-inv, K = {ns.iters}, log every {ns.log_every}; "
          f"µs/iteration, median [10-90%] of {ns.repeats}", flush=True)
    print(f"{'setting':<12} {'load':>4} {'thr':>3} {'layer':<10} {'floor':>22} {'engine':>22} {'engine/floor':>12}")
    for load in map(int, ns.load.split(",")):
        for setting in ns.settings.split(","):
            for threads in map(int, ns.threads.split(",")):
                res = cell(setting, threads, load, ns)
                rows.append({"setting": setting, "load": load, "threads": threads, **res})
                if "error" in res:
                    print(f"{setting:<12} {load:>4} {threads:>3} unavailable: {res['error'][:80]}", flush=True)
                    continue
                f, e = res["floor"], res["engine"]
                fmt = lambda v: f"{1e6 * _q(v, .5):7.1f} [{1e6 * _q(v, .1):5.1f}-{1e6 * _q(v, .9):6.1f}]"  # noqa: E731
                print(f"{setting:<12} {load:>4} {threads:>3} {res['layer']:<10} {fmt(f):>22} {fmt(e):>22} "
                      f"{_q(e, .5) / _q(f, .5):12.2f}", flush=True)
    if ns.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
