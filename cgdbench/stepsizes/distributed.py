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
  :func:`corollary1_diag`).
* ``corollary1-full`` — max log det D over *full* symmetric D (:func:`corollary1_full`):
  a barrier Newton-CG on (D, τ) (:func:`_full_program`, :func:`_full_barrier`) inside the same
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
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, choices_error
from .cache import cache_dir, save_npz
from .cache import key as _key
from .linalg import lam_max_pencil as _lam_max_pencil
from .linalg import logdet_chol, sym_power
from .optimal import pcg
from .shapes import single_node

#: the exact diagonal program's Newton step costs O(d³) plus O(d²r) per client (L_i = c₀I + F_iF_iᵀ,
#: F_i of rank r): limit on n·d²·r
MAX_DIAG_PROGRAM_WORK = 400 * 200 ** 3


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
def _factor_clients(client_L):
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


def _program(sketch, L, s: Setting, start=None):
    """φ_t, its derivatives, a strictly feasible start (δ, τ) and the barrier parameter θ.

    The client LMIs are handled through L_i = c₀I + F_iF_iᵀ (:func:`_factor_clients`) and
    J = G^{1/2}: τI − L_i^{1/2}ΔGΔL_i^{1/2} has the spectrum of M_i = τI − JΔL_iΔJ = E − Y_iᵀY_i
    with E = τI − c₀JΔ²J shared by all clients and Y_i = F_iᵀΔJ (r × d).  By Woodbury,
    log det M_i = log det E + log det N_i with N_i = I_r − F_iᵀΔΩ₀ΔF_i, Ω₀ = JE⁻¹J, and
    Ω_i = J M_i⁻¹ J = Ω₀ + P_i N_i⁻¹ P_iᵀ with P_i = Ω₀ΔF_i: every client term costs O(d²r)
    after O(d³) shared work, instead of O(d³) per client (r ≈ 17 against d = 123 on a1a).
    """
    L = 0.5 * (L + L.T)
    d, n = L.shape[0], s.n
    c0, F = _factor_clients(s.client_L)
    m, r = F.shape[0], F.shape[2]
    Lf = c0 * np.eye(d) + F @ np.swapaxes(F, 1, 2)      # the L_i the factors represent
    R = sym_power(L, 0.5)
    G = covariance(sketch) * L
    J = sym_power(G, 0.5)
    c = _nbhd_const(s)
    bK = n / s.K
    eye, eye_r = np.eye(d), np.eye(r)

    def clients_logdet(delta, tau):
        """Σ_i log det M_i, or None outside the domain (E and every N_i positive definite)."""
        E = tau * eye - c0 * (J * delta ** 2) @ J
        try:
            C = np.linalg.cholesky(0.5 * (E + E.T))
        except np.linalg.LinAlgError:
            return None
        Z = np.linalg.solve(C, (J * delta) @ F)          # C⁻¹JΔF_i, (m, d, r)
        ln = logdet_chol(eye_r - np.swapaxes(Z, 1, 2) @ Z)
        return None if ln is None else m * 2 * float(np.log(np.diag(C)).sum()) + ln

    def phi(t, delta, tau):
        if np.any(delta <= 0) or tau <= 0 or tau >= bK:
            return math.inf
        h = c * math.exp(np.mean(np.log(delta))) - tau if math.isfinite(c) else 1.0
        if h <= 0:
            return math.inf
        lm, la = clients_logdet(delta, tau), logdet_chol(eye - (R * delta) @ R)
        if lm is None or la is None:
            return math.inf
        return -t * np.sum(np.log(delta)) - lm - la - math.log(bK - tau) - math.log(h)

    def derivs(t, delta, tau):
        """Gradient and Hessian of φ_t in (δ, τ).

        Per client (T = L_iΔ, Γ = M_i⁻¹, Ω = JΓJ): −log det M_i has gradient 2 diag(TΩ) in δ,
        −tr Γ in τ, and Hessian 2 L_i∘Ω + 2 Ω∘(TΩTᵀ) + 2 (TΩ)∘(TΩ)ᵀ, −2 diag(T JΓ²J), tr Γ².
        With the factors: F_iᵀΔΩ = N⁻¹Pᵀ, so TΩ = c₀ΔΩ + F N⁻¹Pᵀ and
        TΩTᵀ = c₀²ΔΩΔ + c₀(ΔPN⁻¹Fᵀ + FN⁻¹PᵀΔ) + F(N⁻¹ − I)Fᵀ; with Ψ_k = JE^{-k}J,
        Q = Ψ₂ΔF, S = FᵀΔQ: tr Γ = tr E⁻¹ + tr N⁻¹S, tr Γ² = tr E⁻² + 2 tr N⁻¹FᵀΔΨ₃ΔF + tr (N⁻¹S)²,
        JΓ²J = Ψ₂ + QN⁻¹Pᵀ + PN⁻¹Qᵀ + PN⁻¹SN⁻¹Pᵀ and FᵀΔJΓ²J = N⁻¹(Qᵀ + SN⁻¹Pᵀ).
        """
        E = tau * eye - c0 * (J * delta ** 2) @ J
        lam, U = np.linalg.eigh(0.5 * (E + E.T))
        A = J @ U
        Om0, Psi2, Psi3 = (A / lam) @ A.T, (A / lam ** 2) @ A.T, (A / lam ** 3) @ A.T
        DF = delta[None, :, None] * F
        DFt = np.swapaxes(DF, 1, 2)
        P, Q = Om0 @ DF, Psi2 @ DF
        Ni = np.linalg.inv(eye_r - DFt @ P)
        S, S3 = DFt @ Q, DFt @ (Psi3 @ DF)
        PN = P @ Ni
        Om = Om0 + PN @ np.swapaxes(P, 1, 2)
        TOm = c0 * delta[None, :, None] * Om + F @ np.swapaxes(PN, 1, 2)
        K1 = (delta[None, :, None] * PN) @ np.swapaxes(F, 1, 2)
        TOmT = (c0 * c0 * np.outer(delta, delta)) * Om + c0 * (K1 + np.swapaxes(K1, 1, 2)) \
            + F @ (Ni - eye_r) @ np.swapaxes(F, 1, 2)
        NiS = Ni @ S
        diag_om2 = np.diag(Psi2)[None, :] + 2 * np.sum(Q * PN, axis=2) + np.sum((PN @ S) * PN, axis=2)
        diag_tom2 = c0 * delta[None, :] * diag_om2 + np.sum(F * (Q @ Ni + PN @ S @ Ni), axis=2)
        grad = np.empty(d + 1)
        H = np.empty((d + 1, d + 1))
        grad[:d] = -t / delta + 2 * np.einsum("ijj->j", TOm)
        grad[d] = -(m * float(np.sum(1 / lam)) + float(np.einsum("ijj->", NiS)))
        H[:d, :d] = 2 * (Lf * Om + Om * TOmT + TOm * np.swapaxes(TOm, 1, 2)).sum(0)
        H[:d, :d] += np.diag(t / delta ** 2)
        H[:d, d] = H[d, :d] = -2 * diag_tom2.sum(0)
        H[d, d] = m * float(np.sum(1 / lam ** 2)) + 2 * float(np.einsum("ijj->", Ni @ S3)) \
            + float(np.sum(NiS * np.swapaxes(NiS, 1, 2)))
        # (a)
        Ea = np.linalg.inv(eye - (R * delta) @ R)
        Za = R @ Ea @ R
        grad[:d] += np.diag(Za)
        H[:d, :d] += Za * Za
        # (b)
        sb = bK - tau
        grad[d] += 1.0 / sb
        H[d, d] += 1.0 / sb ** 2
        # (c)
        if math.isfinite(c):
            gm = math.exp(np.mean(np.log(delta)))
            h = c * gm - tau
            dh = np.append(c * gm / (d * delta), -1.0)
            d2h = np.zeros((d + 1, d + 1))
            d2h[:d, :d] = c * gm * (np.outer(1 / delta, 1 / delta) / d ** 2 - np.diag(1 / (d * delta ** 2)))
            grad -= dh / h
            H += np.outer(dh, dh) / h ** 2 - d2h / h
        return grad, 0.5 * (H + H.T)

    # strictly feasible start: δ = σu, σ leaving slack in every constraint, u = diag(L)⁻¹/d or start
    u = 1.0 / (d * np.diag(L)) if start is None else np.asarray(start, dtype=float)
    lam_u = lambda_D(np.diag(u), sketch, L, s.client_L)
    gm_u = math.exp(np.mean(np.log(u)))
    sigma = 0.5 / float(np.linalg.eigvalsh((R * u) @ R)[-1])
    if lam_u > 0:
        sigma = min(sigma, math.sqrt(0.25 * bK / lam_u), 0.25 * c * gm_u / lam_u)
    delta = sigma * u
    cap = min(bK, c * sigma * gm_u)
    tau = math.sqrt(sigma * sigma * lam_u * cap) if lam_u > 0 else 0.5 * cap
    if not math.isfinite(phi(1.0, delta, tau)):
        raise RuntimeError("could not find a strictly feasible start for Corollary 1's program")
    theta = d + m * d + 1 + (1 if math.isfinite(c) else 0)     # the LMIs present (a subset: fewer)
    return phi, derivs, delta, tau, theta


