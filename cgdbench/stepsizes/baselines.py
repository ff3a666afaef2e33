"""Theoretical stepsizes of the baselines: EF21, DIANA, MARINA, det-MARINA.

Scalar smoothness constants of a finite sum f = (1/n) Σ f_i with matrices L, L_i:
``L_f = λ_max(L)`` (f is L_f-smooth), ``L_i = λ_max(L_i)``, ``L̃ = √((1/n) Σ L_i²)``,
``L_max = max_i L_i``.

* EF21 (Richtárik, Sokolov & Fatkhullin 2021, Theorem 1), C contractive with α:
  θ = 1 − √(1 − α), β = (1 − α)/(1 − √(1 − α)), γ = 1/(L_f + L̃ √(β/θ)).
* MARINA (Gorbunov et al. 2021, Theorem 2.1), Q unbiased with ω, p the probability
  of a full round: γ = 1/(L̃ (1 + √((1 − p) ω/(p n)))).  Default p (Corollary 2.1
  balances the two kinds of round): the bits of a compressed message over the bits of a
  full d-vector (for rand-k with shared-seed indices exactly the paper's ζ_Q/d = k/d).
* DIANA, non-convex with full local gradients (Horváth et al. 2019, Theorem 4 with
  one sample per client, m = 1): α = 1/(1+ω), γ = 1/(10 L_max √(1 + ω/n) (ω + 2)).
* det-MARINA (matrix stepsize D, diagonal sketches S_i with covariance C): derived in
  docs/paper-notes.md §8 from MARINA's Lyapunov argument,

      D⁻¹ ⪰ L + ((1 − p)/(p n)) λ_max(C ∘ D) L̃² I,

  which for D = γI and rand-k (C_jj = ω) is MARINA's quadratic condition
  1 − γL_f − γ² ω L̃² (1 − p)/(pn) ≥ 0.  Under it,
  (1/K) Σ_{k<K} E‖∇f(x^k)‖²_{D/det(D)^{1/d}} ≤ 2 (f(x⁰) − f^inf)/(det(D)^{1/d} K).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .distributed import covariance


def smoothness_constants(problem, L: np.ndarray) -> dict:
    Li = problem.client_smoothness_constants()
    return {"L_f": float(np.linalg.eigvalsh(0.5 * (L + L.T))[-1]), "L_tilde": float(np.sqrt(np.mean(Li**2))),
            "L_max": float(Li.max()), "n": int(problem.n)}


def ef21_gamma(alpha: float, L_f: float, L_tilde: float) -> float:
    if not 0 < alpha <= 1:
        raise ConfigError(f"EF21 needs a contraction α in (0, 1], got {alpha!r}")
    if alpha == 1.0:
        return 1.0 / L_f
    root = math.sqrt(1.0 - alpha)
    theta = 1.0 - root
    beta = (1.0 - alpha) / theta
    return 1.0 / (L_f + L_tilde * math.sqrt(beta / theta))


def marina_gamma(omega: float, p: float, n: int, L_tilde: float) -> float:
    return 1.0 / (L_tilde * (1.0 + math.sqrt((1.0 - p) * omega / (p * n))))


def marina_default_p(msg_bits: float, full_bits: float) -> float:
    return float(min(1.0, msg_bits / full_bits))


def diana_gamma(omega: float, n: int, L_max: float) -> float:
    return 1.0 / (10.0 * L_max * math.sqrt(1.0 + omega / n) * (omega + 2.0))


def diana_alpha_max(omega: float) -> float:
    return 1.0 / (1.0 + omega)


# --- det-MARINA ------------------------------------------------------------------
def _sketch_cov(sketch) -> np.ndarray:
    return covariance(sketch)


def det_marina_lambda(D: np.ndarray, sketch, L: np.ndarray, L_tilde: float, p: float, n: int) -> float:
    """``λ_max(D^{1/2} (L + a λ_max(C∘D) L̃² I) D^{1/2})``, a = (1 − p)/(pn): the condition holds iff <= 1."""
    a = (1.0 - p) / (p * n)
    c = float(np.linalg.eigvalsh(_sketch_cov(sketch) * D)[-1])
    Dh = _sqrt_psd(D)
    M = Dh @ (L + a * c * L_tilde**2 * np.eye(D.shape[0])) @ Dh
    return float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])


def _sqrt_psd(M: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(0.5 * (M + M.T))
    if w[0] <= 0:
        raise ConfigError("det-MARINA: the stepsize matrix is not positive definite")
    return (V * np.sqrt(w)) @ V.T


def det_marina_beta(W: np.ndarray, sketch, L: np.ndarray, L_tilde: float, p: float, n: int) -> float:
    """The largest β with D = βW satisfying the det-MARINA condition, by bisection.

    λ(β) = λ_max(β A + β² B) with A = W^½ L W^½ ≻ 0 and B = a λ_max(C∘W) L̃² W ⪰ 0 is
    increasing; λ(β) <= βλ(1) for β <= 1 and >= βλ(1) for β >= 1, so the root lies
    between 1 and 1/λ(1).
    """
    a = (1.0 - p) / (p * n)
    Wh = _sqrt_psd(W)
    A = Wh @ L @ Wh
    B = a * float(np.linalg.eigvalsh(_sketch_cov(sketch) * W)[-1]) * L_tilde**2 * W

    def lam(beta):
        M = beta * A + beta * beta * B
        return float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])

    lam1 = lam(1.0)
    if not 0.0 < lam1 < math.inf:
        raise ConfigError(f"det-MARINA: λ_max(W^½LW^½ + B) = {lam1!r} for the shape W; the condition needs it "
                          "finite and > 0 (use --lam > 0, or another shape)")
    lo, hi = (1.0, 1.0 / lam1) if lam1 <= 1.0 else (1.0 / lam1, 1.0)
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if lam(mid) <= 1.0 else (lo, mid)
    return lo
