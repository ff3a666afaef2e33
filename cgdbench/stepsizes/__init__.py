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

import numpy as np

from .._registry import Registry
from ..errors import ConfigError, choices_error
from . import corollary1_diag as c1d
from . import corollary1_full as c1f
from . import distributed as dist
from .conditions import FAMILIES, condition_lambda, condition_matrix  # noqa: F401  (the package's face)
from .linalg import logdet_chol, require_pd, sym_power  # noqa: F401
from ..parallel import one_blas_thread
from .matrix import KINDS, StepsizeMatrix  # noqa: F401
from .shapes import single_node

# --- rules ----------------------------------------------------------------
#: traits: ``scope`` (the algorithms a rule builds for: det-cgd, or one baseline), ``distributed``
#: (needs the distributed setting: client L_i, K, ε², Δ^inf), ``shape`` (``corollary1:RULE`` and
#: ``det-marina:RULE`` can rescale it)
REGISTRY = Registry("stepsize")


def _rule(name, params, doc, scope="det-cgd", distributed=False, shape=False, aliases=()):
    """``params``: "" (none), "[GAMMA]" (an optional γ > 0) or "[RULE]" (an optional shape rule): what parse reads."""
    if params not in ("", "[GAMMA]", "[RULE]"):
        raise ValueError(f"stepsize {name!r}: params {params!r}; parse reads '', '[GAMMA]' or '[RULE]'")
    REGISTRY.register(name, aliases=aliases, params=params, doc=doc, scope=scope, distributed=distributed,
                      shape=shape)(None)


_rule("scalar", "[GAMMA]", "γI; without GAMMA the largest γ allowed by (7)/(8) for the sketch (1/λ_max(E[SLS])).",
      shape=True, aliases=("gamma",))
_rule("identity-w", "", "W = I per block, γ_i from Theorem 2.", shape=True, aliases=("identity",))
_rule("diag-inv", "", "W = diag(L)^-1, γ_i from Theorem 2.", shape=True, aliases=("diag-inverse",))
_rule("l-inv", "", "W = L_i^-1 per block, γ_i from Theorem 2.", shape=True, aliases=("linv",))
_rule("l-inv-sqrt", "", "W = L_i^-1/2 per block, γ_i from Theorem 2.", shape=True)
_rule("optimal", "", "det-CGD2: D = (E[TLT])^-1 (eq. 12); det-CGD1: the convex program (13) by a barrier Newton-CG "
      "(any sketch, d <= 400; Clarabel/SCS as fallbacks).", shape=True)
_rule("optimal-diag", "", "the best diagonal D for (7)/(8): max Σlog δ s.t. A^1/2 Diag(δ) A^1/2 ⪯ I, A = E[SLS] "
      "(barrier-Newton, any d).", shape=True)
_rule("corollary1", "[RULE]", "distributed (Algorithms 1/2): the best diagonal D under Corollary 1 (DLD ⪯ D, "
      "λ_D ≤ min(n/K, nε²det(D)^1/d/(4Δinf))), or with RULE the largest βW for RULE's shape W; needs --eps2, "
      "K = --iters.", distributed=True, aliases=("cor1",))
_rule("corollary1-full", "", "distributed: the best full D under Corollary 1's conditions, by a barrier Newton-CG "
      "with constraint generation over the clients (n·d³ <= 8e8; Clarabel for small programs as fallback); "
      "needs --eps2.", distributed=True, aliases=("cor1-full",))
_rule("matrix-smoothness", "", "DCGD (γI) with γ from Corollary 1 and the smoothness matrices L, L_i (Safaryan et "
      "al. 2021); needs --eps2.", distributed=True, aliases=("dcgd-matrix",))
_rule("khaled-richtarik", "", "DCGD (γI) with the scalar-smoothness γ of Khaled & Richtárik (2020, Cor. 1); needs "
      "--eps2, K = --iters.", distributed=True, aliases=("kr",))
_rule("ef21", "", "EF21: γ = 1/(L + L̃√(β/θ)) (Richtárik et al. 2021, Thm 1), α the compressor's contraction, "
      "L̃² = (1/n)Σ L_i².", scope="ef21")
_rule("diana", "", "DIANA: the largest γ of its non-convex theory for ω, n, α (docs/paper-notes.md §8).",
      scope="diana")
_rule("marina", "", "MARINA: γ = 1/(L̃(1 + √((1−p)ω/(pn)))) (Gorbunov et al. 2021, Thm 2.1).", scope="marina")
_rule("det-marina", "[RULE]", "det-MARINA: the largest βW for the shape W of RULE (default diag-inv) under its "
      "matrix stepsize condition.", scope="det-marina")
#: the rules that need the distributed setting, and the shapes a ``RULE`` parameter names (from the traits)
DISTRIBUTED = tuple(REGISTRY.names(distributed=True))
SHAPES = tuple(REGISTRY.names(shape=True))


def names(scope: str) -> list[str]:
    """The rules that build for ``scope`` (``det-cgd`` or one baseline algorithm)."""
    return REGISTRY.names(scope=scope)


def parse(spec: str) -> tuple[str, float | str | None]:
    """``(name, param)``: param is γ for ``scalar:GAMMA``, the shape rule for ``corollary1:RULE``, else None."""
    name, param = REGISTRY.split(spec)
    takes = REGISTRY[name].params  # "[GAMMA]": a number; "[RULE]": a shape rule; "": nothing
    if param and not takes:
        raise ConfigError(f"stepsize {name!r} takes no parameter, got {spec!r}")
    if not param:
        return name, None
    if takes == "[RULE]":
        try:
            shape, extra = REGISTRY.split(param, f"{name} shape")
        except ConfigError:  # an unknown name: the shapes it can take, not every rule
            shape, extra = None, None
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
    with one_blas_thread():  # `cgdbench theory` builds here directly: the same D, and cache, as a run's
        return _build(spec, family, sketch, L, block_ptr, setting)


def _build(spec, family, sketch, L, block_ptr, setting):
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
            Dd, sinfo = c1f.corollary1_full_cached(sketch, L, setting, family)
            D = StepsizeMatrix.blocks(Dd, [0, d])
            info.update(solver=sinfo, binding="full-D program" if sinfo["exact"] else "full D, not certified")
            if not sinfo["exact"]:
                info["warnings"].append("corollary1-full: " + sinfo["status"])
        elif name == "corollary1" and shape is None:
            require_pd(L, "corollary1")
            delta, sinfo = c1d.corollary1_diag_cached(sketch, L, setting)
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
    return REGISTRY.describe()