#: corollary1's constraint generation: clients in the first relaxation, clients added per round
FIRST_CLIENTS, ADD_CLIENTS = 5, 10


def corollary1_diag(sketch, L, s: Setting, rtol: float = 1e-6, max_newton: int = 500, time_limit: float = 300.0,
                    say=None):
    """max Σ log δ over δ > 0 s.t. (a)-(c) for D = Diag(δ); returns ``(δ, status, certified)``.

    Variables x = (δ, τ).  With G = C ∘ L and R_i = L_i^{1/2}, λ_D ≤ τ reads
    τI − R_i Δ G Δ R_i ⪰ 0 (n LMIs, Δ = Diag(δ)); (a) reads I − R Δ R ⪰ 0 with
    R = L^{1/2}; (b) n/K − τ ≥ 0; (c) c·gm(δ) − τ ≥ 0 (gm the geometric mean,
    concave).  The barrier −t Σ log δ − Σ log det(·) − log(·) is convex and is
    minimized by damped Newton steps on d + 1 variables (:func:`_barrier`; the client terms
    and their derivatives are in :func:`_program`).  The objective gap after
    the last stage is at most (θ + (λ + √θ)λ/(1 − λ))/t with θ = d + m d + 2 (m the client
    LMIs present) and λ <= 1/4 the Newton decrement there.  The clients are taken in by
    constraint generation (:func:`_generate`).
    """
    def relax(sub, left, best):                 # each round starts from the best δ so far, scaled
        delta, status, certified, gap = _barrier(sketch, L, sub, rtol, max_newton, left, np.diag(best))
        return np.diag(delta), status, certified, gap

    D, status, certified = _generate(relax, sketch, L, s, "det-cgd1", time_limit, say)
    return np.diag(D).copy(), status, certified


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


