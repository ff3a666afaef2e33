"""Corollary 1's diagonal program: the best diagonal D under (a)-(c), solved and certified.

max Σ log δ over diagonal D = Diag(δ) with λ_D ≤ τ as n LMIs linear in δ, by a barrier Newton
method on (δ, τ) inside the constraint generation over the clients of :mod:`.distributed`
(see its docstring for the program).
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..errors import ConfigError
from .cache import load, save_npz
from .linalg import logdet_chol, sym_power
from .distributed import Setting, _cache_path, _damped_step, factor_clients, _gap_bound, _generate, _nbhd_const
from .distributed import lambda_D
from .distributed import covariance


#: the exact diagonal program's Newton step costs O(d³) plus O(d²r) per client (L_i = c₀I + F_iF_iᵀ,
#: F_i of rank r): limit on n·d²·r
MAX_DIAG_PROGRAM_WORK = 400 * 200 ** 3


def diag_program(sketch, L, s: Setting, start=None, factors=None):
    """φ_t, its derivatives, a strictly feasible start (δ, τ) and the barrier parameter θ.

    The client LMIs are handled through L_i = c₀I + F_iF_iᵀ (:func:`factor_clients`) and
    J = G^{1/2}: τI − L_i^{1/2}ΔGΔL_i^{1/2} has the spectrum of M_i = τI − JΔL_iΔJ = E − Y_iᵀY_i
    with E = τI − c₀JΔ²J shared by all clients and Y_i = F_iᵀΔJ (r × d).  By Woodbury,
    log det M_i = log det E + log det N_i with N_i = I_r − F_iᵀΔΩ₀ΔF_i, Ω₀ = JE⁻¹J, and
    Ω_i = J M_i⁻¹ J = Ω₀ + P_i N_i⁻¹ P_iᵀ with P_i = Ω₀ΔF_i: every client term costs O(d²r)
    after O(d³) shared work, instead of O(d³) per client (r ≈ 17 against d = 123 on a1a).
    """
    L = 0.5 * (L + L.T)
    d, n = L.shape[0], s.n
    c0, F = factor_clients(s.client_L) if factors is None else factors
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



def corollary1_diag(sketch, L, s: Setting, rtol: float = 1e-6, max_newton: int = 500, time_limit: float = 300.0,
                    say=None):
    """max Σ log δ over δ > 0 s.t. (a)-(c) for D = Diag(δ); returns ``(δ, status, certified)``.

    Variables x = (δ, τ).  With G = C ∘ L and R_i = L_i^{1/2}, λ_D ≤ τ reads
    τI − R_i Δ G Δ R_i ⪰ 0 (n LMIs, Δ = Diag(δ)); (a) reads I − R Δ R ⪰ 0 with
    R = L^{1/2}; (b) n/K − τ ≥ 0; (c) c·gm(δ) − τ ≥ 0 (gm the geometric mean,
    concave).  The barrier −t Σ log δ − Σ log det(·) − log(·) is convex and is
    minimized by damped Newton steps on d + 1 variables (:func:`_barrier`; the client terms
    and their derivatives are in :func:`diag_program`).  The objective gap after
    the last stage is at most (θ + (λ + √θ)λ/(1 − λ))/t with θ = d + m d + 2 (m the client
    LMIs present) and λ <= 1/4 the Newton decrement there.  The clients are taken in by
    constraint generation (:func:`_generate`).
    """
    def relax(sub, left, best):                 # each round starts from the best δ so far, scaled
        delta, status, certified, gap = _barrier(sketch, L, sub, rtol, max_newton, left, np.diag(best))
        return np.diag(delta), status, certified, gap

    D, status, certified = _generate(relax, sketch, L, s, "det-cgd1", time_limit, say)
    return np.diag(D).copy(), status, certified


def _barrier(sketch, L, s: Setting, rtol: float, max_newton: int, time_limit: float, start=None):
    """The barrier iterations of :func:`corollary1_diag`: ``(δ, status, certified, gap bound)``."""
    t_start = time.perf_counter()
    phi, derivs, delta, tau, theta = diag_program(sketch, L, s, start)
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


def corollary1_diag_cached(sketch, L, s: Setting, use_cache: bool = True, time_limit: float = 300.0):
    """:func:`corollary1_diag` with a disk cache keyed by (L, L_i, sketch, K, ε², Δ^inf); returns (δ, info).

    Each constraint-generation round is reported on stderr when it is a terminal (a1a with
    100 clients takes minutes the first time).
    """
    import sys

    d, n = L.shape[0], s.n
    r = factor_clients(s.client_L)[1].shape[2]
    if n * d * d * r > MAX_DIAG_PROGRAM_WORK:
        raise ConfigError(f"stepsize 'corollary1': the exact diagonal program with n = {n} clients, d = {d} and "
                          f"client rank r = {r} above the common floor (n·d²·r = {n * d * d * r:.2g}) is beyond its "
                          f"limit n·d²·r <= {MAX_DIAG_PROGRAM_WORK:.2g}; use the line search corollary1:RULE "
                          "(e.g. corollary1:optimal-diag)")
    path = _cache_path("cor1", "corollary1-diag", sketch, L, s, time_limit, "v3")
    z = load(path, ("delta", "status", "exact")) if use_cache else None
    if z is not None:
        return z["delta"], {"status": str(z["status"]), "exact": bool(z["exact"]), "cache": str(path), "seconds": 0.0}
    t0 = time.perf_counter()
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    delta, status, exact = corollary1_diag(sketch, L, s, time_limit=time_limit, say=say)
    info = {"status": status, "exact": exact, "seconds": time.perf_counter() - t0}
    if use_cache:
        info["cache"] = save_npz(path, delta=delta, status=status, exact=exact)
    return delta, info

