"""Stepsizes for the distributed algorithms (det-CGD Section 5, Theorem 3 and Corollary 1).

Setting: f = (1/n) Σ f_i, client i has smoothness matrix L_i, f has L = (1/n) Σ L_i.
For a diagonal unbiased sketch S = Diag(s) with P = E[ssᵀ], the covariance
C = E[(s − 1)(s − 1)ᵀ] = P − 11ᵀ is PSD and E[(S − I) M (S − I)] = C ∘ M.  So

    Algorithm 1:  λ_D = max_i λ_max(L_i^{1/2} (C ∘ (DLD)) L_i^{1/2})      (Theorem 3)
    Algorithm 2:  λ_D = max_i λ_max(L_i^{1/2} D (C ∘ L) D L_i^{1/2})

(the second is not printed in the paper; the derivation is in docs/paper-notes.md §7).
For a diagonal D the two coincide.  Corollary 1 asks for

    (a) DLD ⪯ D,   (b) λ_D ≤ n/K,   (c) λ_D ≤ n ε² det(D)^{1/d} / (4 Δ^inf),
    (d) K ≥ 12 (f(x⁰) − f^inf) / (det(D)^{1/d} ε²).

(d) is a lower bound on det D, so it does not shape the optimum: when the best D
misses it, Corollary 1 certifies nothing after K steps and the rule says so (a
warning with the K it would need), since the paper's own experiment is in that regime.

Rules (all return the largest D of their shape allowed by (a)-(c)):

* ``corollary1`` — max log det D over *diagonal* D, solved exactly (barrier Newton
  on (δ, τ) with λ_D ≤ τ as n LMIs linear in δ, generated client by client, see
  :func:`.corollary1_diag.corollary1_diag`).
* ``corollary1-full`` — max log det D over *full* symmetric D (:func:`.corollary1_full.corollary1_full`):
  a barrier Newton-CG on (D, τ) (``full_program``, ``_full_barrier``) inside the same
  constraint generation, started from the diagonal program's D; for small sizes
  (n·m² <= MAX_FULL_PROGRAM) Clarabel's log det programs with one LMI per client (size 2d for
  Algorithm 2, d(1 + rank C) for Algorithm 1, a lifting) are the fallback.
* ``corollary1:RULE`` — the scalar line search D = βW over the shape W a
  single-node rule builds (λ_{βW} = β² λ_W, det(βW)^{1/d} = β det(W)^{1/d}):
  β = min(1/λ_max(W^{1/2} L W^{1/2}), √(n/(K λ_W)), n ε² det(W)^{1/d}/(4 Δ^inf λ_W)).
  ``corollary1:optimal`` gives a full D this way at any size.
* ``matrix-smoothness`` — DCGD (D = γI) with γ from Corollary 1 and the matrices L, L_i.
* ``khaled-richtarik`` — DCGD with the scalar theory of Khaled & Richtárik (2020,
  Cor. 1 with the ABC constants of compressed gradients): A = ω L_max/n, B = 1,
  C = 2 A Δ^inf with ω = max_j P_jj − 1, L_s = λ_max(L), L_max = max_i λ_max(L_i);
  γ = min(1/L_s, 1/√(L_s A K), ε²/(2 L_s C)).

This module holds what the rules share: the setting, λ_D, the report, the line searches, the
constraint generation over clients and the Δ^inf estimate.  The two programs live in
:mod:`.corollary1_diag` and :mod:`.corollary1_full`.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, choices_error
from .cache import cache_dir, load
from .cache import key as _key
from .linalg import lam_max_pencil as _lam_max_pencil
from .linalg import sym_power
from .shapes import single_node


@dataclass(frozen=True, eq=False)
class Setting:
    """What Corollary 1 needs besides the sketch and L."""

    client_L: np.ndarray            # (n, d, d)
    K: int
    eps2: float
    delta_inf: float                # Δ^inf = f^inf − (1/n) Σ f_i^inf (an estimate, see estimate_inf)
    f0_gap: float                   # f(x⁰) − f^inf (an estimate)
    source: dict = field(default_factory=dict)
    n_total: int | None = None      # n when client_L holds a subset of the clients (see restrict)

    @property
    def n(self) -> int:
        return int(self.client_L.shape[0]) if self.n_total is None else self.n_total

    def restrict(self, clients) -> "Setting":
        """The same setting (n, K, ε², Δ^inf) with the LMIs of only these clients: a relaxation."""
        return replace(self, client_L=self.client_L[np.asarray(clients)], n_total=self.n)


def _roots(client_L) -> np.ndarray:
    """L_i^{1/2} for a stack of PSD matrices."""
    Ls = np.asarray(client_L, dtype=float)
    Ls = 0.5 * (Ls + np.swapaxes(Ls, 1, 2))
    w, V = np.linalg.eigh(Ls)
    return (V * np.sqrt(np.clip(w, 0.0, None))[:, None, :]) @ np.swapaxes(V, 1, 2)


def covariance(sketch) -> np.ndarray:
    """C = E[(s − 1)(s − 1)ᵀ] = P − 11ᵀ (PSD), so E[(S − I) M (S − I)] = C ∘ M."""
    return sketch.moment_matrix() - 1.0


def noise_matrix(D, sketch, L, family: str = "det-cgd1") -> np.ndarray:
    """The matrix whose L_i-sandwich λ_D maximizes: C∘(DLD) (Algorithm 1) or D(C∘L)D (Algorithm 2)."""
    D = np.asarray(D, dtype=float)
    C = covariance(sketch)
    if family == "det-cgd1":
        return C * (D @ L @ D)
    if family == "det-cgd2":
        return D @ (C * L) @ D
    raise choices_error("algorithm family", family, ("det-cgd1", "det-cgd2"))


def lambda_D(D, sketch, L, client_L, family: str = "det-cgd1") -> float:
    """Theorem 3's λ_D (Algorithm 1) or its Algorithm 2 analogue; see the module docstring."""
    return float(client_lambdas(D, sketch, L, client_L, family).max())


