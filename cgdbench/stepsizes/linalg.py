"""Dense linear algebra the stepsize rules share (no rule logic here)."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import ConfigError


def logdet_chol(M: np.ndarray):
    """log det M by Cholesky (the sum over a stack of matrices), or None if M is not positive definite."""
    try:
        return 2.0 * float(np.log(np.diagonal(np.linalg.cholesky(M), axis1=-2, axis2=-1)).sum())
    except np.linalg.LinAlgError:
        return None


def sym_power(M: np.ndarray, p: float) -> np.ndarray:
    """M^p for symmetric M by eigendecomposition; for p > 0 negative rounding eigenvalues count as 0."""
    w, V = np.linalg.eigh(0.5 * (M + M.T))
    return (V * (np.clip(w, 0.0, None) if p > 0 else w) ** p) @ V.T


def lam_max_pencil(C: np.ndarray, W: np.ndarray) -> float:
    """λ_max(W^{-1/2} C W^{-1/2}) for symmetric C and W ≻ 0.

    Computed as λ_max(R^{-T} C R^{-1}) with W = RᵀR (Cholesky): same spectrum,
    and more robust than LAPACK's generalized solver on ill-conditioned W.
    """
    C = 0.5 * (C + C.T)
    W = 0.5 * (W + W.T)
    try:
        R = np.linalg.cholesky(W).T
    except np.linalg.LinAlgError:
        raise ConfigError("stepsize matrix is not positive definite") from None
    X = sla.solve_triangular(R, sla.solve_triangular(R, C, trans="T").T, trans="T")
    return float(np.linalg.eigvalsh(0.5 * (X + X.T))[-1])


def require_pd(L, what):
    lam_min = float(np.linalg.eigvalsh(0.5 * (L + L.T))[0])
    if lam_min <= 0:
        raise ConfigError(f"{what} needs L ≻ 0, but λ_min(L) = {lam_min:.3g}; use --lam > 0 "
                          "or a rule that does not invert L (scalar, identity-w)")
