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
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from .._registry import split_spec
from ..errors import ConfigError, choices_error
from .kernels import D_BLOCK, D_DIAG, D_SCALAR, d_apply

KINDS = ("scalar", "diagonal", "block", "dense")
FAMILIES = ("det-cgd1", "det-cgd2")


@dataclass(frozen=True, eq=False)
class StepsizeMatrix:
    """A symmetric positive definite stepsize matrix of a known structure."""

    kind: str
    d: int
    gamma: float = 1.0
    diag: np.ndarray | None = field(default=None, repr=False)
    mat: np.ndarray | None = field(default=None, repr=False)
    block_ptr: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise choices_error("stepsize matrix kind", self.kind, KINDS)
        if self.kind == "scalar" and not (self.gamma > 0 and math.isfinite(self.gamma)):
            raise ConfigError(f"scalar stepsize γ = {self.gamma!r} must be a finite number > 0")
        if self.kind == "diagonal" and not np.all(self.diag > 0):
            raise ConfigError("diagonal stepsize must have positive entries")
        if self.kind in ("block", "dense") and self.block_ptr is None:
            object.__setattr__(self, "block_ptr", np.array([0, self.d], dtype=np.int64))

    @classmethod
    def scalar(cls, gamma, d):
        return cls("scalar", d, gamma=float(gamma))

    @classmethod
    def diagonal(cls, v):
        v = np.ascontiguousarray(v, dtype=float)
        return cls("diagonal", v.size, diag=v)

    @classmethod
    def blocks(cls, mat, block_ptr):
        """Block-diagonal from the diagonal blocks of ``mat`` (one block: dense)."""
        mat = np.asarray(mat, dtype=float)
        block_ptr = np.asarray(block_ptr, dtype=np.int64)
        out = np.zeros_like(mat)
        for lo, hi in zip(block_ptr[:-1], block_ptr[1:]):
            blk = mat[lo:hi, lo:hi]
            out[lo:hi, lo:hi] = 0.5 * (blk + blk.T)
        kind = "dense" if len(block_ptr) == 2 else "block"
        return cls(kind, mat.shape[0], mat=np.ascontiguousarray(out), block_ptr=block_ptr)

    # --- linear algebra ---------------------------------------------------
    def dense(self) -> np.ndarray:
        if self.kind == "scalar":
            return self.gamma * np.eye(self.d)
        if self.kind == "diagonal":
            return np.diag(self.diag)
        return self.mat.copy()

    def scaled(self, c: float) -> "StepsizeMatrix":
        if self.kind == "scalar":
            return StepsizeMatrix.scalar(self.gamma * c, self.d)
        if self.kind == "diagonal":
            return StepsizeMatrix.diagonal(self.diag * c)
        return StepsizeMatrix(self.kind, self.d, mat=self.mat * c, block_ptr=self.block_ptr)

    def logdet(self) -> float:
        """``log det D`` (sums of logs: no under/overflow for large d)."""
        if self.kind == "scalar":
            return self.d * math.log(self.gamma)
        if self.kind == "diagonal":
            return float(np.sum(np.log(self.diag)))
        total = 0.0
        for lo, hi in zip(self.block_ptr[:-1], self.block_ptr[1:]):
            sign, ld = np.linalg.slogdet(self.mat[lo:hi, lo:hi])
            if sign <= 0:
                raise ConfigError("stepsize matrix is not positive definite")
            total += ld
        return float(total)

    def det_root(self) -> float:
        """``det(D)^{1/d}``, the normalisation of Theorem 1 (computed in log space)."""
        return math.exp(self.logdet() / self.d)

    def apply(self, v) -> np.ndarray:
        v = np.ascontiguousarray(v, dtype=float)
        out = np.empty(self.d)
        d_apply(*self.kernel_args(), v, out)
        return out

    def kernel_args(self):
        """``(kind code, γ, diag, mat, block_ptr, block_of)`` with fixed dtypes."""
        one = np.ones(1)
        if self.kind == "scalar":
            return (D_SCALAR, self.gamma, one, np.ones((1, 1)), np.zeros(2, np.int64), np.zeros(1, np.int64))
        if self.kind == "diagonal":
            return (D_DIAG, 1.0, self.diag, np.ones((1, 1)), np.zeros(2, np.int64), np.zeros(1, np.int64))
        sizes = np.diff(self.block_ptr)
        block_of = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
        return (D_BLOCK, 1.0, one, self.mat, self.block_ptr.astype(np.int64), block_of)


# --- stepsize conditions ----------------------------------------------------
def condition_matrix(D: StepsizeMatrix, family: str, sketch, L: np.ndarray) -> np.ndarray:
    """Left-hand side of (7) (det-CGD1) or (8) (det-CGD2)."""
    Dd = D.dense()
    if family == "det-cgd1":
        return sketch.second_moment(Dd @ L @ Dd)
    if family == "det-cgd2":
        return Dd @ sketch.second_moment(L) @ Dd
    raise choices_error("algorithm family", family, FAMILIES)


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


def _lam_max_pencil(C: np.ndarray, W: np.ndarray) -> float:
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