def _barrier(sketch, L, s: Setting, rtol: float, max_newton: int, time_limit: float, start=None):
    """The barrier iterations of :func:`corollary1_diag`: ``(δ, status, certified, gap bound)``."""
    t_start = time.perf_counter()
    phi, derivs, delta, tau, theta = _program(sketch, L, s, start)
    d = L.shape[0]
    t, newton = theta / d, 0
    while True:
        centred, f0 = False, None
        for _ in range(max_newton):
            if time.perf_counter() - t_start > time_limit:
                return delta, (f"time limit {time_limit:g} s reached at t = {t:.0e} after {newton} Newton steps: "
                               "feasible, optimality not certified"), False, math.inf
            grad, H = derivs(t, delta, tau)
            # Newton step in the scaled variables (δ_j, τ relative to their values)
            sc = np.append(delta, tau)
            Hs = H * np.outer(sc, sc)
            step = -sc * np.linalg.solve(Hs, grad * sc)
            newton += 1
            dec = -float(grad @ step)
            if not dec > 0:  # H not positive definite in floating point: no Newton decrement to trust
                return delta, (f"Newton system lost positive definiteness at t = {t:.0e} after {newton} Newton "
                               "steps (an LMI at its boundary to rounding): feasible, optimality not certified"), \
                    False, math.inf
            # intermediate centres to decrement² <= 2e-3 (looser ones save little: a1a, 5 clients,
            # 332 -> 321 steps at 0.5); the last to λ <= 1/4, enough for the gap bound (Nesterov,
            # Introductory Lectures, Thm 4.2.7)
            if dec <= (0.0625 if theta / t <= rtol * d else 2e-3):
                centred = True
                break
            if f0 is None:                              # φ_t at the iterate (kept from the line search)
                f0 = phi(t, delta, tau)
            found = _damped_step(lambda a: phi(t, delta + a * step[:d], tau + a * step[d]), f0, dec)
            if found is None:
                return delta, (f"line search failed at t = {t:.0e} with Newton decrement² {dec:.1e} after "
                               f"{newton} Newton steps: feasible, optimality not certified"), False, math.inf
            a, f0 = found
            delta, tau = delta + a * step[:d], tau + a * step[d]
        final = theta / t <= rtol * d
        if final and centred:                       # the gap bound θ/t needs only the last centre
            break
        if not final:
            t *= 10.0
    gap = _gap_bound(theta, dec, t)
    return delta, f"objective gap <= {gap:.1e}; {newton} Newton steps; λ_D bound τ = {tau:.4g}", True, gap


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


def corollary1_diag_cached(sketch, L, s: Setting, use_cache: bool = True, time_limit: float = 300.0):
    """:func:`corollary1_diag` with a disk cache keyed by (L, L_i, sketch, K, ε², Δ^inf); returns (δ, info).

    Each constraint-generation round is reported on stderr when it is a terminal (a1a with
    100 clients takes minutes the first time).
    """
    import sys

    d, n = L.shape[0], s.n
    r = _factor_clients(s.client_L)[1].shape[2]
    if n * d * d * r > MAX_DIAG_PROGRAM_WORK:
        raise ConfigError(f"stepsize 'corollary1': the exact diagonal program with n = {n} clients, d = {d} and "
                          f"client rank r = {r} above the common floor (n·d²·r = {n * d * d * r:.2g}) is beyond its "
                          f"limit n·d²·r <= {MAX_DIAG_PROGRAM_WORK:.2g}; use the line search corollary1:RULE "
                          "(e.g. corollary1:optimal-diag)")
    path = _cache_path("cor1", "corollary1-diag", sketch, L, s, time_limit, "v3")
    if use_cache and path.is_file():
        z = np.load(path)
        return z["delta"], {"status": str(z["status"]), "exact": bool(z["exact"]), "cache": str(path), "seconds": 0.0}
    t0 = time.perf_counter()
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    delta, status, exact = corollary1_diag(sketch, L, s, time_limit=time_limit, say=say)
    info = {"status": status, "exact": exact, "seconds": time.perf_counter() - t0}
    if use_cache:
        info["cache"] = save_npz(path, delta=delta, status=status, exact=exact)
    return delta, info


# --- the full-D program: barrier Newton-CG ------------------------------------------
#: client eigen-directions (nearest their LMI's boundary) in the full-D barrier's preconditioner
PRECOND_DIRECTIONS = 32


