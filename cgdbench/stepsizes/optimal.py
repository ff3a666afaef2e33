"""Optimal stepsize matrices for det-CGD1 (problem (13)) and their diagonal restriction.

(13): maximize log det D  subject to  E[S D L D S] ⪯ D.

**Diagonal D = Diag(δ)** (both algorithms; for a diagonal D and a diagonal sketch
conditions (7) and (8) coincide): with A = E[S L S] = P ∘ L,

    Diag(δ) A Diag(δ) ⪯ Diag(δ)  ⇔  A^{1/2} Diag(δ) A^{1/2} ⪯ I,

an LMI *linear* in δ.  :func:`optimal_diag` solves max Σ log δ_i subject to it by
a barrier method with exact Newton steps on d variables (milliseconds at d = 300).

**Full D** (det-CGD1) for sketches with E[S M S] = α M + Diag(w ∘ diag M)
(identity, rand-k: α = d(k−1)/(k(d−1)), w = d/k − α; importance rand-1: α = 0,
w = 1/p): with q_j ≥ (DLD)_jj = ‖L^{1/2} D e_j‖² (second-order cones),

    α DLD + Diag(w ∘ q) ⪯ D  ⇔  [[D − Diag(w ∘ q), √α D L^{1/2}], [√α L^{1/2} D, I]] ⪰ 0.

The relaxation is exact: raising q only tightens the LMI, so (D, q) is feasible
iff D satisfies (7) with q = diag(DLD).  :func:`optimal_det_cgd1` hands this to
cvxpy (Clarabel, then SCS), checks the residual of (7) on the returned D and
scales D down if needed so that it never returns an inadmissible stepsize.
Solutions are cached on disk, keyed by (L, sketch).

**Full D, any diagonal sketch: barrier Newton-CG.** Every sketch here has
E[S M S] = P ∘ M with P = E[ssᵀ] ⪰ 0, so (7) reads F(D) = D − P ∘ (DLD) ⪰ 0.
D ↦ P ∘ (DLD) is matrix-convex (Schur product with P ⪰ 0 preserves the order),
so F is matrix-concave and φ_t(D) = −t log det D − log det F(D) is a convex
(self-concordant) barrier.  :func:`_solve_barrier` follows its central path,
t ← 10 t up to 1/rtol, with Newton steps solved by preconditioned CG on d×d matrices:

    ∇φ_t = −t D⁻¹ − G + (M D L + L D M),          G = F(D)⁻¹, M = P ∘ G,
    ∇²φ_t[H] = t D⁻¹HD⁻¹ + Π − (N D L + L D N) + M H L + L H M,
        Π = G (H − P ∘ (HLD + DLH)) G,   N = P ∘ Π,

each product O(d³), no d²×d² matrix.  The preconditioner is exact for the
t-term and the α-part of F′ (α the mean off-diagonal of P) with G replaced by
its diagonal, in the basis U = CQ (D = CCᵀ, CᵀLC = QΛQᵀ) that diagonalizes DL.  CG runs in
the coordinates H = U X Uᵀ, where the preconditioner is a division and the t-term is t X
(10 d×d products per iteration instead of 12: 1.18× on a1a).  The log det gap
to the optimum is at most d/t at an exact centre (Nesterov's bound adds the decrement
term off it), so stopping at t = 1/rtol = 1e6 leaves det(D)^{1/d} within about a factor
e^{rtol} of the optimum (measured: within 3·rtol, the centres being loose).  At a time
limit the last centre is returned (its gap is in the status); before the first one it
raises.  It needs no conic solver, works for multi-block Bern-q and block-rand-k, and
beats Clarabel from d ≈ 32 on (docs/paper-notes.md §9 has the timings).
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from ..errors import ConfigError
from .cache import cache_dir, load, save_npz
from .cache import key as _key
from .conditions import condition_lambda
from .linalg import lam_max_pencil as _lam_max_pencil
from .linalg import logdet_chol, require_pd, sym_power
from .matrix import StepsizeMatrix

#: cvxpy's generic conic solvers: only up to this d, and only for the (α, w) sketches
MAX_SDP_D = 64
#: the barrier Newton-CG: dense d×d products, O(d³) each
MAX_BARRIER_D = 400
SOLVERS = ("barrier-newton-cg", "CLARABEL", "SCS")


# --- diagonal D -------------------------------------------------------------
def optimal_diag(A: np.ndarray, tol: float = 1e-10, max_newton: int = 100) -> np.ndarray:
    """argmax Σ log δ  s.t.  A^{1/2} Diag(δ) A^{1/2} ⪯ I  (A ⪰ 0 with positive diagonal)."""

    A = 0.5 * (A + A.T)
    d = A.shape[0]
    Ah = sym_power(A, 0.5)                               # Ah Ah = A
    delta = np.full(d, 0.5 / np.linalg.eigvalsh(A)[-1])  # strictly feasible: B = δ A ⪯ I/2

    def phi(t, dl):
        ld = logdet_chol(np.eye(d) - (Ah * dl) @ Ah)
        return math.inf if ld is None else -t * np.sum(np.log(dl)) - ld

    t = 1.0
    while True:
        for _ in range(max_newton):
            B = (Ah * delta) @ Ah
            Z = np.linalg.inv(np.eye(d) - B)
            G = Ah @ Z @ Ah                                # G_ij = a_iᵀ Z a_j
            grad = -t / delta + np.diag(G)
            H = G * G + np.diag(t / delta**2)
            step = -np.linalg.solve(H, grad)
            dec = -grad @ step                             # Newton decrement²
            if dec / 2 <= 1e-12 * max(1.0, t):
                break
            s, f0 = 1.0, phi(t, delta)
            while s > 1e-12:
                new = delta + s * step
                if np.all(new > 0) and phi(t, new) <= f0 - 0.25 * s * dec:
                    break
                s *= 0.5
            delta = delta + s * step
        if d / t < tol:                                    # duality gap of the barrier problem
            break
        t *= 20.0
    return delta


# --- full D: barrier Newton-CG -------------------------------------------------
def pcg(hess, prec, gX, gs, rtol, max_cg):
    """Preconditioned CG on ∇²φ (X, s) = −(gX, gs) for a matrix unknown X and a scalar s (both
    barriers: det-CGD1's (13), s unused, and Corollary 1's full-D program, s = τ); the products
    ``hess(X, s)`` and ``prec(RX, rs)`` return pairs.  Stops at a preconditioned residual of
    ``rtol`` relative, or when pᵀ∇²φp <= 0 (rounding at the end of the path); ``(X, s, iterations)``.
    """
    sx, se = np.zeros_like(gX), 0.0
    rx, re = -gX, -gs
    zx, ze = prec(rx, re)
    px, pe = zx.copy(), ze
    rz = float(np.sum(rx * zx)) + re * ze
    r0 = math.sqrt(max(rz, 0.0))
    k = 0
    while k < max_cg:
        ax, ae = hess(px, pe)
        pap = float(np.sum(px * ax)) + pe * ae
        if not pap > 0.0:
            break
        a = rz / pap
        sx += a * px
        se += a * pe
        rx -= a * ax
        re -= a * ae
        zx, ze = prec(rx, re)
        rz_new = float(np.sum(rx * zx)) + re * ze
        k += 1
        if math.sqrt(max(rz_new, 0.0)) <= rtol * r0:
            break
        px = zx + (rz_new / rz) * px
        pe = ze + (rz_new / rz) * pe
        rz = rz_new
    return sx, se, k


def _solve_barrier(P, L, time_limit, rtol=1e-6, max_newton=50, cg_rtol=1e-2, max_cg=300, centre_tol=1e-2):
    """max log det D s.t. D − P∘(DLD) ⪰ 0; returns ``(D, status)`` (see the module docstring)."""

    t_start = time.perf_counter()
    d = L.shape[0]
    L = 0.5 * (L + L.T)
    P = 0.5 * (P + P.T)
    alpha = float((P.sum() - np.trace(P)) / (d * (d - 1))) if d > 1 else 0.0

    def phi(t, D):
        a, b = logdet_chol(D), logdet_chol(D - P * (D @ L @ D))
        return math.inf if a is None or b is None else -t * a - b

    # strictly feasible start: L⁻¹ scaled so that P∘(DLD) ⪯ D/2
    D = np.linalg.inv(L)
    D = 0.5 * (D + D.T)
    D /= 2.0 * _lam_max_pencil(P * (D @ L @ D), D)
    t, t_final, newton, cg = 1.0, 1.0 / rtol, 0, 0
    centred = None                                      # (D, t) of the last finished stage
    while True:
        for _ in range(max_newton):
            if time.perf_counter() - t_start > time_limit:
                if centred is None:
                    raise RuntimeError(f"time limit {time_limit:g} s reached at t = {t:.0e} before the "
                                       f"first centre, after {newton} Newton steps")
                D, t = centred
                return D, (f"time limit {time_limit:g} s reached: the centre at t = {t:.0e}, log det gap "
                           f"≈ d/t = {d / t:.1e}; {newton} Newton steps, {cg} CG products")
            Di = np.linalg.inv(D)
            Di = 0.5 * (Di + Di.T)
            G = np.linalg.inv(D - P * (D @ L @ D))
            G = 0.5 * (G + G.T)
            K = L @ D                                   # DL = Kᵀ
            M = P * G
            MK = M @ K.T
            grad = -t * Di - G + MK + MK.T

            Cd = np.linalg.cholesky(D)                  # D = Cd Cdᵀ: U = Cd Q has UᵀD⁻¹U = I, DLU = UΛ
            w, Q = np.linalg.eigh(Cd.T @ L @ Cd)
            U = Cd @ Q
            g = np.sum(U * (G @ U), axis=0)                # diag(UᵀGU)
            S = 1.0 - alpha * (w[:, None] + w[None, :])
            den = t + S * S * np.outer(g, g)

            def hess_u(X):
                """Uᵀ ∇²φ[H] U for H = U X Uᵀ; the t-term is t X, as UᵀD⁻¹U = I."""
                H = U @ X @ U.T
                Y = H @ K
                Pi = G @ (H - P * (Y + Y.T)) @ G
                NK = (P * Pi) @ K.T
                MHL = M @ H @ L
                return t * X + U.T @ (Pi - NK - NK.T + MHL + MHL.T) @ U

            # preconditioned CG on ∇²φ step = −∇φ, in the coordinates H = U X Uᵀ (residuals UᵀRU),
            # where the preconditioner is the division by den; (13) has no scalar unknown
            step, _, k = pcg(lambda X, _e: (hess_u(X), 0.0), lambda R, _e: (R / den, 0.0),
                             U.T @ grad @ U, 0.0, cg_rtol, max_cg)
            cg += k
            step = U @ step @ U.T
            step = 0.5 * (step + step.T)
            newton += 1
            dec = -float(np.sum(grad * step))           # Newton decrement²
            # every centre, the last one included, to decrement²/2 <= centre_tol: a tighter last
            # centre moves log det by ~dec (<< d/t) and costs the most, as the Newton systems
            # are worst conditioned there
            if dec / 2 <= centre_tol:
                break
            # near the centre the Armijo test only measures rounding of φ (|φ| ~ t d):
            # a full step is taken if it stays feasible and does not increase φ beyond rounding
            f0 = phi(t, D)
            if not math.isfinite(f0):
                raise RuntimeError("barrier iterate lost feasibility (rounding)")
            if dec < 0.25 and phi(t, D + step) <= f0 + 1e-12 * abs(f0):
                D = D + step
                continue
            s = 1.0
            while phi(t, D + s * step) > f0 - 0.25 * s * dec:   # also rejects infeasible points (φ = inf)
                s *= 0.5
                if s < 1e-12:
                    break
            else:
                D = D + s * step
                continue
            break                                        # no progress possible at this t: next stage
        D = 0.5 * (D + D.T)
        centred = (D, t)
        if t >= t_final:
            break
        t = min(10.0 * t, t_final)
    # d/t is the gap at an exact centre; the decrement comes from inexact CG steps, so no off-centre
    # bound is claimed (measured gaps, against rtol = 1e-8 runs: docs/paper-notes.md §9)
    return D, (f"log det gap ≈ d/t = {d / t:.1e} (Newton decrement at the last centre "
               f"{math.sqrt(max(dec, 0.0)):.2g}); {newton} Newton steps, {cg} CG products")


# --- full D: cvxpy ------------------------------------------------------------
def _moment_form(sketch):
    """(α, w) with E[S M S] = α M + Diag(w ∘ diag M), or None for other sketches."""
    d = sketch.d
    if sketch.name == "identity":
        return 1.0, np.zeros(d)
    if sketch.name == "rand-k":
        k = sketch.k
        a = 0.0 if d == 1 else d * (k - 1) / (k * (d - 1))
        return a, np.full(d, d / k - a)
    if sketch.name == "importance-rand-1":
        return 0.0, 1.0 / sketch.p
    if sketch.name in ("bern-q", "block-rand-k") and sketch.n_blocks == 1:
        P = sketch.moment_matrix()
        return float(P[0, 1]) if d > 1 else float(P[0, 0]), np.diag(P) - (P[0, 1] if d > 1 else P[0, 0])
    return None


def _solve_cvxpy(L, alpha, w, solver, time_limit):
    import cvxpy as cp

    d = L.shape[0]
    Lh = sym_power(L, 0.5)
    scale = 1.0 / np.linalg.eigvalsh(0.5 * (L + L.T))[-1]   # solve for D/scale: entries of order 1
    D = cp.Variable((d, d), symmetric=True)
    q = cp.Variable(d)
    Ds = scale * D
    cons = [cp.sum_squares(Lh @ Ds[:, j]) <= scale * q[j] for j in range(d)]
    top = Ds - scale * cp.diag(cp.multiply(w, q))
    if alpha > 0:
        X = Lh @ Ds * math.sqrt(alpha)
        M = cp.bmat([[top, X.T], [X, np.eye(d)]])
        cons.append(0.5 * (M + M.T) >> 0)
    else:
        cons.append(0.5 * (top + top.T) >> 0)
    prob = cp.Problem(cp.Maximize(cp.log_det(D)), cons)
    opts = {"time_limit": time_limit} if solver == "CLARABEL" else {"time_limit_secs": time_limit, "eps": 1e-7}
    prob.solve(solver=solver, **opts)
    if D.value is None:
        raise RuntimeError(f"{solver} status {prob.status}")
    return scale * np.asarray(D.value), prob.status


def optimal_det_cgd1(sketch, L: np.ndarray, time_limit: float = 120.0, use_cache: bool = True):
    """Solve (13) for the full D; returns ``(D dense, info)`` with solver, status, residual, seconds.

    Solvers in order: the barrier Newton-CG (any diagonal sketch, d <= MAX_BARRIER_D),
    then Clarabel and SCS through cvxpy (the (α, w) sketches, d <= MAX_SDP_D).
    """
    d = L.shape[0]
    if d > MAX_BARRIER_D:
        raise ConfigError(f"stepsize 'optimal' for det-cgd1: d = {d} exceeds the dense limit d <= {MAX_BARRIER_D} "
                          "of the full program (13); use 'optimal-diag' (any d) or a block structure with a "
                          "Theorem 2 rule (l-inv, diag-inv, ...)")
    require_pd(L, "optimal (det-cgd1)")
    key = _key(L, sketch, "det-cgd1-full")
    path = cache_dir() / f"{key}.npz"
    z = load(path, ("D", "solver", "residual")) if use_cache else None
    if z is not None:
        return z["D"], {"solver": str(z["solver"]), "status": "cached", "cache": str(path),
                        "seconds": 0.0, "residual_lambda": float(z["residual"])}
    form = _moment_form(sketch)
    errors = []
    if sys.stderr.isatty():  # seconds to minutes of solving: say so, or a run looks stuck at its start
        print(f"optimal stepsize: solving for the d×d matrix D (d = {d}"
              + (f"; cached at {path} once solved)" if use_cache else ")"),
              file=sys.stderr, flush=True)
    for solver in SOLVERS:
        if solver != "barrier-newton-cg" and (form is None or d > MAX_SDP_D):
            continue
        t0 = time.perf_counter()
        try:
            if solver == "barrier-newton-cg":
                D, status = _solve_barrier(sketch.moment_matrix(), np.asarray(L, dtype=float), time_limit)
            else:
                D, status = _solve_cvxpy(L, *form, solver, time_limit)
        except Exception as exc:  # solver failure or time-out: try the next one
            errors.append(f"{solver}: {exc}")
            continue
        D = 0.5 * (D + D.T)
        if not np.all(np.isfinite(D)) or np.linalg.eigvalsh(D)[0] <= 0:
            errors.append(f"{solver}: returned D is not positive definite")
            continue
        lam = condition_lambda(StepsizeMatrix.blocks(D, [0, d]), "det-cgd1", sketch, L)
        if lam > 1.0:  # never hand back an inadmissible stepsize
            D = D / lam
        limited = status.startswith("time limit")
        info = {"solver": solver, "status": status, "seconds": time.perf_counter() - t0,
                "residual_lambda": lam, "rescaled": lam > 1.0, "errors": errors, "time_limited": limited}
        if use_cache and not limited:                   # a later run with more time may do better
            info["cache"] = save_npz(path, D=D, solver=solver, residual=lam)
        return D, info
    warnings.warn("det-CGD1 optimal stepsize: every solver failed (" + "; ".join(errors) +
                  "); falling back to the Theorem 2 scaling of W = L^-1", stacklevel=2)
    return None, {"solver": None, "status": "failed", "errors": errors}