def client_lambdas(D, sketch, L, client_L, family: str = "det-cgd1") -> np.ndarray:
    """λ_max(L_i^{1/2} V L_i^{1/2}) for each client (V the noise matrix); λ_D is their maximum."""
    V = noise_matrix(D, sketch, np.asarray(L, dtype=float), family)
    Vh = sym_power(V, 0.5)                     # λ_max(L_i^{1/2} V L_i^{1/2}) = λ_max(V^{1/2} L_i V^{1/2})
    X = Vh @ np.asarray(client_L, dtype=float) @ Vh
    return np.linalg.eigvalsh(0.5 * (X + np.swapaxes(X, 1, 2)))[:, -1]


def _nbhd_const(s: Setting) -> float:
    """c of (c): λ_D ≤ c det(D)^{1/d}; inf when Δ^inf = 0 (no neighbourhood term)."""
    return s.n * s.eps2 / (4.0 * s.delta_inf) if s.delta_inf > 0 else math.inf


def report(D, sketch, L, s: Setting, family: str) -> dict:
    """Corollary 1's quantities for a stepsize D: λ_D, each condition, (20)'s right-hand side."""
    Dd = np.asarray(D, dtype=float)
    d = Dd.shape[0]
    g = math.exp(np.linalg.slogdet(Dd)[1] / d)
    lam = lambda_D(Dd, sketch, L, s.client_L, family)
    a = _lam_max_pencil(Dd @ L @ Dd, Dd)
    c = _nbhd_const(s)
    k_req = 12.0 * s.f0_gap / (g * s.eps2)
    growth = math.exp(min(700.0, s.K * math.log1p(lam / s.n)))
    return {"lambda_D": lam, "det_root": g, "DLD_le_D": a, "n_over_K": s.n / s.K,
            "nbhd_limit": c * g, "K": s.K, "K_required": k_req,
            "bound_20": 2 * growth * s.f0_gap / (g * s.K) + 2 * lam * s.delta_inf / (g * s.n),
            "eps2": s.eps2, "delta_inf": s.delta_inf, "f0_gap": s.f0_gap, "n": s.n}


