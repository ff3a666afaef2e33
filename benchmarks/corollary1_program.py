"""Corollary 1's exact diagonal program on the papers' distributed setting, timed.

    python benchmarks/corollary1_program.py [--data-dir ../shared/datasets] [--repeats 5] [--solve]

Setting: a1a, λ = 0.1, 100 clients (rows split in order), rand-1, K = 2000, ε² = 1e-4.

* One Newton step's work (φ and its gradient and Hessian) at the program's start, all 100
  client LMIs: the factored client terms (L_i = c₀I + F_iF_iᵀ, rank r ≈ 17 above c₀ = 0.2,
  O(d²r) per client by Woodbury) side by side with the same code given full factors
  (c₀ = 0, r = d: O(d³) per client, what the program cost before).  The two must agree.
* ``--full``: the same for the full-D program (``corollary1-full``): one Newton system's setup
  and one Hessian product at 15 and 40 clients (its rounds' sizes on a1a), factored against full
  factors.
* ``--solve``: the whole solve (constraint generation over the clients, fresh cache),
  with its rounds, time, det(D)^{1/d} and whether it is certified.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("CGDBENCH_DATA", "../shared/datasets"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="also time the full-D program's Newton system")
    ap.add_argument("--solve", action="store_true", help="also run the whole program (minutes)")
    ns = ap.parse_args(argv)
    os.environ["CGDBENCH_CACHE"] = tempfile.mkdtemp()      # measure solves, not cache hits

    from cgdbench import RunConfig, compressors, data, problems
    from cgdbench.stepsizes import corollary1_diag as c1d
    from cgdbench.stepsizes import corollary1_full as c1f
    from cgdbench.stepsizes import distributed as dist

    cfg = RunConfig(dataset="a1a", lam=0.1, clients=100, compressor="rand-1", iters=2000, eps2=1e-4,
                    stepsize="corollary1")
    problem = problems.get(cfg.problem)(data.load("a1a", data_dir=ns.data_dir), lam=cfg.lam, clients=cfg.clients)
    L = problem.smoothness()
    sketch = compressors.make(cfg.compressor, problem.d)
    s = dist.setting_for(problem, problem.x0(cfg.x0), cfg.iters, cfg.eps2)
    factored = dist.factor_clients

    def full_factors(client_L):
        Ls = np.asarray(client_L, dtype=float)
        w, V = np.linalg.eigh(0.5 * (Ls + np.swapaxes(Ls, 1, 2)))
        return 0.0, V * np.sqrt(np.clip(w, 0.0, None))[:, None, :]

    rows = {}
    for label, fac in (("factored", factored), ("full factors", full_factors)):
        phi, derivs, delta, tau, _ = c1d.diag_program(sketch, L, s, factors=fac(s.client_L))
        t = 10.0
        times = []
        for _ in range(ns.repeats):
            t0 = time.perf_counter()
            f = phi(t, delta, tau)
            g, H = derivs(t, delta, tau)
            times.append(time.perf_counter() - t0)
        rows[label] = (min(times), f, g, H)
        r = fac(s.client_L)[1].shape[2]
        print(f"  {label:12} r = {r:3d}: φ + gradient + Hessian, 100 clients, best of {ns.repeats}: "
              f"{1e3 * min(times):8.1f} ms")
    (ta, fa, ga, Ha), (tb, fb, gb, Hb) = rows["factored"], rows["full factors"]
    agree = max(abs(fa - fb) / abs(fb), np.abs(ga - gb).max() / np.abs(gb).max(),
                np.abs(Ha - Hb).max() / np.abs(Hb).max())
    print(f"  speed-up {tb / ta:.1f}x; largest relative difference {agree:.1e}")
    if ns.full:
        lam = dist.client_lambdas(np.diag(dist.best_diag_line_search(sketch, L, s)[0]), sketch, L, s.client_L)
        X = np.random.default_rng(0).normal(size=L.shape)
        X = X + X.T
        for n_sub in (15, 40):
            sub = s.restrict(sorted(int(i) for i in np.argsort(-lam)[:n_sub]))
            rows = {}
            for label, fac in (("factored", factored), ("full factors", full_factors)):
                phi, system, D, tau, _ = c1f.full_program(sketch, L, sub, "det-cgd1", factors=fac(sub.client_L))
                sys_t, hess_t = [], []
                for _ in range(ns.repeats):
                    t0 = time.perf_counter()
                    gD, gt, hess, prec, U = system(100.0, D, tau)
                    t1 = time.perf_counter()
                    out = hess(X, 0.1 * tau)
                    hess_t.append(time.perf_counter() - t1)
                    sys_t.append(t1 - t0)
                rows[label] = (min(sys_t), min(hess_t), gD, out[0])
                print(f"  full-D, {n_sub} clients, {label:12}: Newton system {1e3 * min(sys_t):7.1f} ms, "
                      f"Hessian product {1e3 * min(hess_t):6.2f} ms (best of {ns.repeats})")
            (sa, ha, ga, oa), (sb, hb, gb, ob) = rows["factored"], rows["full factors"]
            diff = max(np.abs(ga - gb).max() / np.abs(gb).max(), np.abs(oa - ob).max() / np.abs(ob).max())
            print(f"  full-D, {n_sub} clients: speed-up {sb / sa:.1f}x (system), {hb / ha:.1f}x (product); "
                  f"largest relative difference {diff:.1e}")
    if ns.solve:
        t0 = time.perf_counter()
        delta, status, certified = c1d.corollary1_diag(sketch, L, s, say=lambda m: print("   ", m[:110], flush=True))
        print(f"  solve: {time.perf_counter() - t0:.1f} s, certified {certified}, "
              f"det(D)^(1/d) = {math.exp(np.mean(np.log(delta))):.6g}")
        print("   ", status[-120:])
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
