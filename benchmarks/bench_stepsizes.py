"""asv: the optimal-stepsize solvers (det-CGD1's program (13), Corollary 1's diagonal and full-D programs).

Besides seconds, the work counts are tracked: CG products and Newton steps of the det-CGD1
barrier do not depend on the load of the machine, so a change in them is a change in the
solver.  Data: a1a when present, else the bundled synthetic default (``dataset`` says which).
"""
import re

from cgdbench import RunConfig, build

from ._common import DATA_DIR, DATASET


def _built(dataset, **kw):
    return build(RunConfig(dataset=None if dataset == "synthetic-a1a" else dataset, lam=0.1, **kw), data_dir=DATA_DIR)


def _problem_13(dataset, sketch):
    """(P, L) of det-CGD1's program (13) on the dataset's L, for rand-1 or rand-k with k = d/4."""
    from cgdbench import compressors
    b = _built(dataset, compressor="rand-1", stepsize="diag-inv")
    d = b.L.shape[0]
    return compressors.make(sketch if sketch == "rand-1" else f"rand-k:{d // 4}", d).moment_matrix(), b.L


def _solve_13(P, L):
    from cgdbench.stepsizes import optimal
    return optimal._solve_barrier(P, L, 600.0)


class OptimalDetCGD1:
    """The full det-CGD1 optimum (13) by the barrier Newton-CG, rand-1 and rand-k with k = d/4."""

    params = ([DATASET], ["rand-1", "rand-k:d/4"])
    param_names = ["dataset", "sketch"]
    timeout = 600
    number, repeat, warmup_time = 1, 1, 0

    def setup_cache(self):
        """The work counts of each solve: (Newton steps, CG products), parsed from the status."""
        counts = {}
        for sketch in self.params[1]:
            status = _solve_13(*_problem_13(DATASET, sketch))[1]
            m = re.search(r"(\d+) Newton steps, (\d+) CG products", status)
            if m is None:
                raise RuntimeError(f"no work counts in the barrier status {status!r}")
            counts[sketch] = (int(m.group(1)), int(m.group(2)))
        return counts

    def setup(self, counts, dataset, sketch):
        self.P, self.L = _problem_13(dataset, sketch)

    def time_solve(self, counts, dataset, sketch):
        _solve_13(self.P, self.L)

    def track_cg_products(self, counts, dataset, sketch):
        return counts[sketch][1]

    def track_newton_steps(self, counts, dataset, sketch):
        return counts[sketch][0]

    track_cg_products.unit = track_newton_steps.unit = "count"


def _distributed_a1a(dataset):
    """The papers' distributed setting on the dataset: (built run, Corollary 1 setting), 100 clients."""
    from cgdbench.stepsizes import distributed as dist
    b = _built(dataset, clients=100, compressor="rand-1", stepsize="diag-inv")
    return b, dist.setting_for(b.problem, b.x0, 2000, 1e-4)


class Corollary1NewtonStep:
    """One Newton step's work of Corollary 1's diagonal program (φ, gradient, Hessian), 100 clients."""

    params = [DATASET]
    param_names = ["dataset"]
    timeout = 300

    def setup(self, dataset):
        from cgdbench.stepsizes import corollary1_diag as c1d
        b, s = _distributed_a1a(dataset)
        self.phi, self.derivs, self.delta, self.tau, _ = c1d.diag_program(b.sketch, b.L, s)

    def time_phi_gradient_hessian(self, dataset):
        self.phi(10.0, self.delta, self.tau)
        self.derivs(10.0, self.delta, self.tau)


class Corollary1FullNewtonStep:
    """The full-D Corollary 1 program (``corollary1-full``) at 40 of 100 clients, its last rounds' size:
    one Newton system's setup and one Hessian product (the CG's unit of work)."""

    params = [DATASET]
    param_names = ["dataset"]
    timeout = 300

    def setup(self, dataset):
        import numpy as np

        from cgdbench.stepsizes import corollary1_full as c1f
        from cgdbench.stepsizes import distributed as dist
        b, s = _distributed_a1a(dataset)
        lam = dist.client_lambdas(np.diag(dist.best_diag_line_search(b.sketch, b.L, s)[0]), b.sketch, b.L,
                                  s.client_L)
        sub = s.restrict(sorted(int(i) for i in np.argsort(-lam)[:40]))
        _, self.system, self.D, self.tau, _ = c1f.full_program(b.sketch, b.L, sub, "det-cgd1")
        self.hess = self.system(100.0, self.D, self.tau)[2]
        X = np.random.default_rng(0).normal(size=self.D.shape)
        self.X = X + X.T

    def time_newton_system(self, dataset):
        self.system(100.0, self.D, self.tau)

    def time_hessian_product(self, dataset):
        self.hess(self.X, 0.1 * self.tau)