def line_search(W, sketch, L, s: Setting, family: str):
    """Largest β with D = βW satisfying (a)-(c); returns ``(β, binding condition)``."""
    W = np.asarray(W, dtype=float)
    d = W.shape[0]
    lam_w = lambda_D(W, sketch, L, s.client_L, family)
    g = math.exp(np.linalg.slogdet(W)[1] / d)
    cands = {"(a) DLD ⪯ D": 1.0 / _lam_max_pencil(W @ L @ W, W)}
    if lam_w > 0:
        cands["(b) λ_D ≤ n/K"] = math.sqrt(s.n / (s.K * lam_w))
        c = _nbhd_const(s)
        if math.isfinite(c):
            cands["(c) λ_D ≤ nε²det(D)^{1/d}/(4Δ^inf)"] = c * g / lam_w
    binding = min(cands, key=cands.get)
    return cands[binding], binding


def khaled_richtarik(sketch, L, s: Setting):
    """DCGD's scalar γ (Khaled & Richtárik 2020, Cor. 1); returns ``(γ, info)``."""
    Ls = float(np.linalg.eigvalsh(0.5 * (L + L.T))[-1])
    Lmax = float(np.linalg.eigvalsh(0.5 * (s.client_L + np.swapaxes(s.client_L, 1, 2)))[:, -1].max())
    omega = float(np.diag(sketch.moment_matrix()).max() - 1.0)
    A = omega * Lmax / s.n
    C = 2.0 * A * s.delta_inf
    cands = {"1/(L B)": 1.0 / Ls}
    if A > 0:
        cands["1/√(L A K)"] = 1.0 / math.sqrt(Ls * A * s.K)
    if C > 0:
        cands["ε²/(2 L C)"] = s.eps2 / (2.0 * Ls * C)
    binding = min(cands, key=cands.get)
    d0 = s.f0_gap
    k_req = 12 * d0 * Ls / s.eps2 * max(1.0, 12 * d0 * A / s.eps2, 2 * C / s.eps2)
    return cands[binding], {"binding": binding, "L": Ls, "L_max": Lmax, "omega": omega, "A": A, "B": 1.0,
                            "C": C, "K_required_KR": k_req}


# --- the exact diagonal program -------------------------------------------------
def factor_clients(client_L):
    """(c, F) with L_i = c I + F_i F_iᵀ, c = the smallest eigenvalue over all clients, F_i (d × r).

    r is the largest rank of L_i − cI over the clients (eigenvalues above 1e-12·λ_max count):
    logistic regression's clients, L_i = 2λI + AᵢᵀAᵢ/(4mᵢ), have r = mᵢ << d.
    """
    Ls = np.asarray(client_L, dtype=float)
    w, V = np.linalg.eigh(0.5 * (Ls + np.swapaxes(Ls, 1, 2)))
    c = max(float(w[:, 0].min()), 0.0)
    above = np.clip(w - c, 0.0, None)
    r = max(1, int((above > 1e-12 * max(float(w[:, -1].max()), 1e-300)).sum(axis=1).max()))
    return c, V[:, :, -r:] * np.sqrt(above[:, None, -r:])


#: corollary1's constraint generation: clients in the first relaxation, clients added per round
FIRST_CLIENTS, ADD_CLIENTS = 5, 10