def condition_lambda(D: StepsizeMatrix, family: str, sketch, L: np.ndarray) -> float:
    """``λ_max(D^{-1/2} C(D) D^{-1/2})``: the condition (7)/(8) holds iff this is <= 1.

    It is linear in the scale of D (C is quadratic), so it is computed for D/s with
    s = max|D_ij| and multiplied back: no overflow for absurd stepsizes.
    """
    s = float(np.abs(D.dense()).max())
    Dn = D.scaled(1.0 / s)
    return s * _lam_max_pencil(condition_matrix(Dn, family, sketch, L), Dn.dense())


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
           "cor1": "corollary1", "cor1-full": "corollary1-full", "kr": "khaled-richtarik", "dcgd-matrix": "matrix-smoothness"}


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


def _require_pd(L, what):
    lam_min = float(np.linalg.eigvalsh(0.5 * (L + L.T))[0])
    if lam_min <= 0:
        raise ConfigError(f"{what} needs L ≻ 0, but λ_min(L) = {lam_min:.3g}; use --lam > 0 "
                          "or a rule that does not invert L (scalar, identity-w)")


def _w_matrix(name: str, L: np.ndarray, block_ptr) -> np.ndarray:
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
            _require_pd(Lb, name)
            Wb = sym_power(Lb, -1.0 if name == "l-inv" else -0.5)
        W[lo:hi, lo:hi] = Wb
    return W


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
    gamma = param
    info: dict = {"rule": name, "warnings": []}
    if name == "scalar":
        if gamma is None:
            gamma = 1.0 / condition_lambda(StepsizeMatrix.scalar(1.0, d), family, sketch, L)
        D = StepsizeMatrix.scalar(gamma, d)
    elif name == "optimal":
        if family == "det-cgd2" or sketch.name == "identity":
            _require_pd(L, "optimal")
            D = StepsizeMatrix.blocks(np.linalg.inv(sketch.second_moment(L)), [0, d])
        else:
            from .optimal import optimal_det_cgd1
            Dd, sinfo = optimal_det_cgd1(sketch, L)
            info["solver"] = sinfo
            if Dd is None:
                D, fallback = build("l-inv", family, sketch, L, block_ptr)
                fallback["warnings"].insert(0, "det-CGD1 optimal D: all solvers failed "
                                               f"({'; '.join(sinfo['errors'])}); using l-inv (Theorem 2)")
                return D, {**fallback, "solver": sinfo}
            D = StepsizeMatrix.blocks(Dd, [0, d])
            if sinfo.get("time_limited"):
                info["warnings"].append(f"det-CGD1 optimal D ({sinfo['solver']}): {sinfo['status']}")
    elif name == "optimal-diag":
        from .optimal import optimal_diag
        A = sketch.second_moment(L)
        if np.any(np.diag(A) <= 0):
            raise ConfigError("optimal-diag needs diag(E[SLS]) > 0; use --lam > 0")
        D = StepsizeMatrix.diagonal(optimal_diag(A))
    else:
        W = _w_matrix(name, L, block_ptr)
        # Theorem 2 per block, on the block-diagonal part of L
        L_bd = np.zeros_like(L)
        for lo, hi in zip(block_ptr[:-1], block_ptr[1:]):
            L_bd[lo:hi, lo:hi] = L[lo:hi, lo:hi]
        Wm = StepsizeMatrix.blocks(W, block_ptr)
        C = condition_matrix(Wm, family, sketch, L_bd)
        gammas = np.array([1.0 / _lam_max_pencil(C[lo:hi, lo:hi], W[lo:hi, lo:hi])
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
    if gamma is not None and spec.strip().partition(":")[2]:
        if lam > 1.0 + 1e-9:
            info["warnings"].append(f"γ = {gamma:g} violates the stepsize condition {eq} by a factor "
                                    f"{lam:.4g}: Theorem 1 does not apply")
    elif lam > 1.0 + 1e-9:
        # only reachable with several blocks and L not block diagonal (Theorem 2 does not apply)
        info["warnings"].append(
            f"per-block Theorem 2 stepsizes violate {eq} for the full L by a factor {lam:.4g} "
            f"(L is not block diagonal); D scaled by {1 / lam:.4g}")
        D = D.scaled(1.0 / lam)
        lam = condition_lambda(D, family, sketch, L)
    info["condition_lambda"] = lam
    return D, info


def _build_distributed(name, shape, family, sketch, L, block_ptr, setting):
    """corollary1[:RULE], matrix-smoothness, khaled-richtarik (see .distributed)."""
    from . import distributed as dist
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
            _require_pd(L, "corollary1-full")
            Dd, sinfo = dist.corollary1_full_cached(sketch, L, setting, family)
            D = StepsizeMatrix.blocks(Dd, [0, d])
            info.update(solver=sinfo, binding="full-D program" if sinfo["exact"] else "full D, not certified")
            if not sinfo["exact"]:
                info["warnings"].append("corollary1-full: " + sinfo["status"])
        elif name == "corollary1" and shape is None:
            _require_pd(L, "corollary1")
            delta, sinfo = dist.corollary1_diag_cached(sketch, L, setting)
            D = StepsizeMatrix.diagonal(delta)
            info.update(solver=sinfo, binding="exact diagonal program" if sinfo["exact"] else "diagonal, not certified")
            if not sinfo["exact"]:
                info["warnings"].append("corollary1: " + sinfo["status"])
        else:
            W, winfo = build("identity-w" if name == "matrix-smoothness" else shape, family, sketch, L, block_ptr)
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
