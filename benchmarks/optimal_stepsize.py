"""Time the optimal-stepsize solves on real smoothness matrices.

    python benchmarks/optimal_stepsize.py [--data-dir ../shared/datasets] [--full-sizes 16,32,48]

* ``optimal-diag`` (barrier-Newton on d variables) for a1a (d = 123) and w8a (d = 300),
  rand-1 and rand-k with k = d/4;
* the full det-CGD1 program (13) by the barrier Newton-CG for a1a (d = 123, target <= 10 s)
  and w8a (d = 300), rand-1 and rand-k with k = d/4;
* side by side, barrier Newton-CG vs Clarabel (cvxpy) on the leading d×d block of a1a's L for
  ``--full-sizes`` (Clarabel is what limited the full program to d <= 64 before).
"""
import argparse
import os
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("CGDBENCH_DATA", "../shared/datasets"))
    ap.add_argument("--full-sizes", default="16,32,48")
    ns = ap.parse_args(argv)
    os.environ["CGDBENCH_CACHE"] = tempfile.mkdtemp()  # measure solves, not cache hits

    from cgdbench import compressors, data, stepsizes
    from cgdbench.problems import LogRegNonconvex

    Ls = {name: LogRegNonconvex(data.load(name, data_dir=ns.data_dir), lam=0.1).smoothness() for name in ("a1a", "w8a")}
    from cgdbench.stepsizes import optimal

    def timed(rule, sk, L):
        t = time.perf_counter()
        D, info = stepsizes.build(rule, "det-cgd1", sk, L)
        return D, info, time.perf_counter() - t

    print("optimal-diag (det-CGD1/2, diagonal D) and the full det-CGD1 optimum (13), barrier Newton-CG:")
    for name, L in Ls.items():
        d = L.shape[0]
        for spec in ("rand-1", f"rand-k:{d // 4}"):
            sk = compressors.make(spec, d)
            ref, _ = stepsizes.build("diag-inv", "det-cgd1", sk, L)
            diag, info, dt = timed("optimal-diag", sk, L)
            print(f"  {name:4} d={d:3} {spec:10} diagonal {dt:7.3f} s   1/det(D)^(1/d) = {1 / diag.det_root():.6g} "
                  f"(diag-inv {1 / ref.det_root():.4g})  condition λ = {info['condition_lambda']:.9f}")
            full, info, dt = timed("optimal", sk, L)
            print(f"  {name:4} d={d:3} {spec:10} full     {dt:7.2f} s   1/det(D)^(1/d) = {1 / full.det_root():.6g} "
                  f"condition λ = {info['condition_lambda']:.9f}\n      {info['solver']['status']}")
    print("barrier Newton-CG vs Clarabel, leading block of a1a's L:")
    L = Ls["a1a"]
    for d in [int(v) for v in ns.full_sizes.split(",")]:
        Ld = L[:d, :d]
        for spec in ("rand-1", f"rand-k:{max(1, d // 4)}"):
            sk = compressors.make(spec, d)
            row = []
            for solver in ("barrier", "CLARABEL"):
                t = time.perf_counter()
                if solver == "barrier":
                    D, _ = optimal._solve_barrier(sk.moment_matrix(), Ld, 600.0)
                else:
                    D, _ = optimal._solve_cvxpy(Ld, *optimal._moment_form(sk), solver, 600.0)
                dt = time.perf_counter() - t
                lam = stepsizes.condition_lambda(stepsizes.StepsizeMatrix.blocks(D, [0, d]), "det-cgd1", sk, Ld)
                ld = (np.linalg.slogdet(D)[1] - d * np.log(max(lam, 1.0))) / d    # made exactly feasible
                row.append(f"{solver} {dt:6.2f} s det^(1/d) {np.exp(ld):.8g}")
            print(f"  d={d:3} {spec:9} " + " | ".join(row))

if __name__ == "__main__":
    main()
