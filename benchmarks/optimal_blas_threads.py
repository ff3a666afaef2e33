"""The det-CGD1 optimal stepsize's barrier solve alone, timed under the caller's BLAS thread setting.

    OPENBLAS_NUM_THREADS=1 python benchmarks/optimal_blas_threads.py a1a rand-1
    OPENBLAS_NUM_THREADS=2 python benchmarks/optimal_blas_threads.py w8a rand-1

Run it quiet and beside ``python3 -c 'while True: pass' &`` (docs/performance.md, "One BLAS thread for the
setup"): the engine runs this solve on one BLAS thread (cgdbench.parallel.one_blas_thread).
"""
import sys
import time

import numpy as np

from cgdbench import compressors
from cgdbench.algorithms._common import finite_sum_problem
from cgdbench.config import RunConfig
from cgdbench.stepsizes import optimal


def main(dataset: str, spec: str) -> None:
    p = finite_sum_problem(RunConfig(dataset=dataset, iters=10), None, False)
    L = p.smoothness()
    sk = compressors.make(spec, p.d, None, np.diag(L))
    t0 = time.perf_counter()
    _, status = optimal._solve_barrier(sk.moment_matrix(), L, 300.0)
    print(dataset, spec, f"{time.perf_counter() - t0:.2f} s", status.split(";")[-1])


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("a1a", "rand-1")))
