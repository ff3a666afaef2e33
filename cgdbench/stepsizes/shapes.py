"""The single-node stepsize rules: the shape of D and its scale under (7)/(8).

``single_node`` is what ``stepsizes.build`` returns for every rule but the distributed
ones; those (and det-MARINA) call it for the shape W they rescale.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .conditions import condition_lambda, condition_matrix
from .linalg import lam_max_pencil, require_pd, sym_power
from .matrix import StepsizeMatrix
from .optimal import optimal_det_cgd1, optimal_diag


def _factor(v: float) -> str:
    """A factor near 1 with the digits that show it is not 1 (``1.0004``, not ``1``)."""
    return f"{v:.4g}" if abs(v - 1.0) >= 5e-4 else f"{v:.8g}"


def w_matrix(name: str, L: np.ndarray, block_ptr) -> np.ndarray:
    d = L.shape[0]
    W = np.zeros((d, d))
    for lo, hi in zip(block_ptr[:-1], block_ptr[1:]):
        Lb = L[lo:hi, lo:hi]
        if name == "identity-w":
            Wb = np.eye(hi - lo)
        elif name == "diag-inv":
            dg = np.diag(Lb)
            if np.any(dg <= 0):
                j = int(lo + np.argmin(dg))
                raise ConfigError(f"diag-inv needs diag(L) > 0, but L[{j},{j}] = {L[j, j]:.3g}; use --lam > 0")
            Wb = np.diag(1.0 / dg)
        else:
            require_pd(Lb, name)
            Wb = sym_power(Lb, -1.0 if name == "l-inv" else -0.5)
        W[lo:hi, lo:hi] = Wb
    return W


def single_node(name: str, gamma, family: str, sketch, L: np.ndarray, block_ptr):
    """Rule ``name`` (``gamma``: the γ of ``scalar:GAMMA``, else None); returns ``(D, info)``."""
    d = L.shape[0]
    explicit = gamma is not None
    info: dict = {"rule": name, "warnings": []}
    if name == "scalar":
        if gamma is None:
            gamma = 1.0 / condition_lambda(StepsizeMatrix.scalar(1.0, d), family, sketch, L)
        D = StepsizeMatrix.scalar(gamma, d)
    elif name == "optimal":
        if family == "det-cgd2" or sketch.name == "identity":
            require_pd(L, "optimal")
            D = StepsizeMatrix.blocks(np.linalg.inv(sketch.second_moment(L)), [0, d])
        else:
            Dd, sinfo = optimal_det_cgd1(sketch, L)
            info["solver"] = sinfo
            if Dd is None:
                D, fallback = single_node("l-inv", None, family, sketch, L, block_ptr)
                fallback["warnings"].insert(0, "det-CGD1 optimal D: all solvers failed "
                                               f"({'; '.join(sinfo['errors'])}); using l-inv (Theorem 2)")
                return D, {**fallback, "solver": sinfo}
            D = StepsizeMatrix.blocks(Dd, [0, d])
            if sinfo.get("time_limited"):
                info["warnings"].append(f"det-CGD1 optimal D ({sinfo['solver']}): {sinfo['status']}")
    elif name == "optimal-diag":
        A = sketch.second_moment(L)
        if np.any(np.diag(A) <= 0):
            raise ConfigError("optimal-diag needs diag(E[SLS]) > 0; use --lam > 0")
        D = StepsizeMatrix.diagonal(optimal_diag(A))
    else:
        W = w_matrix(name, L, block_ptr)
        # Theorem 2 per block, on the block-diagonal part of L
        L_bd = np.zeros_like(L)
        for lo, hi in zip(block_ptr[:-1], block_ptr[1:]):
            L_bd[lo:hi, lo:hi] = L[lo:hi, lo:hi]
        Wm = StepsizeMatrix.blocks(W, block_ptr)
        C = condition_matrix(Wm, family, sketch, L_bd)
        gammas = np.array([1.0 / lam_max_pencil(C[lo:hi, lo:hi], W[lo:hi, lo:hi])
                           for lo, hi in zip(block_ptr[:-1], block_ptr[1:])])
        info["theorem2_gammas"] = gammas.tolist()
        scale = np.repeat(gammas, np.diff(block_ptr))
        if name == "identity-w":
            D = (StepsizeMatrix.scalar(gammas[0], d) if gammas.size == 1
                 else StepsizeMatrix.diagonal(scale))
        elif name == "diag-inv":
            D = StepsizeMatrix.diagonal(np.diag(W) * scale)
        else:
            D = StepsizeMatrix.blocks(W * scale[:, None], block_ptr)
    lam = condition_lambda(D, family, sketch, L)
    eq = "(7)" if family == "det-cgd1" else "(8)"
    if explicit:
        if lam > 1.0 + 1e-9:
            info["warnings"].append(f"γ = {gamma:g} violates the stepsize condition {eq} by a factor "
                                    f"{_factor(lam)}: Theorem 1 does not apply")
    elif lam > 1.0 + 1e-9:
        # only reachable with several blocks and L not block diagonal (Theorem 2 does not apply)
        info["warnings"].append(
            f"per-block Theorem 2 stepsizes violate {eq} for the full L by a factor {_factor(lam)} "
            f"(L is not block diagonal); D scaled by {_factor(1 / lam)}")
        D = D.scaled(1.0 / lam)
        lam = condition_lambda(D, family, sketch, L)
    info["condition_lambda"] = lam
    return D, info
