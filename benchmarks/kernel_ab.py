"""An older det-CGD kernel against the current one, paired in one process on the same job's arrays.

    python benchmarks/kernel_ab.py OLD_TREE [--dataset a1a] [--clients 100] [--log-every 1]
                                   [--metrics every|logged] [--path parallel|serial] [--chunk 200] [--pairs 25]

``OLD_TREE`` is a checkout of an earlier commit (``git worktree add /tmp/old COMMIT``); its
``cgdbench/algorithms/det_cgd.py`` is loaded as a second module beside the current package (its
kernel uncached, so it compiles here) and must take the current kernel's arguments; both get the
current job's (its ``search_ratio`` too: a change of a job's constants is not what this compares).  The two kernels
run alternating chunks of ``--chunk`` iterations, each on its own job (same config, same arrays'
shapes), ``--pairs`` times; printed: the medians and the median of the per-pair ratios new/old.  On
a shared machine whose speed drifts by 1.5x in minutes this ratio is the figure to trust; separate
processes' timings are not.  ``--log-every 1`` (the default) times iterations with the gradient
metric only; ``--metrics logged --log-every 100`` the lazy ones.  Threads: ``NUMBA_NUM_THREADS``.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old_tree")
    ap.add_argument("--dataset", default="a1a")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--metrics", default="every", choices=("every", "logged"))
    ap.add_argument("--path", default="parallel", choices=("parallel", "serial"))
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=25)
    ns = ap.parse_args(argv)
    src = Path(ns.old_tree) / "cgdbench" / "algorithms" / "det_cgd.py"
    if not src.is_file():
        ap.error(f"{src} not found: OLD_TREE must be a checkout of this repository")

    import numpy as np
    from numba.core.caching import NullCache

    import cgdbench.algorithms as algorithms
    from cgdbench import RunConfig, build
    from cgdbench.algorithms import det_cgd, get

    spec = importlib.util.spec_from_file_location("cgdbench.algorithms._det_cgd_old", src)
    old = importlib.util.module_from_spec(spec)
    register = algorithms.register
    algorithms.register = lambda *a, **k: (lambda cls: cls)  # the old module must not re-register its methods
    try:
        spec.loader.exec_module(old)
    finally:
        algorithms.register = register
    for p in ("parallel", "serial"):  # a cached copy of a module loaded this way cannot be reloaded
        old.det_cgd_chunk.path(p)._cache = NullCache()

    K = (ns.pairs + 3) * ns.chunk + 1  # the iterations the pairs run (the rows buffer is sized by it)
    cfg = RunConfig(dataset=ns.dataset, clients=ns.clients, algorithm="det-cgd1", compressor="rand-1",
                    stepsize="diag-inv", iters=K, log_every=ns.log_every, metrics=ns.metrics)
    b = build(cfg)
    runs = {}
    for name, kernel in (("old", old.det_cgd_chunk), ("new", det_cgd.det_cgd_chunk)):
        job = get(cfg.algorithm).factory(b)
        runs[name] = {"job": job, "fn": kernel.entry(ns.path, (0, 0, K, *job.args)), "k": 0, "us": []}
    for pair in range(ns.pairs + 3):  # the first 3 pairs warm up; the order alternates
        for name in (("old", "new") if pair % 2 else ("new", "old")):
            r = runs[name]
            t = time.perf_counter()
            status, r["k"] = r["fn"](r["k"], r["k"] + ns.chunk, K, *r["job"].args)
            r["us"].append((time.perf_counter() - t) / ns.chunk * 1e6)
            if status != 0:
                raise SystemExit(f"the {name} kernel's run diverged at iteration {r['k']}: nothing left to time")
    o, n = (np.array(runs[k]["us"][3:]) for k in ("old", "new"))
    print(f"{ns.dataset}, {ns.clients} clients, log every {ns.log_every} ({ns.metrics}), {ns.path} path: "
          f"old {np.median(o):.1f} µs, new {np.median(n):.1f} µs per iteration, paired new/old "
          f"{np.median(n / o):.3f} (median of {ns.pairs})")


if __name__ == "__main__":
    main()
