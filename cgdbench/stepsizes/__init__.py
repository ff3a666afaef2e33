"""Stepsize matrices D and the rules that build them (det-CGD Sections 3-4).

A stepsize matrix is *typed* — scalar γI, diagonal, block-diagonal or dense —
and kernels apply it by the cheapest route for its type (:mod:`.kernels`).

Every rule returns the largest matrix of its shape that satisfies the
algorithm's stepsize condition:

* det-CGD1 (and GD, DCGD):  (7)  E[S D L D S] ⪯ D
* det-CGD2:                 (8)  E[D T L T D] = D E[T L T] D ⪯ D

For ``D = γ W`` both sides scale differently in γ, so the largest admissible γ
is ``1/λ_max(W^{-1/2} C(W) W^{-1/2})`` with ``C`` the left-hand side; this is
exactly Theorem 2's γ for one block, and Theorem 2 is applied per block when
the partition has several.  Theorem 2 assumes L block-diagonal; when it is not,
the per-block D is scaled down by one common factor until (7)/(8) holds for
the full L (recorded as a warning), so no rule ever returns an inadmissible D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._registry import split_spec
from ..errors import ConfigError, choices_error
from . import distributed as dist
from .conditions import FAMILIES, condition_lambda, condition_matrix  # noqa: F401  (the package's face)
from .linalg import lam_max_pencil as _lam_max_pencil  # noqa: F401
from .linalg import logdet_chol, require_pd, sym_power  # noqa: F401
from .matrix import KINDS, StepsizeMatrix  # noqa: F401
from .shapes import single_node
from .shapes import w_matrix as _w_matrix  # noqa: F401

# --- rules ----------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    name: str
    params: str
    doc: str
    scope: str = "det-cgd"   # the algorithms it builds for: det-cgd (conditions (7)/(8)) or one baseline


REGISTRY = {
    "scalar": Rule("scalar", "[GAMMA]", "γI; without GAMMA the largest γ allowed by (7)/(8) for the sketch "
                                        "(1/λ_max(E[SLS]))."),
    "identity-w": Rule("identity-w", "", "W = I per block, γ_i from Theorem 2."),
    "diag-inv": Rule("diag-inv", "", "W = diag(L)^-1, γ_i from Theorem 2."),
    "l-inv": Rule("l-inv", "", "W = L_i^-1 per block, γ_i from Theorem 2."),
    "l-inv-sqrt": Rule("l-inv-sqrt", "", "W = L_i^-1/2 per block, γ_i from Theorem 2."),
    "optimal": Rule("optimal", "", "det-CGD2: D = (E[TLT])^-1 (eq. 12); det-CGD1: the convex program (13) "
                                   "by a barrier Newton-CG (any sketch, d <= 400; Clarabel/SCS as fallbacks)."),
    "optimal-diag": Rule("optimal-diag", "", "the best diagonal D for (7)/(8): max Σlog δ s.t. "
                                             "A^1/2 Diag(δ) A^1/2 ⪯ I, A = E[SLS] (barrier-Newton, any d)."),
    "corollary1": Rule("corollary1", "[RULE]", "distributed (Algorithms 1/2): the best diagonal D under Corollary "
                                               "1 (DLD ⪯ D, λ_D ≤ min(n/K, nε²det(D)^1/d/(4Δinf))), or with RULE "
                                               "the largest βW for RULE's shape W; needs --eps2, K = --iters."),
    "corollary1-full": Rule("corollary1-full", "", "distributed: the best full D under Corollary 1's "
                                                   "conditions, by a barrier Newton-CG with constraint "
                                                   "generation over the clients (n·d³ <= 8e8; Clarabel for "
                                                   "small programs as fallback); needs --eps2."),
    "matrix-smoothness": Rule("matrix-smoothness", "", "DCGD (γI) with γ from Corollary 1 and the smoothness "
                                                       "matrices L, L_i (Safaryan et al. 2021); needs --eps2."),
    "khaled-richtarik": Rule("khaled-richtarik", "", "DCGD (γI) with the scalar-smoothness γ of Khaled & "
                                                     "Richtárik (2020, Cor. 1); needs --eps2, K = --iters."),
    "ef21": Rule("ef21", "", "EF21: γ = 1/(L + L̃√(β/θ)) (Richtárik et al. 2021, Thm 1), α the compressor's "
                             "contraction, L̃² = (1/n)Σ L_i².", "ef21"),
    "diana": Rule("diana", "", "DIANA: the largest γ of its non-convex theory for ω, n, α (see "
                               "docs/paper-notes.md).", "diana"),
    "marina": Rule("marina", "", "MARINA: γ = 1/(L(1 + √((1−p)ω/(pn)))) (Gorbunov et al. 2021, Thm 2.1).",
                   "marina"),
    "det-marina": Rule("det-marina", "[RULE]", "det-MARINA: the largest βW for the shape W of RULE (default "
                                               "diag-inv) under its matrix stepsize condition.", "det-marina"),
}
#: rules that need the distributed setting (client L_i, K, ε², Δ^inf): see .distributed
DISTRIBUTED = ("corollary1", "corollary1-full", "matrix-smoothness", "khaled-richtarik")
#: shapes ``corollary1:RULE`` can scale
SHAPES = ("scalar", "identity-w", "diag-inv", "l-inv", "l-inv-sqrt", "optimal", "optimal-diag")
ALIASES = {"diag-inverse": "diag-inv", "linv": "l-inv", "gamma": "scalar", "identity": "identity-w",
           "cor1": "corollary1", "cor1-full": "corollary1-full", "kr": "khaled-richtarik",
           "dcgd-matrix": "matrix-smoothness"}


def names(scope: str) -> list[str]:
    """The rules that build for ``scope`` (``det-cgd`` or one baseline algorithm)."""
    return [r.name for r in REGISTRY.values() if r.scope == scope]


def parse(spec: str) -> tuple[str, float | str | None]:
    """``(name, param)``: param is γ for ``scalar:GAMMA``, the shape rule for ``corollary1:RULE``, else None."""
    name, param = split_spec("stepsize", spec, REGISTRY, ALIASES)
    if param and name not in ("scalar", "corollary1", "det-marina"):
        raise ConfigError(f"stepsize {name!r} takes no parameter, got {spec!r}")
    if not param:
        return name, None
    if name in ("corollary1", "det-marina"):
        shape, extra = split_spec("corollary1 shape", param, REGISTRY, ALIASES)
        if shape not in SHAPES or extra:
            raise choices_error(f"{name} shape ({name}:RULE)", param, SHAPES)
        return name, shape
    try:
        gamma = float(param)
    except ValueError:
        raise ConfigError(f"stepsize scalar:{param}: γ must be a number") from None
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ConfigError(f"stepsize scalar:{param}: γ must be a finite number > 0")
    return name, gamma


def canonical(spec: str) -> str:
    """The spec with aliases resolved (γ kept as written)."""
    name, param = parse(spec)
    if param is None:
        return name
    return name + ":" + (param if isinstance(param, str) else spec.strip().partition(":")[2])


def build(spec: str, family: str, sketch, L: np.ndarray, block_ptr=None, setting=None):
    """Build the stepsize matrix named by ``spec`` for an algorithm family and sketch.

    Returns ``(D, info)``; ``info`` holds ``condition_lambda`` (<= 1 means (7)/(8)
    holds), ``theorem2_gammas`` where used, and ``warnings``.  The rules in
    ``DISTRIBUTED`` also need ``setting`` (:class:`.distributed.Setting`).
    """
    if family not in FAMILIES:
        raise choices_error("algorithm family", family, FAMILIES)
    name, param = parse(spec)
    if REGISTRY[name].scope != "det-cgd":
        raise ConfigError(f"stepsize {name!r} is {REGISTRY[name].scope}'s rule, not a det-CGD rule; "
                          f"choose one of: {', '.join(names('det-cgd'))}")
    L = np.asarray(L, dtype=float)
    d = L.shape[0]
    block_ptr = np.asarray([0, d] if block_ptr is None else block_ptr, dtype=np.int64)
    if name in DISTRIBUTED:
        return _build_distributed(name, param, family, sketch, L, block_ptr, setting)
    return single_node(name, param, family, sketch, L, block_ptr)


def _build_distributed(name, shape, family, sketch, L, block_ptr, setting):
    """corollary1[:RULE], matrix-smoothness, khaled-richtarik (see .distributed)."""
    if setting is None:
        raise ConfigError(f"stepsize {name!r} needs the distributed setting (client L_i, K, ε², Δ^inf); "
                          "`cgdbench run` builds it from --clients, --iters and --eps2")
    d = L.shape[0]
    info: dict = {"rule": name, "warnings": []}
    if name == "khaled-richtarik":
        gamma, kr = dist.khaled_richtarik(sketch, L, setting)
        D = StepsizeMatrix.scalar(gamma, d)
        info.update(binding=kr["binding"], khaled_richtarik=kr)
        k_req = kr["K_required_KR"]
    else:
        if name == "corollary1-full":
            require_pd(L, "corollary1-full")
            Dd, sinfo = dist.corollary1_full_cached(sketch, L, setting, family)
            D = StepsizeMatrix.blocks(Dd, [0, d])
            info.update(solver=sinfo, binding="full-D program" if sinfo["exact"] else "full D, not certified")
            if not sinfo["exact"]:
                info["warnings"].append("corollary1-full: " + sinfo["status"])
        elif name == "corollary1" and shape is None:
            require_pd(L, "corollary1")
            delta, sinfo = dist.corollary1_diag_cached(sketch, L, setting)
            D = StepsizeMatrix.diagonal(delta)
            info.update(solver=sinfo, binding="exact diagonal program" if sinfo["exact"] else "diagonal, not certified")
            if not sinfo["exact"]:
                info["warnings"].append("corollary1: " + sinfo["status"])
        else:
            W, winfo = single_node("identity-w" if name == "matrix-smoothness" else shape, None, family, sketch, L,
                                   block_ptr)
            info["warnings"] += winfo["warnings"]
            beta, binding = dist.line_search(W.dense(), sketch, L, setting, family)
            D = W.scaled(beta)
            info.update(shape=shape or "identity-w", beta=beta, binding=binding)
        k_req = None
    rep = dist.report(D.dense(), sketch, L, setting, family)
    info["corollary1"] = rep
    k_req = rep["K_required"] if k_req is None else k_req
    if setting.K < k_req:
        info["warnings"].append(f"K = {setting.K} is below the {k_req:.3g} iterations Corollary 1 needs for "
                                f"ε² = {setting.eps2:g} with this D: the run is not certified to reach ε²")
    info["condition_lambda"] = condition_lambda(D, family, sketch, L)
    return D, info


def describe() -> list[tuple[str, str]]:
    return [(r.name + (":" + r.params if r.params else ""), r.doc) for r in REGISTRY.values()]
