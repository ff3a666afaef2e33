"""The papers' distributed experiment, jitted engine vs a plain NumPy loop, in one process.

    python benchmarks/distributed_a1a.py [--data-dir ../shared/datasets] [--iters 2000] [--repeats 3]

Setting (det-CGD README): a1a, λ = 0.1, 100 clients (rows split in order),
rand-1, K = 2000, det-CGD1 (Algorithm 1) with the diag⁻¹(L) stepsize scaled by
Theorem 2.  The NumPy reference loops over clients in Python with scipy.sparse
products, the way a researcher would first write it, and logs the same metrics
(loss, ‖∇f‖², D-norm, bits).  Compile time is measured in a fresh process with an
empty Numba cache (cold) and with the on-disk cache (warm), separately from run time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


COMPILE_SNIPPET = """
import time, json, sys
t0 = time.perf_counter()
import cgdbench
from cgdbench import RunConfig, run
t1 = time.perf_counter()
tr = run(RunConfig(dataset="a1a", lam=0.1, clients=100, compressor="rand-1", stepsize="diag-inv", iters=1),
         data_dir=sys.argv[1])
print(json.dumps({"import_s": t1 - t0, "build_and_compile_s": tr.meta["compile_seconds"]}))
"""


def compile_times(data_dir: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold", "warm"):  # the second process finds the first one's cache
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            r = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET, data_dir], env=env,
                               capture_output=True, text=True, check=True)
            out[label] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("CGDBENCH_DATA", "../shared/datasets"))
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--numpy-iters", type=int, default=None, help="iterations for the NumPy loop (default: --iters)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)

    import numba

    from cgdbench import RunConfig, build, run
    from cgdbench.reference import numpy_reference
    cfg = RunConfig(dataset="a1a", lam=0.1, clients=100, algorithm="det-cgd1", compressor="rand-1",
                    stepsize="diag-inv", iters=ns.iters, seed=0)
    b = build(cfg, data_dir=ns.data_dir)
    run(RunConfig(**{**cfg.to_dict(), "iters": 1}), data_dir=ns.data_dir)  # warm-up: compile outside timings
    jit_times = []
    for _ in range(ns.repeats):
        tr = run(cfg, built=b)
        jit_times.append(tr.meta["run_seconds"] / ns.iters)
    K_np = ns.numpy_iters or ns.iters
    t = time.perf_counter()
    x_np, loss_np = numpy_reference(b.problem, b.D.diag, b.D.det_root(), K_np, seed=0)
    np_time = (time.perf_counter() - t) / K_np
    res = {
        "command": " ".join(["python", *sys.argv]),
        "threads": numba.get_num_threads(), "threading_layer": numba.threading_layer(),
        "jit_us_per_iter_best": 1e6 * min(jit_times), "jit_us_per_iter_all": [1e6 * v for v in jit_times],
        "numpy_us_per_iter": 1e6 * np_time, "speedup": np_time / min(jit_times),
        "final_loss_jit": float(tr.loss[-1]), "final_loss_numpy": float(loss_np[-1]),
        "compile": compile_times(ns.data_dir),
    }
    if ns.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"a1a, λ=0.1, n=100, rand-1, det-CGD1 diag⁻¹(L), K={ns.iters}, threads={res['threads']} "
              f"({res['threading_layer']})")
        print(f"  jitted engine : {res['jit_us_per_iter_best']:8.1f} µs/iteration (best of {ns.repeats}; all: "
              + ", ".join(f"{v:.1f}" for v in res["jit_us_per_iter_all"]) + ")")
        print(f"  NumPy loop    : {res['numpy_us_per_iter']:8.1f} µs/iteration (K={K_np})")
        print(f"  speed-up      : {res['speedup']:8.1f}x")
        print(f"  final loss    : jit {res['final_loss_jit']:.6f}, numpy {res['final_loss_numpy']:.6f} "
              "(different random streams)")
        c = res["compile"]
        print(f"  compile       : cold {c['cold']['build_and_compile_s']:.2f} s, warm (cache) "
              f"{c['warm']['build_and_compile_s']:.2f} s; import {c['cold']['import_s']:.2f} s")


if __name__ == "__main__":
    main()
