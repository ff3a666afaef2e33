"""Corollary 1's full-D program: the best full symmetric D under (a)-(c), by a barrier Newton-CG on
(D, τ) inside the same constraint generation, started from the diagonal program's D; Clarabel's
log det programs (one LMI per client) for small sizes as the fallback.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ..errors import ConfigError, choices_error
from .cache import load, save_npz
from .linalg import logdet_chol, sym_power
from .optimal import pcg
from . import corollary1_diag as c1d
from .distributed import Setting, _cache_path, _damped_step, factor_clients, _gap_bound, _generate, _nbhd_const
from .distributed import _roots, lambda_D, line_search
from .distributed import best_diag_line_search, covariance


#: client eigen-directions (nearest their LMI's boundary) in the full-D barrier's preconditioner
PRECOND_DIRECTIONS = 32


def full_program(sketch, L, s: Setting, family: str, start=None, factors=None):
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

    **Client terms by Woodbury.**  With L_i = c₀I + F_iF_iᵀ (:func:`factor_clients`, rank r),
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
    c0, F = factor_clients(s.client_L) if factors is None else factors
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
    phi, system, D, tau, theta = full_program(sketch, L, s, family, start)
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
    z = load(path, ("D", "status", "solver", "exact")) if use_cache else None
    if z is not None:
        return z["D"], {"status": str(z["status"]), "solver": str(z["solver"]), "exact": bool(z["exact"]),
                        "cache": str(path), "seconds": 0.0}
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    start = None                                # the diagonal program's D (cached): never return less
    if n * d * d * factor_clients(s.client_L)[1].shape[2] <= c1d.MAX_DIAG_PROGRAM_WORK:
        delta, _ = c1d.corollary1_diag_cached(sketch, L, s, use_cache, time_limit)
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