def _generate(relax, sketch, L, s: Setting, family: str, time_limit: float, say=None, start=None):
    """Constraint generation over the clients for Corollary 1's programs; ``(D, status, certified)``.

    The program keeping the LMIs of only a subset S of the clients (same n, K, ε², Δ^inf) is a
    relaxation: its optimum bounds the full one from above.  Rounds start from the FIRST_CLIENTS
    clients with the largest λ_i at the best diagonal line search; each round solves the relaxation
    (``relax(setting, seconds left, best D so far)`` returns ``(D, status, certified, gap bound on
    log det)``),
    scales its D by the line search of the *full* program (so every returned D is admissible), and
    adds the ADD_CLIENTS clients whose λ_i most exceed those in S, until no client is violated.  A
    certified relaxation whose D is admissible for all clients is certified for the full program; a
    relaxation certified earlier still bounds the optimum, so a run stopped by the time limit (or by
    a round that fails) reports how far its best admissible D can be from the optimum; the best
    diagonal line search (or ``start`` = (admissible D, what it is), if better) is the starting
    candidate, so no round can make the result worse.  On a1a with 100 clients about 40 clients
    matter (docs/paper-notes.md §7).

    A relaxation's certificate is checked, not trusted: if scaling its D by the line search gains
    more than the gap bound, the certificate is void (an LMI jammed at its boundary can make the
    Newton decrement look small while the iterate is not centred).  ``say`` receives one line per
    round (progress).
    """
    t_start = time.perf_counter()
    d, n = L.shape[0], s.n
    delta, shape = best_diag_line_search(sketch, L, s)  # admissible: the point every round must beat
    best, best_ld = np.diag(delta), float(np.sum(np.log(delta)))
    what = f"the line search over the diagonal shape {shape}"
    if start is not None and np.linalg.slogdet(start[0])[1] > best_ld:
        (best, what), best_ld = start, float(np.linalg.slogdet(start[0])[1])
    lam = client_lambdas(best, sketch, L, s.client_L, family)
    subset = [int(i) for i in np.argsort(-lam, kind="stable")[:FIRST_CLIENTS]]
    upper, rounds, from_rounds = math.inf, [], False  # upper: proven bound on the optimal log det D
    while True:
        left = time_limit - (time.perf_counter() - t_start)
        sub = s if len(subset) == n else s.restrict(sorted(subset))
        try:
            D, status, certified, gap = relax(sub, left, best)
        except RuntimeError as exc:                 # no strictly feasible start, lost feasibility
            rounds.append(f"{len(subset)} of {n} clients: failed ({exc})")
            certified = False
            break
        beta, binding = line_search(D, sketch, L, s, family)
        obj = float(np.linalg.slogdet(D)[1])
        if certified and d * math.log(max(beta, 1.0)) > gap + 1e-9 * d:
            certified = False
            status += (f"; NOT certified: scaling D by {beta:.6g} keeps (a)-(c), a gain of "
                       f"{d * math.log(beta):.3g} in log det beyond the gap bound (the barrier's centring "
                       "broke down at an LMI boundary)")
        if certified:
            upper = min(upper, obj + gap)
        if obj + d * math.log(beta) > best_ld:
            best, best_ld, from_rounds = beta * D, obj + d * math.log(beta), True
        rounds.append(f"{len(subset)} of {n} clients: {status}")
        if say is not None:
            say(f"corollary1: round {len(rounds)}, {rounds[-1]}")
        if beta >= 1.0 - 1e-9:                      # every client's LMI holds: the relaxation is exact
            break
        lam = client_lambdas(D, sketch, L, s.client_L, family)
        top = lam[subset].max()
        out = [int(i) for i in np.argsort(-lam, kind="stable") if lam[i] > top and int(i) not in subset]
        if not out or time.perf_counter() - t_start >= time_limit:
            certified = False
            break
        subset += out[:ADD_CLIENTS]
    status = "; ".join(f"round {k + 1} ({r})" for k, r in enumerate(rounds))
    if not from_rounds:
        status += f"; using {what}"
    if math.isfinite(upper):
        status += (f"; proven: det(D)^(1/d) is within a factor {math.exp(max(upper - best_ld, 0.0) / d):.6g} "
                   "of the optimum")
    return best, status, certified and math.isfinite(upper)


def _gap_bound(theta, dec, t):
    """Bound on the objective gap at t from a point with Newton decrement λ = √dec <= 1/4:
    (θ + (λ + √θ)λ/(1 − λ))/t (Nesterov, Introductory Lectures, Thm 4.2.7)."""
    lam = math.sqrt(dec)
    return (theta + (lam + math.sqrt(theta)) * lam / (1 - lam)) / t


def _damped_step(f, f0, dec):
    """Nesterov's damped Newton step 1/(1 + λ), then Armijo halving: ``(a, f(a))``, or None if none is found.

    f is φ_t along the Newton direction, f0 = f(0), dec = λ² the Newton decrement².  The damped step
    keeps the iterate inside the Dikin ellipsoid; a full step from far off the path can jam an LMI
    at its boundary (slack 1e-10 relative), after which Newton crawls (a1a: 500 steps per stage,
    each lowering φ by about 2).
    """
    a = min(1.0, 1.0 / (1.0 + math.sqrt(dec)))
    while a > 1e-12:
        fa = f(a)
        if fa <= f0 - 0.25 * a * dec:
            return a, fa
        a *= 0.5
    return None