def _full_program(sketch, L, s: Setting, family: str, start=None):
    """φ_t over full symmetric D and τ, its Newton system in U-coordinates, a strict start and θ.

    φ_t(D, τ) = −t log det D − log det(D − DLD) − Σ_i log det(τI − R_i V(D) R_i) − log(n/K − τ)
    − log(c det(D)^{1/d} − τ), with R_i = L_i^½ and V(D) = C∘(DLD) (Algorithm 1) or D(C∘L)D
    (Algorithm 2), both matrix-convex in D (C ⪰ 0), so every term is a convex barrier.  With
    X_i = τI − R_iVR_i, Γ_i = R_iX_i⁻¹R_i, Γ = Σ Γ_i, Ξ = Σ R_iX_i⁻²R_i:

        ∇_D = −tD⁻¹ − G + GDL + LDG + V′*[Γ] − (cg/(dh))D⁻¹,   ∇_τ = −Σ tr X_i⁻¹ + 1/(n/K − τ) + 1/h,
        ∇²[H, η] = tD⁻¹HD⁻¹ + (a)″[H] + V′*[Σ Γ_iV′[H]Γ_i − ηΞ] + V″*[Γ, H] + (c)″ ,
                   τ part −⟨Ξ, V′[H]⟩ + η(Σ tr X_i⁻² + 1/(n/K − τ)²) + (c)″,

    (G = (D − DLD)⁻¹, h = c g − τ, g = det(D)^{1/d}; V′ the derivative, V′* its adjoint, V″*[Γ, H]
    = (C∘Γ)HL + LH(C∘Γ) or ΓH(C∘L) + (C∘L)HΓ).  In the basis U = C_D Q (D = C_DC_Dᵀ, C_DᵀLC_D =
    QΛQᵀ) D = UUᵀ and DLD = UΛUᵀ, so with H = UXUᵀ the t-term is tX and the (a)-term is *exactly*
    diagonal: X_jk (g_jg_k(1 − λ_j − λ_k)² + g_jλ_k + g_kλ_j), g = 1/(1 − λ).

    **Client terms by Woodbury.**  With L_i = c₀I + F_iF_iᵀ (:func:`_factor_clients`, rank r),
    S_i = c₀I + F_iᵀF_i and the shared E = τI − c₀V: Γ_i = (τL_i⁻¹ − V)⁻¹ = c₀E⁻¹ + c₀B_iN_i⁻¹B_iᵀ
    with B_i = E⁻¹F_i and N_i = S_i/τ − F_iᵀB_i (r × r); log det X_i = log det E + r log(τ/c₀)
    + log det N_i; tr X_i⁻¹ = tr E⁻¹ + r/τ + tr N_i⁻¹M_i with M_i = ∂N_i/∂τ = B_iᵀB_i − S_i/τ²;
    tr X_i⁻² = tr E⁻² + r/τ² + tr (N_i⁻¹M_i)² − 2 tr N_i⁻¹(S_i/τ³ − B_iᵀE⁻¹B_i); Ξ = −Σ ∂Γ_i/∂τ.
    Σ Γ_iYΓ_i = c₀²(m E⁻¹YE⁻¹ + E⁻¹YS + SYE⁻¹ + Σ B_iN_i⁻¹(B_iᵀYB_i)N_i⁻¹B_iᵀ), S = Σ B_iN_i⁻¹B_iᵀ:
    O(d²r) per client and Hessian product instead of O(d³).

    **Preconditioner** (CG in U-coordinates): the diagonal of t, (a), (c)'s trace part and the
    exact diagonal of the V″ term, plus rank-one terms by Woodbury for the PRECOND_DIRECTIONS
    eigen-directions of the N_i (and the few of E) nearest their boundary, and (c)'s rank one.
    """
    L = 0.5 * (L + L.T)
    d, n = L.shape[0], s.n
    C = covariance(sketch)
    W = C * L                                           # Algorithm 2: V = DWD
    c0, F = _factor_clients(s.client_L)
    # a floor c₀ > 0 is needed (L_i⁻¹ below): without a common one the L_i are raised by c₀,
    # which only tightens the client LMIs (the final D is checked against the true L_i)
    c0 = max(c0, 1e-9 * float(np.linalg.eigvalsh(L)[-1]))
    m, r = F.shape[0], F.shape[2]
    Ft = np.swapaxes(F, 1, 2)
    Fh = F.transpose(1, 0, 2).reshape(d, m * r)         # the F_i side by side
    Sf = c0 * np.eye(r) + Ft @ F                         # S_i = c₀I + F_iᵀF_i
    c = _nbhd_const(s)
    bK = n / s.K
    eye = np.eye(d)
    alg1 = family == "det-cgd1"
    if family not in ("det-cgd1", "det-cgd2"):
        raise choices_error("algorithm family", family, ("det-cgd1", "det-cgd2"))

    def V_of(D):
        return C * (D @ L @ D) if alg1 else D @ W @ D

    def Vp(H, D):                                       # V′[H]
        Y = H @ (L if alg1 else W) @ D
        return C * (Y + Y.T) if alg1 else Y + Y.T

    def sym2(Y):
        return Y + Y.T

    def Vadj(Z, D):                                     # V′*[Z]: ⟨Z, V′[H]⟩ = ⟨V′*[Z], H⟩
        return sym2((C * Z) @ D @ L) if alg1 else sym2(Z @ D @ W)

    def V2(Gam, H):                                     # ½∇_H ⟨Γ, V″[H, H]⟩
        return sym2((C * Gam) @ H @ L) if alg1 else sym2(Gam @ H @ W)

    def clients(D, tau):
        """(E, N_i): log det X_i = log det E + r log(τ/c₀) + log det N_i (see the docstring)."""
        E = tau * eye - c0 * V_of(D)
        N = Sf / tau - Ft @ np.linalg.solve(E, Fh).reshape(d, m, r).transpose(1, 0, 2)
        return E, 0.5 * (N + np.swapaxes(N, 1, 2))

    def phi(t, D, tau):
        if not 0.0 < tau < bK:
            return math.inf
        ld = logdet_chol(D)
        if ld is None:
            return math.inf
        h = c * math.exp(ld / d) - tau if math.isfinite(c) else 1.0
        if h <= 0:
            return math.inf
        la = logdet_chol(D - D @ L @ D)
        E, N = clients(D, tau)
        le = logdet_chol(0.5 * (E + E.T))
        if la is None or le is None:
            return math.inf
        ln = logdet_chol(N)
        if ln is None:
            return math.inf
        return -t * ld - la - (m * (le + r * math.log(tau / c0)) + ln) - math.log(bK - tau) - math.log(h)

    def system(t, D, tau):
        """(∇ in U-coordinates: Uᵀ∇_DU and ∇_τ), the Hessian product in them, preconditioner, U."""
        Cd = np.linalg.cholesky(D)
        lam, Q = np.linalg.eigh(Cd.T @ L @ Cd)
        U = Cd @ Q
        Ui = np.linalg.solve(U, eye)
        Di = Ui.T @ Ui
        ga = 1.0 / (1.0 - lam)
        G = (Ui.T * ga) @ Ui
        V = V_of(D)
        eps, UE = np.linalg.eigh(tau * eye - c0 * V)
        Ei, Ei2 = (UE / eps) @ UE.T, (UE / eps ** 2) @ UE.T
        B = (Ei @ Fh).reshape(d, m, r).transpose(1, 0, 2)              # B_i = E⁻¹F_i, (m, d, r)
        Bh = B.transpose(1, 0, 2).reshape(d, m * r)                     # the B_i side by side
        Bt = np.swapaxes(B, 1, 2)
        nu, Wn = np.linalg.eigh(Sf / tau - Ft @ B)
        Ni = (Wn / nu[:, None, :]) @ np.swapaxes(Wn, 1, 2)
        M = Bt @ B - Sf / tau ** 2                                      # ∂N_i/∂τ
        NiM = Ni @ M
        Sb = (B @ Ni).transpose(1, 0, 2).reshape(d, m * r) @ Bh.T       # Σ B_iN_i⁻¹B_iᵀ
        Gam = c0 * (m * Ei + Sb)                                        # Σ Γ_i
        EiSb = Ei @ Sb
        Xi2 = c0 * (m * Ei2 + EiSb + EiSb.T
                    + (B @ (NiM @ Ni)).transpose(1, 0, 2).reshape(d, m * r) @ Bh.T)   # Σ Γ_iL_i⁻¹Γ_i
        tr1 = m * (float(np.sum(1.0 / eps)) + r / tau) + float(np.einsum("ijj->", NiM))    # Σ tr X_i⁻¹
        tr2 = m * (float(np.sum(eps ** -2.0)) + r / tau ** 2) + float(np.sum(NiM * np.swapaxes(NiM, 1, 2))) \
            - 2.0 * float(np.sum(Ni * (Sf / tau ** 3 - Bt @ Ei @ B)))                      # Σ tr X_i⁻²
        if math.isfinite(c):
            cg = c * math.exp(2.0 * float(np.log(np.diag(Cd)).sum()) / d)
            h = cg - tau
            kc = cg / (d * h)
        else:
            cg, h, kc = 0.0, 1.0, 0.0
        gD = -(t + kc) * Di - G + sym2(G @ D @ L) + Vadj(Gam, D)
        gt = -tr1 + 1.0 / (bK - tau) + (1.0 / h if math.isfinite(c) else 0.0)
        S = 1.0 - lam[:, None] - lam[None, :]
        base = t + kc + np.outer(ga, ga) * S * S + ga[:, None] * lam[None, :] + lam[:, None] * ga[None, :]
        # + the exact diagonal of ⟨H, V″*[Γ, H]⟩ = 2 tr(M₁XM₂X), M₁ = Uᵀ(C∘Γ)U or UᵀΓU, M₂ = Λ or UᵀWU
        M1 = U.T @ ((C * Gam) if alg1 else Gam) @ U
        M2 = np.diag(lam) if alg1 else U.T @ W @ U
        d1, d2 = np.diag(M1), np.diag(M2)
        bv = 2.0 * M1 * M2 + np.outer(d1, d2) + np.outer(d2, d1)
        bv[np.diag_indices(d)] *= 0.5
        tt = tr2 + 1.0 / (bK - tau) ** 2

        def hess(Xu, eta):
            H = U @ Xu @ U.T
            Y = Vp(H, D)
            YSb = Y @ Sb
            K = Ni @ (Bt @ (Y @ Bh).reshape(d, m, r).transpose(1, 0, 2)) @ Ni
            Z = c0 * c0 * (m * Ei @ Y @ Ei + Ei @ YSb + YSb.T @ Ei
                           + (B @ K).transpose(1, 0, 2).reshape(d, m * r) @ Bh.T) - eta * Xi2
            oD = U.T @ (Vadj(Z, D) + V2(Gam, H)) @ U + base * Xu
            ot = -float(np.sum(Xi2 * Y)) + eta * tt
            if math.isfinite(c):                        # (c): rank one in (tr X, η) plus a trace term
                q = (cg / d) * float(np.trace(Xu)) - eta
                oD = oD + (q * cg / (d * h * h) - kc * float(np.trace(Xu)) / d) * eye
                ot -= q / (h * h)
            return oD, ot

        # preconditioner: the diagonal B (t, (a), (c)'s trace part; τ: its own second derivative
        # less the selected directions) plus rank-one terms g gᵀ by Woodbury: the eigen-directions
        # of the N_i (N_iv = νv, a = B_iv: g = (η vᵀM_iv − c₀⟨A, X⟩)/ν) and of E (Ee = εe, a = e:
        # g = √m (η − c₀⟨A, X⟩)/ε) nearest their boundary, with A = Uᵀ V′*[a aᵀ] U, and (c)'s
        # ((cg/d) tr X − η)/h
        order = np.argsort(nu, axis=None)[:min(PRECOND_DIRECTIONS, nu.size)]
        order = order[nu.ravel()[order] <= 1e3 * nu.min()]
        ci, ki = np.unravel_index(order, nu.shape)
        v = Wn[ci, :, ki]
        ke = np.flatnonzero(eps[:4] <= 1e3 * eps[0])
        a = np.concatenate([np.einsum("pab,pb->pa", B[ci], v), UE[:, ke].T])
        scale = np.concatenate([1.0 / nu[ci, ki], math.sqrt(m) / eps[ke]])
        coef_t = np.concatenate([np.einsum("pa,pab,pb->p", v, M[ci], v), np.ones(len(ke))]) * scale
        if alg1:                                        # DLU = UΛ: A = MΛ + ΛM, M = (a∘U)ᵀC(a∘U)
            Ba = a[:, :, None] * U
            Ak = np.swapaxes(Ba, 1, 2) @ (C @ Ba) * lam[None, None, :]
        else:                                           # A = Uᵀa bᵀU + (…)ᵀ, b = (C∘L)Da: rank two
            Ak = (a @ U)[:, :, None] * (a @ D @ W @ U)[:, None, :]
        Ak = Ak + np.swapaxes(Ak, 1, 2)
        rows = [np.append(-c0 * Ak.reshape(len(a), d * d) * scale[:, None], coef_t[:, None], axis=1)]
        t_diag = tt + (1.0 / h ** 2 if math.isfinite(c) else 0.0)
        if math.isfinite(c):
            rows.append(np.append((cg / d) * eye.ravel(), -1.0)[None, :] / h)
        Gm = np.concatenate(rows)
        bvec = np.append((base + bv).ravel(), max(t_diag - float(np.sum(coef_t ** 2)), 1e-3 * t_diag))
        BG = Gm / bvec
        cap = np.linalg.cholesky(np.eye(len(Gm)) + Gm @ BG.T)

        def prec(rx, re):
            y = np.append(rx.ravel(), re) / bvec
            z = y - BG.T @ np.linalg.solve(cap.T, np.linalg.solve(cap, Gm @ y))
            return z[:-1].reshape(d, d), float(z[-1])

        return U.T @ gD @ U, gt, hess, prec, U

    # strictly feasible start: half an admissible D (λ_D drops by 4, (c)'s cap by 2), by default the
    # best diagonal line search
    D = 0.5 * (np.diag(best_diag_line_search(sketch, L, s)[0]) if start is None else start)
    lam0 = lambda_D(D, sketch, L, s.client_L, family)
    cap = min(bK, c * math.exp(np.linalg.slogdet(D)[1] / d))
    tau = math.sqrt(lam0 * cap) if lam0 > 0 else 0.5 * cap
    if not math.isfinite(phi(1.0, D, tau)):
        raise RuntimeError("could not find a strictly feasible start for Corollary 1's full-D program")
    theta = d + m * d + 1 + (1 if math.isfinite(c) else 0)
    return phi, system, D, tau, theta


