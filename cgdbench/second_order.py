"""Second-order checks: λ_min(∇²f(x)) and the ε-SOSP test (Nesterov & Polyak 2006, Definition 2.4 of the saddle paper).

x is an ε-second-order stationary point if ‖∇f(x)‖ <= ε and
λ_min(∇²f(x)) >= −√(ρε).  λ_min comes from a dense eigendecomposition when d is
small (the Hessian built from d Hessian-vector products, or exactly), else from
Lanczos (ARPACK ``eigsh``) on a LinearOperator of Hessian-vector products.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError

#: up to this d, λ_min comes from the dense Hessian
DENSE_LIMIT = 1100


def lambda_min(problem, x, tol: float = 1e-7, seed: int = 0) -> tuple[float, str]:
    """``(λ_min(∇²f(x)), method)``; method is ``dense`` or ``lanczos``."""
    if not hasattr(problem, "hvp"):
        raise ConfigError(f"problem {problem.name!r} has no Hessian-vector product; second-order checks "
                          "need one (saddle-quartic, linear-autoencoder, mlp-autoencoder)")
    x = np.ascontiguousarray(x, dtype=float)
    d = x.size
    if d <= DENSE_LIMIT:
        return float(np.linalg.eigvalsh(problem.hessian(x))[0]), "dense"
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    op = LinearOperator((d, d), matvec=lambda v: problem.hvp(x, np.ravel(v)), dtype=float)
    # a start seeded from the run's seed: repeats of a run give the same answer, bit for bit
    v0 = np.random.default_rng(np.random.SeedSequence([seed, 0x1A4C05])).standard_normal(d)
    try:
        w = eigsh(op, k=1, which="SA", tol=tol, v0=v0, ncv=min(d, 64), maxiter=50 * d,
                  return_eigenvectors=False)
    except ArpackNoConvergence as exc:
        if exc.eigenvalues.size == 0:
            raise
        w = exc.eigenvalues
    return float(np.min(w)), "lanczos"


def sosp(grad_norm: float, lam_min: float, eps: float, rho: float) -> dict:
    """The ε-SOSP verdict with both thresholds spelled out."""
    thr = -math.sqrt(rho * eps)
    fails = []
    if not grad_norm <= eps:
        fails.append(f"‖∇f‖ = {grad_norm:.3g} is {grad_norm / eps:.3g}× ε = {eps:g}")
    if not lam_min >= thr:
        fails.append(f"λ_min = {lam_min:.4g} is {thr - lam_min:.3g} below −√(ρε) = {thr:.4g}")
    return {"eps": eps, "rho": rho, "grad_norm": grad_norm, "lambda_min": lam_min, "lambda_threshold": thr,
            "first_order": bool(grad_norm <= eps), "second_order": bool(lam_min >= thr),
            "is_sosp": bool(grad_norm <= eps and lam_min >= thr), "fails": fails}
