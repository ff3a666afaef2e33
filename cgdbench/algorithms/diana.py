"""DIANA (Mishchenko, Gorbunov, Takáč & Richtárik 2019): compressed gradient differences to learnt shifts.

Client i keeps a shift h_i (h_i⁰ = 0); with an unbiased compressor Q of variance ω::

    client i: q_i = Q(∇f_i(x^k) − h_i),   h_i ← h_i + α q_i                (sends q_i)
    server:   g^k = h + (1/n) Σ_i q_i,     h ← h + α (1/n) Σ_i q_i,   x^{k+1} = x^k − γ g^k

with h = (1/n) Σ h_i kept by the server.  α = ``--diana-alpha`` (default 1/(1+ω), the
largest the theory allows; a larger one is a warning).  Each client compresses with its
own stream (seed, client, k): the n compressions are independent, as the theory assumes.
"""
import math

from .._jit import NO_CONTRACT, njit_parallel, prange
from ..compressors.vector import decode_add, encode
from ..problems.logreg import client_grad, regularizer
from ..rng import stream_key
from ..stepsizes import baselines
from . import register
from ._common import A_DOWN, A_G, A_UP, DIVERGED, RUNNING, Built, VectorJob, mean_of_ranges, metrics_row
from ._common import scalar_stepsize, server_step, vector_build


@njit_parallel(fastmath=NO_CONTRACT)
def diana_chunk(k0, k1, K, log_every, x, P, C, seed, range_ptr, W, B, reg_grad, grad, D, bits, acc, out,
                H, h, alpha):
    """Iterations ``k0 <= k < k1`` of DIANA; ``H`` the client shifts, ``h`` the server's mean shift."""
    n = P.client_ptr.shape[0] - 1
    d = x.shape[0]
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        reg = regularizer(P.kind, x, P.lam, reg_grad)
        # every array written inside the prange is a local, not a pack field: see _common.Work
        gsum_b, msum_b, g_b, v_b, z_b, lbuf = W
        idx_b, val_b, code_b, bits_b, table_b, work_b, mark_b = B
        for r in prange(range_ptr.shape[0] - 1):
            gs = gsum_b[r]
            ms = msum_b[r]
            g = g_b[r]
            v = v_b[r]
            for u in range(d):
                gs[u] = 0.0
                ms[u] = 0.0
            lsum = 0.0
            for i in range(range_ptr[r], range_ptr[r + 1]):
                lsum += client_grad(P, i, x, log_row, g, z_b[r])
                hi = H[i]
                if send:
                    for u in range(d):  # one pass: the metric's sum and the message's argument
                        gs[u] += g[u]
                        v[u] = (g[u] + reg_grad[u]) - hi[u]
                    nnz, msc = encode(C.kind, C.d, C.k, C.s, C.r, C.c, C.scale, stream_key(seed, i, k), v,
                                      idx_b[r], val_b[r], code_b[r], bits_b[r], table_b[r], work_b[r], mark_b[r])
                    decode_add(C.kind, C.d, nnz, msc, 1.0, idx_b[r], val_b[r], code_b[r], bits_b[r], ms)
                    decode_add(C.kind, C.d, nnz, msc, alpha, idx_b[r], val_b[r], code_b[r], bits_b[r], hi)
                else:
                    for u in range(d):
                        gs[u] += g[u]
            lbuf[r] = lsum
        gnsD = metrics_row(log_row, k, n, W, reg, reg_grad, grad, D, acc, out)
        if math.isnan(gnsD):
            return DIVERGED, k
        if not send:
            continue
        acc[A_G] += gnsD
        acc[A_UP] += n * bits.msg
        acc[A_DOWN] += bits.down
        mean_of_ranges(W.msum, n, grad)  # (1/n) Σ q_i
        for t in range(d):
            qt = grad[t]
            grad[t] = h[t] + qt   # g^k = h + mean q_i
            h[t] += alpha * qt
        server_step(D, grad, W.v[0], x)
    return RUNNING, k1


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    problem, L, comp, consts = vector_build(config, data_dir, allow_hash_mismatch)
    omega = comp.omega
    gamma = baselines.diana_gamma(omega, problem.n, consts["L_max"])
    D, info = scalar_stepsize(config, "diana", gamma, problem.d, "DIANA")
    alpha_max = baselines.diana_alpha_max(omega)
    alpha = alpha_max if config.diana_alpha is None else config.diana_alpha
    if alpha > alpha_max * (1 + 1e-12):
        info["warnings"].append(f"--diana-alpha {alpha:g} is above the theory's range (0, 1/(1+ω)] = "
                                f"(0, {alpha_max:.6g}] for ω = {omega:.6g}: the DIANA guarantee does not apply")
    info.update(consts, omega=omega, alpha=alpha, alpha_max=alpha_max, compressor=comp.spec())
    return Built(config, problem, comp, D, L, info, problem.x0(config.x0))


@register("diana", doc="DIANA: shifts h_i ← h_i + α Q(∇f_i(x) − h_i), x ← x − γ(h + mean Q(·)); unbiased Q "
                       "(rand-k, qsgd, natural, identity); --diana-alpha A (default 1/(1+ω)).",
          oracle="full", contract="unbiased", reads=("diana_alpha",), rules=("diana", "scalar"),
          default_compressor="rand-k:1", default_stepsize="diana")
class DianaJob(VectorJob):
    kernel = diana_chunk
    build = staticmethod(build)
    theory = "DIANA (Horváth et al. 2019, Thm 4, m = 1)"

    def __init__(self, b: Built):
        super().__init__(b, b.problem.n)
        self.args = (*self.common, self.state, self.server, float(b.stepsize_info["alpha"]))