def _full_barrier(sketch, L, s: Setting, family: str, rtol: float, time_limit: float, start=None, max_newton: int = 500,
                  cg_rtol: float = 1e-2, max_cg: int = 500):
    """The barrier iterations of the full-D program: ``(D, status, certified, gap bound)``.

    Damped Newton steps (1/(1 + λ), then Armijo) on (D, τ), the Newton systems solved by CG in
    U-coordinates to ``cg_rtol``.  CG's decrement −⟨∇φ, step⟩ underestimates the true one, so the
    last centre is confirmed with CG to 1e-8: the gap bound (θ + (λ + √θ)λ/(1 − λ))/t uses that λ.
    """
    t_start = time.perf_counter()
    phi, system, D, tau, theta = _full_program(sketch, L, s, family, start)
    d = L.shape[0]
    t, t_final, newton, cgs = theta / d, theta / (rtol * d), 0, 0
    while True:
        final = t >= t_final * (1 - 1e-12)
        centred, f0 = False, None
        for _ in range(max_newton):
            if time.perf_counter() - t_start > time_limit:
                return D, (f"time limit {time_limit:g} s reached at t = {t:.0e} after {newton} Newton steps, "
                           f"{cgs} CG products: feasible, optimality not certified"), False, math.inf
            gD, gt, hess, prec, U = system(t, D, tau)
            sx, se, k = pcg(hess, prec, gD, gt, cg_rtol, max_cg)
            cgs += k
            newton += 1
            dec = -(float(np.sum(gD * sx)) + gt * se)
            if final and dec <= 0.0625:                 # confirm the last centre with an accurate solve
                sx, se, k = pcg(hess, prec, gD, gt, 1e-8, 10 * max_cg)
                cgs += k
                dec = -(float(np.sum(gD * sx)) + gt * se)
            if not dec > 0:
                return D, (f"Newton system lost positive definiteness at t = {t:.0e} after {newton} Newton "
                           "steps: feasible, optimality not certified"), False, math.inf
            if dec <= (0.0625 if final else 2e-2):
                centred = True
                break
            step = U @ sx @ U.T
            step = 0.5 * (step + step.T)
            if f0 is None:
                f0 = phi(t, D, tau)
            found = _damped_step(lambda a: phi(t, D + a * step, tau + a * se), f0, dec)
            if found is None:
                return D, (f"line search failed at t = {t:.0e} with Newton decrement² {dec:.1e} after "
                           f"{newton} Newton steps: feasible, optimality not certified"), False, math.inf
            a, f0 = found
            D, tau = D + a * step, tau + a * se
        if final and centred:
            break
        if not final:
            t = min(10.0 * t, t_final)
    gap = _gap_bound(theta, dec, t)
    return D, (f"objective gap <= {gap:.1e}; {newton} Newton steps, {cgs} CG products; λ_D bound τ = {tau:.4g}"), \
        True, gap


