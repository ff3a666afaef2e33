"""The det-CGD stepsize conditions (7) E[S D L D S] ⪯ D and (8) D E[T L T] D ⪯ D."""
from __future__ import annotations

import numpy as np

from ..errors import choices_error
from .linalg import lam_max_pencil
from .matrix import StepsizeMatrix

FAMILIES = ("det-cgd1", "det-cgd2")


def condition_matrix(D: StepsizeMatrix, family: str, sketch, L: np.ndarray) -> np.ndarray:
    """Left-hand side of (7) (det-CGD1) or (8) (det-CGD2)."""
    Dd = D.dense()
    if family == "det-cgd1":
        return sketch.second_moment(Dd @ L @ Dd)
    if family == "det-cgd2":
        return Dd @ sketch.second_moment(L) @ Dd
    raise choices_error("algorithm family", family, FAMILIES)


def condition_lambda(D: StepsizeMatrix, family: str, sketch, L: np.ndarray) -> float:
    """``λ_max(D^{-1/2} C(D) D^{-1/2})``: the condition (7)/(8) holds iff this is <= 1.

    It is linear in the scale of D (C is quadratic), so it is computed for D/s with
    s = max|D_ij| and multiplied back: no overflow for absurd stepsizes.
    """
    s = float(np.abs(D.dense()).max())
    Dn = D.scaled(1.0 / s)
    return s * lam_max_pencil(condition_matrix(Dn, family, sketch, L), Dn.dense())
