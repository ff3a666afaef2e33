"""det-MARINA (Li, Karagulyan & Richtárik, arXiv 2310.04614): MARINA with a matrix stepsize D
and det-CGD's diagonal sketches.

g⁰ = ∇f(x⁰); one shared coin c_k ~ Bernoulli(p)::

    server:   x^{k+1} = x^k − D g^k
    c_k = 1:  g^{k+1} = (1/n) Σ_i ∇f_i(x^{k+1})                          (d values per client)
    c_k = 0:  g^{k+1} = g^k + (1/n) Σ_i S_i^k (∇f_i(x^{k+1}) − ∇f_i(x^k))   (the sketch's non-zeros)

S_i^k unbiased diagonal sketches drawn from (seed, client, k), as in det-CGD.  This is the
det-CGD1 form (x ← x − D g, sketch on the gradient difference).  Stepsize condition
(derived in docs/paper-notes.md §8, checked in tests): D⁻¹ ⪰ L + ((1−p)/(pn)) λ_max(C∘D) L̃² I,
under which (1/K) Σ E‖∇f(x^k)‖²_{D/det(D)^{1/d}} ≤ 2(f(x⁰) − f^inf)/(det(D)^{1/d} K).
"""
import math

import numpy as np

from .. import compressors, stepsizes
from .._jit import NO_CONTRACT, njit_parallel, prange
from ..compressors.sketches import sample_sketch
from ..problems.logreg import client_grad, regularizer
from ..rng import stream_key, uniform
from ..stepsizes import baselines
from . import register
from ._common import A_DOWN, A_G, A_UP, DIVERGED, RUNNING, SHARED_COIN, Built, SketchJob, SketchS, check_memory
from ._common import finite_sum_problem, mean_of_ranges, metrics_row, server_step, sketch_bits, sketch_bufs
from ._common import step_pack, work


@njit_parallel(fastmath=NO_CONTRACT)
def det_marina_chunk(k0, k1, K, log_every, x, P, S, seed, range_ptr, W, SB, reg_grad, grad, D, bits, acc, out, Gp,
                     g_srv, step, p):
    """Iterations ``k0 <= k < k1`` of det-MARINA; ``Gp`` the clients' last gradients, ``g_srv`` the server's g."""
    n = P.client_ptr.shape[0] - 1
    d = x.shape[0]
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        full = k == 0 or uniform(stream_key(seed, SHARED_COIN, k), 0) < p
        reg = regularizer(P.kind, x, P.lam, reg_grad)
        # every array written inside the prange is a local, not a pack field: see _common.Work
        gsum_b, msum_b, g_b, v_b, z_b, lbuf = W
        mark_b, idx_b, scale_b, nbuf, _ = SB
        for r in prange(range_ptr.shape[0] - 1):
            gs = gsum_b[r]
            ms = msum_b[r]
            g = g_b[r]
            for u in range(d):
                gs[u] = 0.0
                ms[u] = 0.0
            lsum = 0.0
            cnt = 0
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
                        nnz = sample_sketch(S.kind, S.d, S.k, S.block_ptr, S.block_k, S.block_q, S.cdf, S.inv_p,
                                            seed, i, k, mark_b[r], idx_b[r], scale_b[r])
                        for q in range(nnz):
                            j = idx_b[r, q]
                            ms[j] += scale_b[r, q] * ((g[j] + reg_grad[j]) - gp[j])
                        cnt += nnz
                        for u in range(d):
                            gs[u] += g[u]
                            gp[u] = g[u] + reg_grad[u]
            lbuf[r] = lsum
            nbuf[r] = cnt
        gnsD = metrics_row(log_row, k, n, W, reg, reg_grad, grad, D, acc, out)
        if math.isnan(gnsD):
            return DIVERGED, k
        if not send:
            continue
        acc[A_G] += gnsD
        if full:
            acc[A_UP] += n * bits.full
        else:
            total = 0
            for r in range(nbuf.shape[0]):
                total += nbuf[r]
            acc[A_UP] += bits.value * total + n * bits.index
        acc[A_DOWN] += bits.down
        mean_of_ranges(W.msum, n, grad)
        for t in range(d):
            g_srv[t] = grad[t] if full else g_srv[t] + grad[t]
        server_step(D, g_srv, step, x)
    return RUNNING, k1