# --- the full-D program (conic, small sizes) ----------------------------------------
def _full_lmis(sketch, L, family: str):
    """(factor, LMI size m): λ_D ≤ u as ‖Y_i(D)‖² ≤ u, Y_i linear in D, one LMI per client.

    Algorithm 2: factor B with C∘L = BBᵀ, Y_i = L_i^½ D B (m = 2d).  Algorithm 1: factor
    [c_1 … c_r] with C = Σ_j c_j c_jᵀ, so C∘(DLD) = Σ_j Diag(c_j) DLD Diag(c_j) and Y_i stacks
    L^½ D Diag(c_j) L_i^½ over the r = rank C terms (m = d(1 + r)): a lifting that keeps λ_D
    convex in D (Proposition 3).
    """
    C = covariance(sketch)
    d = C.shape[0]
    if family == "det-cgd2":
        return sym_power(C * L, 0.5), 2 * d
    w, E = np.linalg.eigh(0.5 * (C + C.T))
    keep = w > 1e-12 * max(float(w[-1]), 1e-300)
    return E[:, keep] * np.sqrt(w[keep]), d * (1 + int(keep.sum()))


#: the full-D program by Clarabel (the fallback): n client LMIs of size m, 6-15 solves; at n·m² ≈ 1e4
#: each solve takes ~3 s (d = 16, 10 clients, Algorithm 2: 39 s in all), n·m² ≈ 3e4 did not finish in 60 s
MAX_FULL_PROGRAM = 15_000
#: the full-D barrier: a Hessian product costs O(d³) per client LMI present
MAX_FULL_BARRIER_WORK = 100 * 200 ** 3


