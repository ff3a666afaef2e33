"""EF21 (Richtárik, Sokolov & Fatkhullin 2021, Algorithm 1): error feedback by gradient tracking.

Client i keeps g_i; with a contractive compressor C (E‖C(v) − v‖² ≤ (1 − α)‖v‖²)::

    server:   x^{k+1} = x^k − γ g^k,                 g^k = (1/n) Σ_i g_i^k
    client i: c_i = C(∇f_i(x^{k+1}) − g_i^k),        g_i^{k+1} = g_i^k + c_i   (sends c_i)

Start (``--ef21-init``): ``gradient`` (default) g_i⁰ = ∇f_i(x⁰), one uncompressed round
(its d values per client are counted in the bits), so the theory's G⁰ term vanishes;
``compressed``: g_i⁰ = C(∇f_i(x⁰)), i.e. the update above from g_i = 0.

The server keeps g by its recursion g ← g + (1/n)Σ c_i (the messages cost O(nnz) to
add, not O(d) per client); when every g_i is the gradient itself (the uncompressed start,
or the identity compressor) it sets g to their mean.  For compressors that send
coordinates unchanged (top-k, unscaled rand-k), g_i + c_i is g_i's sent
coordinates replaced by ∇f_i's.  Written that way, EF21 with the identity compressor is
GD bit for bit.  An unbiased compressor is
applied as C/(1+ω), an α = 1/(1+ω) contraction, and the run says so.
"""
import math


from .._jit import NO_CONTRACT, njit_parallel, prange
from ..compressors.vector import C_IDENTITY, C_RAND_K, C_TOP_K, TOP_K_SMALL, _top_k_small
from ..compressors.vector import decode_add, encode
from ..problems.logreg import client_grad, regularizer
from ..rng import stream_key
from ..stepsizes import baselines
from . import register
from ._common import A_DOWN, A_G, A_UP, DIVERGED, RUNNING, Built, VectorJob, mean_of_ranges, metrics_row
from ._common import scalar_stepsize, server_step, vector_build

#: how the client state takes a message: add the decoded C(v), or copy the sent coordinates (all of them)
ADD, COPY_SENT, COPY_ALL = 0, 1, 2


@njit_parallel(fastmath=NO_CONTRACT)
def ef21_chunk(k0, k1, K, log_every, x, P, C, seed, range_ptr, W, B, reg_grad, grad, D, bits, acc, out,
               Gi, g_srv, take, compressed_init):
    """Iterations ``k0 <= k < k1`` of EF21 (``k == K``: metrics of the final point only); ``Gi`` the client states."""
    n = P.client_ptr.shape[0] - 1
    d = x.shape[0]
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        full = k == 0 and not compressed_init
        reset = full or take == COPY_ALL
        small_top_k = take == COPY_SENT and C.kind == C_TOP_K and C.k <= TOP_K_SMALL and C.k < d
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
                gi = Gi[i]
                if not send:
                    for u in range(d):
                        gs[u] += g[u]
                elif reset:  # the state is the gradient itself (the start, or C = identity)
                    for u in range(d):
                        gs[u] += g[u]
                        gi[u] = g[u] + reg_grad[u]
                        ms[u] += gi[u]
                else:
                    for u in range(d):  # one pass: the metric's sum and the message's argument
                        gs[u] += g[u]
                        v[u] = (g[u] + reg_grad[u]) - gi[u]
                    if small_top_k:
                        # top-k sends v_J unscaled: the same arithmetic as encode + decode_add, without
                        # the two calls (each passes seven to nine arrays)
                        _top_k_small(v, C.k, idx_b[r], work_b[r])
                        for q in range(C.k):
                            j = idx_b[r, q]
                            ms[j] += v[j]
                            gi[j] = g[j] + reg_grad[j]
                        continue
                    nnz, msc = encode(C.kind, C.d, C.k, C.s, C.r, C.c, C.scale, stream_key(seed, i, k), v,
                                      idx_b[r], val_b[r], code_b[r], bits_b[r], table_b[r], work_b[r], mark_b[r])
                    decode_add(C.kind, C.d, nnz, msc, 1.0, idx_b[r], val_b[r], code_b[r], bits_b[r], ms)
                    if take == COPY_SENT:
                        for q in range(nnz):
                            j = idx_b[r, q]
                            gi[j] = g[j] + reg_grad[j]
                    else:
                        decode_add(C.kind, C.d, nnz, msc, 1.0, idx_b[r], val_b[r], code_b[r], bits_b[r], gi)
            lbuf[r] = lsum
        gnsD = metrics_row(log_row, k, n, W, reg, reg_grad, grad, D, acc, out)
        if math.isnan(gnsD):
            return DIVERGED, k
        if not send:
            continue
        acc[A_G] += gnsD
        acc[A_UP] += n * (bits.full if full else bits.msg)
        acc[A_DOWN] += bits.down
        mean_of_ranges(W.msum, n, grad)  # the mean state, or the mean message
        for t in range(d):
            g_srv[t] = grad[t] if reset else g_srv[t] + grad[t]
        server_step(D, g_srv, W.v[0], x)
    return RUNNING, k1


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    problem, L, comp, consts = vector_build(config, data_dir, allow_hash_mismatch, contractive=True)
    alpha = comp.mu
    if alpha is None or alpha <= 0:
        raise AssertionError(comp)  # every vector compressor states its contraction
    gamma = baselines.ef21_gamma(alpha, consts["L_f"], consts["L_tilde"])
    D, info = scalar_stepsize(config, "ef21", gamma, problem.d, "EF21")
    info.update(consts, alpha=alpha, compressor=comp.spec(), compressor_note=comp.note,
                alpha_relation=comp.mu_relation)
    return Built(config, problem, comp, D, L, info, problem.x0(config.x0))


@register("ef21", doc="EF21: client states g_i ← g_i + C(∇f_i(x) − g_i), x ← x − γ mean g_i; contractive C "
                      "(top-k; unbiased ones as C/(1+ω)); --ef21-init gradient|compressed.",
          oracle="full", contract="contractive", reads=("ef21_init",), rules=("ef21", "scalar"),
          default_compressor="top-k:1", default_stepsize="ef21")
class Ef21Job(VectorJob):
    kernel = ef21_chunk
    build = staticmethod(build)
    theory = "EF21 Theorem 1"

    def __init__(self, b: Built):
        super().__init__(b, b.problem.n)
        comp = b.sketch
        if comp.kind == C_IDENTITY:
            take = COPY_ALL
        elif comp.kind in (C_RAND_K, C_TOP_K) and comp.scale == 1.0:  # x_J sent as is
            take = COPY_SENT
        else:
            take = ADD
        self.args = (*self.common, self.state, self.server, take, b.config.ef21_init == "compressed")