def default_p(config, sketch) -> float:
    """A sketched round's expected bits over a full round's (at most 1)."""
    d = sketch.d
    msg = config.value_bits * sketch.expected_nnz() + sketch.index_bits(config.index_mode)
    return baselines.marina_default_p(msg, d * config.value_bits)


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    problem = finite_sum_problem(config, data_dir, allow_hash_mismatch)
    L = problem.smoothness()
    sketch = compressors.make(config.compressor, problem.d, problem.block_ptr, np.diag(L))
    consts = baselines.smoothness_constants(problem, L)
    p = float(config.marina_p) if config.marina_p is not None else default_p(config, sketch)
    n, Lt = problem.n, consts["L_tilde"]
    name, param = stepsizes.parse(config.stepsize)
    info = {"rule": name, "warnings": [], **consts, "p": p,
            "p_source": "--marina-p" if config.marina_p is not None else "bits of a sketched round / a full round's"}
    if name == "det-marina":
        shape = param or "diag-inv"
        Wm, winfo = stepsizes.build(shape, "det-cgd1", sketch, L, problem.block_ptr)
        beta = baselines.det_marina_beta(Wm.dense(), sketch, L, Lt, p, n)
        D = Wm.scaled(beta)
        info.update(shape=shape, beta=beta)
        info["warnings"] += winfo["warnings"]
    else:
        D = stepsizes.StepsizeMatrix.scalar(float(param), problem.d)
    lam = baselines.det_marina_lambda(D.dense(), sketch, L, Lt, p, n)
    info["condition_lambda"] = lam
    if lam > 1.0 + 1e-9:
        info["warnings"].append(f"D violates det-MARINA's stepsize condition by a factor {lam:.4g}: "
                                "its convergence bound does not apply")
    return Built(config, problem, sketch, D, L, info, problem.x0(config.x0))


@register("det-marina", aliases=("detmarina", "det_marina"),
          doc="det-MARINA: MARINA with a matrix stepsize, x ← x − Dg, g ← g + mean S_i(∇f_i(x⁺) − ∇f_i(x)) or "
              "the full gradient with probability p (--marina-p); det-CGD's sketches.",
          oracle="full", contract="sketch", reads=("marina_p",), rules=("det-marina", "scalar"),
          default_compressor="rand-1", default_stepsize="det-marina")
class DetMarinaJob(SketchJob):
    kernel = det_marina_chunk
    build = staticmethod(build)

    def __init__(self, b: Built):
        super().__init__(b)
        c, p, sk = b.config, b.problem, b.sketch
        d, R = p.d, self.R
        check_memory(c.algorithm, p.n, d)
        self.state, self.server = np.zeros((p.n, d)), np.zeros(d)
        self.args = (c.log_every, self.x, p.pack(), SketchS(*sk.kernel_args()), np.uint64(c.seed), self.range_ptr,
                     work(R, d, p.max_rows), sketch_bufs(R, d), np.zeros(d), np.zeros(d), step_pack(b.D),
                     sketch_bits(sk, c, p.n, d), self.acc, self.out, self.state, self.server, np.zeros(d),
                     float(b.stepsize_info["p"]))

    @classmethod
    def summary_rows(cls, trace):
        rows = super().summary_rows(trace)
        st, m = trace.meta.get("stepsize", {}), trace.meta
        bound = ""
        if m.get("f_lower") is not None and trace.iterations and st.get("condition_lambda", 2) <= 1 + 1e-9:
            b = 2 * (trace.loss[0] - m["f_lower"]) / (m["det_root"] * trace.iterations)
            bound = f"; bounds E G_(K,D) by 2(f(x0) - {m['f_lower']:g})/(det(D)^(1/d) K) = {b:.6e}"
        rows.append(("theory", f"condition λ = {st.get('condition_lambda', float('nan')):.4g} (<= 1: holds), "
                               f"p = {st.get('p', float('nan')):.4g}, L_f = {st.get('L_f', float('nan')):.4g}, "
                               f"L̃ = {st.get('L_tilde', float('nan')):.4g}{bound}"))
        return rows