def corollary1_full(sketch, L, s: Setting, family: str = "det-cgd1", solver: str = "barrier",
                    time_limit: float = 120.0, rtol: float = 1e-6, say=None, start=None):
    """max log det D over *full* symmetric D under Corollary 1 (a)-(c); ``(D, status, certified)``.

    ``solver="barrier"``: barrier Newton-CG (:func:`_full_barrier`) inside constraint generation
    over the clients (:func:`_generate`, ``start`` its extra starting candidate), any size within
    the time limit.

    ``solver="CLARABEL"`` or ``"SCS"``, small sizes: scaled by a feasible point D₀ = β₀ Diag(L)⁻¹
    (the line search): D = σX with σ = det(D₀)^{1/d}, and λ_D ≤ λ₀v with λ₀ = λ_D(D₀), so X and v
    are of order one.  For a fixed v, P(v) = max log det X subject to

        (a) DLD ⪯ D:            [[X, √σ X L^½], [√σ L^½ X, I]] ⪰ 0
        λ_D ≤ λ₀v:              [[v I, Y_iᵀ], [Y_i, I]] ⪰ 0 for every client (Y_i ∝ _full_lmis)

    is a log det program with LMIs (cvxpy, a parameter v: canonicalized once).  (b) is
    v ≤ v_b = n/(Kλ₀); (c) is log det X ≥ d log(λ₀v/(cσ)).  The value V(v) of P(v) grows at
    most like (d/2) log v (shrinking X by β keeps (a) and scales λ_D by β²), so
    h(v) = V(v) − d log(λ₀v/(cσ)) is decreasing, h(1) ≥ 0 (D₀ is feasible), and the optimum is
    P(v*) with v* = v_b if h(v_b) ≥ 0, else the root of h (Brent on log v).  Writing (c)
    directly (det(X)^{1/d} as a geometric mean under an LMI) made Clarabel stall and SCS
    return inaccurate points; this way every solve is a plain log det program.

    The returned D is scaled by the line search (largest β with βD admissible), so it
    satisfies (a)-(c) exactly whatever the solver's tolerance; the status says by how much.
    """
    if solver == "barrier":
        def relax(sub, left, best):             # each round starts from half the best D so far
            return _full_barrier(sketch, L, sub, family, rtol, left, best)
        return _generate(relax, sketch, L, s, family, time_limit, say, start)
    import cvxpy as cp
    from scipy.optimize import brentq

    t_start = time.perf_counter()
    L = 0.5 * (L + L.T)
    d = L.shape[0]
    factor, _ = _full_lmis(sketch, L, family)
    W0 = np.diag(1.0 / np.diag(L))
    D0 = line_search(W0, sketch, L, s, family)[0] * W0
    sigma = math.exp(np.mean(np.log(np.diag(D0))))
    lam0 = lambda_D(D0, sketch, L, s.client_L, family)
    R = sym_power(L, 0.5)
    X = cp.Variable((d, d), symmetric=True)
    v = cp.Parameter(nonneg=True)
    eye = np.eye(d)

    def psd(blocks):
        M = cp.bmat(blocks)
        return 0.5 * (M + M.T) >> 0             # symmetric by construction; cvxpy wants it explicit

    cons = [psd([[X, math.sqrt(sigma) * X @ R], [math.sqrt(sigma) * R @ X, eye]])]
    if lam0 > 0:                                 # λ_D ≡ 0 (no compression): only (a)
        a = sigma / math.sqrt(lam0)
        for Ri in _roots(s.client_L):
            if family == "det-cgd2":
                Y = a * (Ri @ X @ factor)
            else:
                Y = cp.vstack([a * (R @ X @ (factor[:, j][:, None] * Ri)) for j in range(factor.shape[1])])
            cons.append(psd([[v * eye, Y.T], [Y, np.eye(Y.shape[0])]]))
    prob = cp.Problem(cp.Maximize(cp.log_det(X)), cons)
    solves = []

    def P(log_v):
        left = time_limit - (time.perf_counter() - t_start)
        if left <= 0:
            raise RuntimeError(f"time limit {time_limit:g} s reached after {len(solves)} solves")
        v.value = math.exp(log_v)
        opts = {"time_limit": left} if solver == "CLARABEL" else {"time_limit_secs": left, "eps": 1e-9}
        with warnings.catch_warnings():          # "may be inaccurate": counted in the status instead
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=solver, **opts)
        if X.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"{solver} status {prob.status} at v = {v.value:.6g}")
        solves.append(prob.status)              # inaccurate: Clarabel's reduced tolerances (gap ~1e-7)
        return float(prob.value), np.array(X.value)

    if lam0 == 0:
        _, Xv = P(0.0)
        how = "no compression noise: (a) only"
    else:
        log_vb = math.log(s.n / (s.K * lam0))
        c = _nbhd_const(s)
        log_c = math.log(lam0 / (c * sigma)) if math.isfinite(c) else -math.inf
        h = lambda lv: P(lv)[0] - d * (lv + log_c)                       # noqa: E731
        lo, hi = 0.0, min(math.log(4.0), log_vb)     # bracket the root from v = 1 (h(1) >= 0) upwards
        while hi < log_vb and h(hi) >= 0:
            lo, hi = hi, min(hi + math.log(4.0), log_vb)
        if hi >= log_vb and h(log_vb) >= 0:
            lv, how = log_vb, "(c) slack at (b)'s limit v = n/(Kλ₀)"
        else:
            lv = brentq(h, lo, hi, xtol=1e-10, rtol=1e-12)
            how = "(c) binds, Brent on log v"
        _, Xv = P(lv)
        how += f"; {len(solves)} solves, {solves.count('optimal_inaccurate')} inaccurate"
    D = sigma * 0.5 * (Xv + Xv.T)
    if np.linalg.eigvalsh(D)[0] <= 0:
        raise RuntimeError(f"{solver} returned a D that is not positive definite")
    beta, binding = line_search(D, sketch, L, s, family)
    return beta * D, (f"{solver}, log det program(s) with LMIs ({how}); scaled by β = 1 {beta - 1:+.1e} "
                      f"to make {binding} hold with equality"), True   # the solver's own optimality certificate