def best_diag_line_search(sketch, L, s: Setting):
    """The best of the line searches over the diagonal shapes diag-inv, optimal-diag and I; (δ, shape)."""
    best = None
    for shape in ("diag-inv", "optimal-diag", "identity-w"):
        W, _ = single_node(shape, None, "det-cgd1", sketch, L, np.array([0, L.shape[0]], dtype=np.int64))
        w = np.diag(W.dense())
        beta, _ = line_search(np.diag(w), sketch, L, s, "det-cgd1")
        if best is None or np.sum(np.log(beta * w)) > np.sum(np.log(best[0])):
            best = (beta * w, shape)
    return best


def _cache_path(prefix, kind, sketch, L, s: Setting, *tag):
    """Disk-cache path of a Corollary 1 program: keyed by (L, sketch, kind), the L_i, K, ε², Δ^inf and tag."""
    h = hashlib.sha256(_key(L, sketch, kind).encode())
    h.update(np.ascontiguousarray(s.client_L, dtype=np.float64).tobytes())
    h.update(repr((s.K, s.eps2, s.delta_inf, *tag)).encode())
    return cache_dir() / f"{prefix}-{h.hexdigest()[:32]}.npz"


def _minimize(fg, x0, maxiter):
    from scipy.optimize import minimize
    r = minimize(fg, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter, "gtol": 1e-9, "ftol": 1e-15})
    return float(r.fun), r.x, int(r.nit)


def estimate_inf(problem, x0, maxiter: int = 2000, use_cache: bool = True) -> dict:
    """Estimate f^inf and every f_i^inf by L-BFGS runs (cached on disk), and Δ^inf from them.

    f^inf: from x⁰.  f_i^inf: the smaller of the runs from x⁰ and from the global
    estimate x̂.  The problem is non-convex, so these are estimates (upper bounds on
    each infimum), as in the paper, which runs GD to convergence.  Δ^inf ≥ 0 holds
    exactly; a negative estimate (rounding) is clamped to 0.
    """
    h = hashlib.sha256()
    for a in problem.kernel_data():
        h.update(np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else repr(a).encode())
    h.update(np.ascontiguousarray(x0, dtype=np.float64).tobytes())
    h.update(f"{problem.name}|{maxiter}|v1".encode())
    path = cache_dir() / f"inf-{h.hexdigest()[:32]}.json"
    z = load(path, ()) if use_cache else None
    if z is not None:
        return {**z, "cache": str(path)}
    t0 = time.perf_counter()
    f0 = problem.f(x0)
    f_inf, xhat, nit = _minimize(problem.f_and_grad, x0, maxiter)
    f_inf = min(f_inf, f0)
    fi = []
    for i in range(problem.n):
        fg = lambda x, i=i: problem.client_f_and_grad(i, x)  # noqa: E731
        fi.append(min(_minimize(fg, x0, maxiter)[0], _minimize(fg, xhat, maxiter)[0], fg(xhat)[0]))
    delta = f_inf - float(np.mean(fi))
    out = {"f_x0": f0, "f_inf": f_inf, "f_i_inf_mean": float(np.mean(fi)), "delta_inf": max(0.0, delta),
           "delta_inf_raw": delta, "f0_gap": f0 - f_inf, "solver": f"L-BFGS-B (scipy), maxiter {maxiter}",
           "iterations_global": nit, "seconds": time.perf_counter() - t0}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(path)
    return out


def setting_for(problem, x0, K: int, eps2, use_cache: bool = True) -> Setting:
    """The Setting of a logistic-regression problem: client L_i, K, ε², estimated Δ^inf."""
    if eps2 is None:
        raise ConfigError("this stepsize needs the target ε² of Corollary 1: pass --eps2 (e.g. 1e-4, the paper's)")
    if not (eps2 > 0 and math.isfinite(eps2)):
        raise ConfigError(f"--eps2 {eps2!r}: ε² must be a finite number > 0")
    from ..environment import check_memory
    # the client L_i (n d×d matrices), stacked and factored: about three copies
    check_memory(3 * 8.0 * problem.n * problem.d ** 2, f"the distributed stepsizes' client matrices L_i "
                 f"(n·d² = {problem.n:,}·{problem.d:,}² doubles, about 3 copies)", "use fewer --clients")
    est = estimate_inf(problem, x0, use_cache=use_cache)
    Ls = np.stack([problem.client_smoothness(i) for i in range(problem.n)])
    return Setting(Ls, int(K), float(eps2), est["delta_inf"], max(est["f0_gap"], 0.0), est)
