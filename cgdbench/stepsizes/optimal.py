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
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError

MAX_SDP_D = 64
SOLVERS = ("CLARABEL", "SCS")


# --- diagonal D -------------------------------------------------------------
def optimal_diag(A: np.ndarray, tol: float = 1e-10, max_newton: int = 100) -> np.ndarray:
    """argmax Σ log δ  s.t.  A^{1/2} Diag(δ) A^{1/2} ⪯ I  (A ⪰ 0 with positive diagonal)."""
    A = 0.5 * (A + A.T)
    d = A.shape[0]
    w, V = np.linalg.eigh(A)
    Ah = (V * np.sqrt(np.clip(w, 0, None))) @ V.T      # columns a_i, A = Σ a_i a_iᵀ... (Ah Ah = A)
    delta = np.full(d, 0.5 / w[-1])                      # strictly feasible: B = δ A ⪯ I/2

    def phi(t, dl):
        B = (Ah * dl) @ Ah
        try:
            C = np.linalg.cholesky(np.eye(d) - B)
        except np.linalg.LinAlgError:
            return math.inf
        return -t * np.sum(np.log(dl)) - 2 * np.sum(np.log(np.diag(C)))

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


def cache_dir() -> Path:
    """``$CGDBENCH_CACHE/stepsizes``, else the user cache directory."""
    import os

    from platformdirs import user_cache_dir
    return Path(os.environ.get("CGDBENCH_CACHE") or user_cache_dir("cgdbench")) / "stepsizes"


def _key(L, sketch, kind) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(L, dtype=np.float64).tobytes())
    h.update(f"{kind}|{sketch.spec()}|{sketch.d}|{sketch.block_ptr.tolist()}|v1".encode())
    if sketch.name == "importance-rand-1":
        h.update(sketch.p.tobytes())
    return h.hexdigest()[:32]


def _solve_cvxpy(L, alpha, w, solver, time_limit):
    import cvxpy as cp

    d = L.shape[0]
    wl, V = np.linalg.eigh(0.5 * (L + L.T))
    Lh = (V * np.sqrt(np.clip(wl, 0, None))) @ V.T
    scale = 1.0 / wl[-1]                     # solve for D/scale: entries of order 1
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
    """Solve (13) for the full D; returns ``(D dense, info)`` with solver, status, residual, seconds."""
    from . import StepsizeMatrix, condition_lambda

    d = L.shape[0]
    form = _moment_form(sketch)
    if form is None:
        raise ConfigError(f"stepsize 'optimal' for det-cgd1 supports identity, rand-k, importance-rand-1 and "
                          f"one-block bern-q/block-rand-k, not {sketch.spec()!r} on {sketch.n_blocks} blocks; "
                          "use 'optimal-diag' or a Theorem 2 rule (l-inv, diag-inv, ...)")
    if d > MAX_SDP_D:
        raise ConfigError(f"stepsize 'optimal' for det-cgd1: d = {d} exceeds the dense SDP limit d <= {MAX_SDP_D}; "
                          "use 'optimal-diag' (any d) or a block structure with a Theorem 2 rule")
    key = _key(L, sketch, "det-cgd1-full")
    path = cache_dir() / f"{key}.npz"
    if use_cache and path.is_file():
        z = np.load(path)
        return z["D"], {"solver": str(z["solver"]), "status": "cached", "cache": str(path),
                        "seconds": 0.0, "residual_lambda": float(z["residual"])}
    alpha, w = form
    errors = []
    for solver in SOLVERS:
        t0 = time.perf_counter()
        try:
            D, status = _solve_cvxpy(L, alpha, w, solver, time_limit)
        except Exception as exc:  # solver failure or time-out: try the next one
            errors.append(f"{solver}: {exc}")
            continue
        D = 0.5 * (D + D.T)
        if np.linalg.eigvalsh(D)[0] <= 0:
            errors.append(f"{solver}: returned D is not positive definite")
            continue
        lam = condition_lambda(StepsizeMatrix.blocks(D, [0, d]), "det-cgd1", sketch, L)
        if lam > 1.0:  # never hand back an inadmissible stepsize
            D = D / lam
        info = {"solver": solver, "status": status, "seconds": time.perf_counter() - t0,
                "residual_lambda": lam, "rescaled": lam > 1.0}
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, D=D, solver=solver, residual=lam)
            tmp.replace(path)
            info["cache"] = str(path)
        return D, info
    warnings.warn("det-CGD1 optimal stepsize: every solver failed (" + "; ".join(errors) +
                  "); falling back to the Theorem 2 scaling of W = L^-1", stacklevel=2)
    return None, {"solver": None, "status": "failed", "errors": errors}