def corollary1_full_cached(sketch, L, s: Setting, family: str, use_cache: bool = True, time_limit: float = 300.0):
    """:func:`corollary1_full` with limit checks, disk cache and solver fallback; returns ``(D, info)``.

    The barrier first (n·d³ <= MAX_FULL_BARRIER_WORK); if it fails, Clarabel then SCS for small
    programs (n·m² <= MAX_FULL_PROGRAM).  A barrier run stopped by the time limit returns its best
    admissible D with the proven factor to the optimum (``info["exact"]`` False).  Rounds are
    reported on stderr when it is a terminal.
    """
    import sys

    d, n = L.shape[0], s.n
    m = _full_lmis(sketch, L, family)[1]
    conic = n * m * m <= MAX_FULL_PROGRAM
    if n * d ** 3 > MAX_FULL_BARRIER_WORK and not conic:
        raise ConfigError(f"stepsize 'corollary1-full': n = {n} clients at d = {d} give n·d³ = {n * d ** 3:.3g}, "
                          f"beyond the full-D barrier's limit n·d³ <= {MAX_FULL_BARRIER_WORK:.3g} (and n·m² = "
                          f"{n * m * m:.3g} beyond the conic limit {MAX_FULL_PROGRAM:.3g}); use 'corollary1' (the "
                          "exact diagonal program) or 'corollary1:optimal' (a full D by line search)")
    path = _cache_path("cor1f", f"corollary1-full-{family}", sketch, L, s, time_limit, "v2")
    if use_cache and path.is_file():
        z = np.load(path)
        return z["D"], {"status": str(z["status"]), "solver": str(z["solver"]), "exact": bool(z["exact"]),
                        "cache": str(path), "seconds": 0.0}
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    start = None                                # the diagonal program's D (cached): never return less
    if n * d * d * _factor_clients(s.client_L)[1].shape[2] <= MAX_DIAG_PROGRAM_WORK:
        delta, _ = corollary1_diag_cached(sketch, L, s, use_cache, time_limit)
        start = (np.diag(delta), "the diagonal program's D (rule corollary1)")
    errors, found = [], []                      # found: (log det, D, info) of solvers that returned a D
    for solver in ("barrier", "CLARABEL", "SCS"):
        if (solver == "barrier" and n * d ** 3 > MAX_FULL_BARRIER_WORK) or (solver != "barrier" and not conic):
            continue
        t0 = time.perf_counter()
        try:
            D, status, exact = corollary1_full(sketch, L, s, family, solver, time_limit, say=say, start=start)
        except Exception as exc:  # solver failure or time-out: next solver
            errors.append(f"{solver}: {exc}")
            continue
        found.append((float(np.linalg.slogdet(D)[1]), D, {"status": status, "solver": solver, "exact": exact,
                                                         "seconds": time.perf_counter() - t0}))
        if exact:
            break
        errors.append(f"{solver}: not certified ({status})")   # a small program then tries Clarabel
    if not found:
        raise ConfigError("stepsize 'corollary1-full': every solver failed (" + "; ".join(errors) + "); "
                          "use 'corollary1' or 'corollary1:optimal'")
    _, D, info = max(found, key=lambda f: (f[2]["exact"], f[0]))
    info["errors"] = [e for e in errors if not e.startswith(info["solver"] + ":")]
    if use_cache:
        info["cache"] = save_npz(path, D=D, status=info["status"], solver=info["solver"], exact=info["exact"])
    return D, info


# --- Δ^inf and f(x⁰) − f^inf ------------------------------------------------------
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
    if use_cache and path.is_file():
        return {**json.loads(path.read_text()), "cache": str(path)}
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
    est = estimate_inf(problem, x0, use_cache=use_cache)
    Ls = np.stack([problem.client_smoothness(i) for i in range(problem.n)])
    return Setting(Ls, int(K), float(eps2), est["delta_inf"], max(est["f0_gap"], 0.0), est)
