"""MARINA (Gorbunov, Burlachenko, Li & Richtárik 2021, Algorithm 1): compressed gradient differences
with occasional full rounds.

g⁰ = ∇f(x⁰); with one coin c_k ~ Bernoulli(p) shared by all clients::

    server:   x^{k+1} = x^k − γ g^k
    c_k = 1:  client i sends ∇f_i(x^{k+1});                      g^{k+1} = (1/n) Σ_i ∇f_i(x^{k+1})
    c_k = 0:  client i sends Q(∇f_i(x^{k+1}) − ∇f_i(x^k));      g^{k+1} = g^k + (1/n) Σ_i Q(·)

Q unbiased with variance ω, independent over clients (stream (seed, client, k)); the coin
comes from the shared stream (seed, SHARED_COIN, k).  p = ``--marina-p`` (default: a
compressed round's bits over a full round's, Corollary 2.1's balance).  With p = 1 every
round is full and MARINA is GD bit for bit.  A client keeps ∇f_i(x^k) for the next
difference (n·d doubles).
"""
import math

from .._jit import NO_CONTRACT, njit_parallel, prange
from ..compressors.vector import decode_add, encode
from ..problems.logreg import client_grad, regularizer
from ..rng import stream_key, uniform
from ..stepsizes import baselines
from . import register
from ._common import A_DOWN, A_G, A_UP, DIVERGED, RUNNING, SHARED_COIN, Built, VectorJob, mean_of_ranges
from ._common import metrics_row, scalar_stepsize, server_step, vector_build


@njit_parallel(fastmath=NO_CONTRACT)
def marina_chunk(k0, k1, K, log_every, x, P, C, seed, range_ptr, W, B, reg_grad, grad, D, bits, acc, out,
                 Gp, g_srv, p):
    """Iterations ``k0 <= k < k1`` of MARINA; ``Gp`` the clients' last gradients, ``g_srv`` the server's g."""
    n = P.client_ptr.shape[0] - 1
    d = x.shape[0]
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        full = k == 0 or uniform(stream_key(seed, SHARED_COIN, k), 0) < p
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
                gp = Gp[i]
                if not send:
                    for u in range(d):
                        gs[u] += g[u]
                else:
                    if full:
                        for u in range(d):
                            gs[u] += g[u]
                            gp[u] = g[u] + reg_grad[u]
                            ms[u] += gp[u]
                    else:
                        for u in range(d):
                            gs[u] += g[u]
                            gu = g[u] + reg_grad[u]
                            v[u] = gu - gp[u]
                            gp[u] = gu
                        nnz, msc = encode(C.kind, C.d, C.k, C.s, C.r, C.c, C.scale, stream_key(seed, i, k), v,
                                          idx_b[r], val_b[r], code_b[r], bits_b[r], table_b[r], work_b[r],
                                          mark_b[r])
                        decode_add(C.kind, C.d, nnz, msc, 1.0, idx_b[r], val_b[r], code_b[r], bits_b[r], ms)
            lbuf[r] = lsum
        gnsD = metrics_row(log_row, k, n, W, reg, reg_grad, grad, D, acc, out)
        if math.isnan(gnsD):
            return DIVERGED, k
        if not send:
            continue
        acc[A_G] += gnsD
        acc[A_UP] += n * (bits.full if full else bits.msg)
        acc[A_DOWN] += bits.down
        mean_of_ranges(W.msum, n, grad)
        for t in range(d):
            g_srv[t] = grad[t] if full else g_srv[t] + grad[t]
        server_step(D, g_srv, W.v[0], x)
    return RUNNING, k1


def marina_p(config, comp) -> float:
    """``--marina-p``, else a compressed round's bits over a full round's (at most 1)."""
    if config.marina_p is not None:
        return float(config.marina_p)
    return baselines.marina_default_p(comp.bits_up(config.value_bits, config.index_mode), comp.d * config.value_bits)


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    problem, L, comp, consts = vector_build(config, data_dir, allow_hash_mismatch)
    p = marina_p(config, comp)
    gamma = baselines.marina_gamma(comp.omega, p, problem.n, consts["L_tilde"])
    D, info = scalar_stepsize(config, "marina", gamma, problem.d, "MARINA")
    info.update(consts, omega=comp.omega, p=p, p_source="--marina-p" if config.marina_p is not None
                else "bits of a compressed round / bits of a full round", compressor=comp.spec())
    return Built(config, problem, comp, D, L, info, problem.x0(config.x0))


@register("marina", doc="MARINA: full gradients with probability p (--marina-p), else g ← g + mean "
                        "Q(∇f_i(x⁺) − ∇f_i(x)); unbiased Q; x ← x − γg.",
          oracle="full", contract="unbiased", reads=("marina_p",), rules=("marina", "scalar"),
          default_compressor="rand-k:1", default_stepsize="marina")
class MarinaJob(VectorJob):
    kernel = marina_chunk
    build = staticmethod(build)
    theory = "MARINA Theorem 2.1"

    def __init__(self, b: Built):
        super().__init__(b, b.problem.n)
        self.args = (*self.common, self.state, self.server, float(b.stepsize_info["p"]))
