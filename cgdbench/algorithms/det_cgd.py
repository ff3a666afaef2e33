"""The det-CGD family as one jitted loop (single node = one client).

Per iteration k, client i computes ``g_i = ∇f_i(x^k)`` and sends

* det-CGD1 / Algorithm 1 (also GD with S = I and DCGD with D = γI):
  ``m_i = S_i^k g_i``;  server: ``x^{k+1} = x^k - D (1/n) Σ_i m_i``
* det-CGD2 / Algorithm 2:
  ``m_i = T_i^k D g_i``; server: ``x^{k+1} = x^k - (1/n) Σ_i m_i``

Parallelism and determinism: clients are split into ``R`` fixed contiguous
ranges (R depends on n only, never on the thread count).  ``prange`` runs over
ranges; each range owns one row of every buffer (message sum, gradient sum,
scratch), so no two threads write the same memory, and the ranges are reduced
in index order after the loop.  Sketches draw from streams keyed by
``(seed, client, k)``.  Aggregation memory is O(R·d), independent of n.

Per client, the message needs ∇f_i only at the coordinates the sketch keeps: after the
margins and the link, each kept coordinate is found by binary search in the client's columns
(few kept coordinates of a client with many non-zeros) or marked and picked up in the pass over
the client's non-zeros (O(nnz_i + k), no d-vector per client; det-CGD2 with a block D, whose
(D∇f_i)_j needs a whole block, forms the client's gradient instead).

Metrics: ``∇f(x^k)`` is accumulated in that same pass, straight into the range's row (no
extra data pass); the loss on logged iterations only.  With ``every`` false (``--metrics
logged``) the gradient metric, and G_{K,D} with it, is computed on logged iterations only, and
an iteration without it is lazy: a client keeping at most ``search_max`` coordinates, whose kept
columns' support holds fewer rows than the client, computes the margin and the link of only those
rows (O(Σ_j nnz of those rows), not O(nnz_i + m_i) exps), with the same bits.
"""
import math

import numpy as np

from .. import compressors, stepsizes
from .._jit import NO_CONTRACT, njit_parallel, prange
from ..compressors.sketches import IDENTITY, RAND_K, sample_sketch
from ..problems.logreg import client_grad, link_row, loss_add, loss_scale, loss_total, regularizer, row_dot, row_dots
from ..rng import client_keys, iteration_key, randint
from ..stepsizes.kernels import D_BLOCK, D_SCALAR, d_apply, d_row_dot
from . import register
from ._common import A_DOWN, A_G, A_UP, DIVERGED, RUNNING, Built, SketchJob, SketchS
from ._common import finite_sum_problem, mean_of_ranges, metrics_row, server_step, sketch_bits, sketch_bufs, step_pack
from ._common import work

DET_CGD1, DET_CGD2 = 0, 1
#: rows whose margins det_cgd_chunk computes per call (see the kernel)
MARGIN_BLOCK = 256


@njit_parallel(fastmath=NO_CONTRACT)
def det_cgd_chunk(k0, k1, K, log_every, every, code, x, P, C, S, seed, ckeys, D, range_ptr, W, SB, search_max,
                  search_ratio, reg_grad, D_reg, tmp, bits, acc, out):
    """Run iterations ``k0 <= k < k1`` (``k == K`` evaluates the final point only).

    Packs: ``P`` the problem (:data:`~cgdbench.problems.logreg.FiniteSum`), ``C`` its clients'
    columns (:data:`~cgdbench.problems.logreg.ClientColumns`; a message keeping k <=
    ``search_max`` coordinates of a client with more than ``search_ratio``·k non-zeros finds them
    there, and so does every lazy one), ``S`` the sketch (rand-1 draws from the
    clients' keys ``ckeys``, :func:`~cgdbench.rng.client_key`), ``D`` the stepsize, ``W``
    per-range sums and scratch, ``SB`` per-range sketch buffers, ``bits``
    (:data:`~._common.SketchBits`), ``out`` the logged rows.  ``acc`` carries state between
    chunks: ``[Σ_{j<k} ‖∇f(x^j)‖²_D̃ (over every j, or the logged j when ``every`` is false),
    bits up, bits down, rows written]``.  Returns ``(status, next k)``; on divergence ``next k``
    is the iteration whose metrics were not finite (``x`` is that iterate).
    """
    n = P.client_ptr.shape[0] - 1
    d = x.shape[0]
    indptr, indices, values, b, client_ptr, inv_m = P.indptr, P.indices, P.values, P.b, P.client_ptr, P.inv_m
    binary = P.binary
    kind = P.kind
    c_ptr, c_cols, c_start, c_rows, c_vals = C
    rand1 = S.kind == RAND_K and S.k == 1
    everything = S.kind == IDENTITY  # gd: idx[q] == q, no marks needed
    sparse = code == DET_CGD1 or D.kind != D_BLOCK
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        # the full-gradient metric: every iteration, or (metrics "logged") on logged rows only
        full = every or log_row
        reg = regularizer(P.kind, x, P.lam, reg_grad)
        if code == DET_CGD2 and send:
            d_apply(D.kind, D.gamma, D.diag, D.mat, D.block_ptr, D.block_of, reg_grad, D_reg)
        # every array written inside the prange is a local, not a pack field: see _common.Work
        gsum_b, msum_b, g_b, v_b, z_b, lbuf = W
        mark_b, idx_b, scale_b, nbuf, pos_b = SB
        for r in prange(range_ptr.shape[0] - 1):
            # the range's buffer rows are indexed in place (buf[r, u]), not taken as views: a view is a
            # reference count on an array both threads share, and so is each array bound to an inlined
            # function's argument; per client, that was ~40% of an a1a iteration (100 clients, rand-1)
            for u in range(d):
                msum_b[r, u] = 0.0
            if full:
                for u in range(d):
                    gsum_b[r, u] = 0.0
            lsum = 0.0
            cnt = 0
            # the margins a_rᵀx of the range's rows (row at z_b[r, row - R0]), a block of >= MARGIN_BLOCK rows
            # per call: few calls (each binds its arrays: a reference count), and a block's data is still in
            # cache when its clients' passes read it again
            R0, R1 = client_ptr[range_ptr[r]], client_ptr[range_ptr[r + 1]]
            zend = R0
            for i in range(range_ptr[r], range_ptr[r + 1]):
                r0, r1 = client_ptr[i], client_ptr[i + 1]
                nnz = 0
                if send:
                    if rand1:  # one draw, exactly as sample_sketch draws it
                        idx_b[r, 0] = randint(iteration_key(ckeys[i], k), 0, S.d)
                        scale_b[r, 0] = S.d / S.k
                        nnz = 1
                    else:
                        nnz = sample_sketch(S.kind, S.d, S.k, S.block_ptr, S.block_k, S.block_q, S.cdf, S.inv_p,
                                            seed, i, k, mark_b[r], idx_b[r], scale_b[r])
                cnt += nnz
                # lazy (an iteration without the gradient metric, few kept coordinates): only the rows in the
                # kept columns' support need a margin and a link; the other clients' margins come in blocks of
                # >= MARGIN_BLOCK rows
                lazy = sparse and not full and nnz <= search_max
                if lazy:
                    # the margins and links of the kept columns' rows only, into their z_b slots (the search
                    # below sums them); lazy only while that is fewer rows than the client has (a row in several
                    # kept columns is computed once per column).  The margin is row_dot's, as row_dots sums it
                    m_inv = inv_m[i]
                    support = 0
                    for q in range(nnz):
                        j = idx_b[r, q]
                        lo = c_ptr[i]
                        hi = c_ptr[i + 1]
                        while lo < hi:  # j among the client's columns, as the search below finds it
                            mid = (lo + hi) >> 1
                            less = c_cols[mid] < j
                            lo = mid + 1 if less else lo
                            hi = hi if less else mid
                        if lo == c_ptr[i + 1] or c_cols[lo] != j:
                            continue
                        support += c_start[lo + 1] - c_start[lo]
                        if support >= r1 - r0:  # the client's margins after all: its slots may hold links now
                            lazy = False
                            zend = min(zend, r0)
                            break
                        for t in range(c_start[lo], c_start[lo + 1]):
                            row = c_rows[t]
                            c, _, _ = link_row(kind, row_dot(x, indptr, indices, values, binary, row), b[row])
                            z_b[r, row - R0] = c * m_inv
                if sparse and not lazy and r1 > zend:
                    zlo = max(zend, r0)
                    zhi = min(R1, max(r1, zlo + MARGIN_BLOCK))
                    row_dots(x, indptr, indices, values, binary, zlo, zhi, z_b[r, zlo - R0:])
                    zend = zhi
                if not sparse:
                    # det-CGD2 with a block D: (D ∇f_i)_j needs ∇f_i on j's whole block
                    g = g_b[r]
                    lsum += client_grad(P, i, x, log_row, g, z_b[r])
                    if full:
                        for u in range(d):
                            gsum_b[r, u] += g[u]
                    for q in range(nnz):
                        j = idx_b[r, q]
                        msum_b[r, j] += scale_b[r, q] * (d_row_dot(D.kind, D.gamma, D.diag, D.mat, D.block_ptr,
                                                                  D.block_of, j, g) + D_reg[j])
                    continue
                # the message needs ∇f_i at the kept coordinates only, never a d-vector per client.
                # g_b[r, q] gets ∇f_i at idx[q] with the same bits both ways: the same products, each
                # rounded (this kernel has no FMA contraction), summed in the same row order from 0.0 (a
                # binary value's product c·1.0 is c; binary data has no product at all).  A few kept
                # coordinates of a client with many non-zeros are found in its columns (a binary search
                # each: O(k log nnz_i)); otherwise they are marked and picked up in a pass over the
                # client's non-zeros (O(nnz_i), nearly free when the metric's pass runs anyway).  The
                # full-gradient metric is accumulated straight into the range's gsum row.
                search = lazy or (nnz <= search_max and nnz * search_ratio < indptr[r1] - indptr[r0])
                if not search:
                    for q in range(nnz):
                        if not everything:
                            pos_b[r, idx_b[r, q]] = q + 1
                        g_b[r, q] = 0.0
                m_inv = inv_m[i]
                if not lazy:
                    lin, prod = 0.0, 1.0
                    for row in range(r0, r1):  # the link, from the margins of this range's rows
                        c, f, l = link_row(kind, z_b[r, row - R0], b[row])
                        z_b[r, row - R0] = c * m_inv
                        if log_row:
                            lin, prod = loss_add(lin, prod, f, l)
                    if log_row:
                        lsum += loss_total(lin, prod) * loss_scale(kind, m_inv)
                if full or not search:
                    for row in range(r0, r1):
                        c = z_b[r, row - R0]
                        if binary:
                            for p in range(indptr[row], indptr[row + 1]):
                                j = indices[p]
                                if full:
                                    gsum_b[r, j] += c
                                if not search:
                                    if everything:  # the identity keeps j as its j-th coordinate
                                        g_b[r, j] += c
                                    else:
                                        w = pos_b[r, j]
                                        if w:
                                            g_b[r, w - 1] += c
                        else:
                            for p in range(indptr[row], indptr[row + 1]):
                                j = indices[p]
                                v = c * values[p]
                                if full:
                                    gsum_b[r, j] += v
                                if not search:
                                    if everything:
                                        g_b[r, j] += v
                                    else:
                                        w = pos_b[r, j]
                                        if w:
                                            g_b[r, w - 1] += v
                for q in range(nnz):
                    j = idx_b[r, q]
                    if search:  # j among the client's columns, then its entries in row order
                        lo = c_ptr[i]
                        hi = c_ptr[i + 1]
                        while lo < hi:  # branch-free steps (the comparisons are unpredictable)
                            mid = (lo + hi) >> 1
                            less = c_cols[mid] < j
                            lo = mid + 1 if less else lo
                            hi = hi if less else mid
                        gj = 0.0
                        if lo < c_ptr[i + 1] and c_cols[lo] == j:
                            for t in range(c_start[lo], c_start[lo + 1]):
                                if binary:
                                    gj += z_b[r, c_rows[t] - R0]
                                else:
                                    gj += z_b[r, c_rows[t] - R0] * c_vals[t]
                        g_b[r, q] = gj
                    elif not everything:
                        pos_b[r, j] = 0
                    # g_b[r, q] holds the data part of ∇f_i at j; the regularizer's part is shared
                    if code == DET_CGD1:
                        msum_b[r, j] += scale_b[r, q] * (g_b[r, q] + reg_grad[j])
                    else:  # (D ∇f_i)_j for a scalar or diagonal D, as d_row_dot computes it
                        Dg = D.gamma * g_b[r, q] if D.kind == D_SCALAR else D.diag[j] * g_b[r, q]
                        msum_b[r, j] += scale_b[r, q] * (Dg + D_reg[j])
            lbuf[r] = lsum
            nbuf[r] = cnt
        if full:
            gnsD = metrics_row(log_row, k, n, W, reg, reg_grad, tmp, D, acc, out)
            if math.isnan(gnsD):
                return DIVERGED, k
            if send:
                acc[A_G] += gnsD
        if not send:
            continue
        # server step: the messages' mean in range order
        mean_of_ranges(W.msum, n, tmp)
        if not full:  # metrics "logged": a non-finite step is divergence now, not at the next logged row
            step_sum = 0.0
            for t in range(d):
                step_sum += tmp[t]
            if not math.isfinite(step_sum):
                return DIVERGED, k
        nnz_all = 0
        for r in range(nbuf.shape[0]):
            nnz_all += nbuf[r]
        acc[A_UP] += bits.value * nnz_all + n * bits.index
        acc[A_DOWN] += bits.down
        if code == DET_CGD1:
            server_step(D, tmp, W.g[0], x)
        else:
            for t in range(d):
                x[t] -= tmp[t]
    return RUNNING, k1


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    """Problem, smoothness L, sketch S and the stepsize matrix D of rule ``config.stepsize``."""
    problem = finite_sum_problem(config, data_dir, allow_hash_mismatch)
    L = problem.smoothness()
    sketch = compressors.make(config.compressor, problem.d, problem.block_ptr, np.diag(L))
    x0 = problem.x0(config.x0)
    setting = None
    if stepsizes.parse(config.stepsize)[0] in stepsizes.DISTRIBUTED:
        from ..stepsizes.distributed import setting_for
        setting = setting_for(problem, x0, config.iters, config.eps2)
    from . import get
    D, info = stepsizes.build(config.stepsize, get(config.algorithm).condition, sketch, L, problem.block_ptr,
                              setting=setting)
    if setting is not None:
        info["inf_estimate"] = setting.source
    return Built(config, problem, sketch, D, L, info, x0)


#: ``condition``: the stepsize condition a rule builds D for, (7) "det-cgd1" or (8) "det-cgd2"
_SKETCH_METHOD = dict(oracle="full", contract="sketch", default_compressor="rand-1", default_stepsize="diag-inv",
                      reads=("metrics",))


class DetCgdJob(SketchJob):
    """det-CGD family: arrays for :func:`det_cgd_chunk` and what a run reports."""

    kernel = det_cgd_chunk
    build = staticmethod(build)
    #: an iteration with the gradient metric: a message keeping k <= search_max coordinates, of a client
    #: with more than search_ratio·k non-zeros, finds them by binary search in the client's columns;
    #: otherwise they are marked and picked up in the metric's pass over the client's non-zeros, which
    #: runs anyway.  A mark costs a look-up per non-zero; a search ~log₂(columns) steps, cache misses
    #: when nothing else reads the client's columns.  Paired in one process (2 threads, log every
    #: iteration), against a ratio of 32: w8a with 49,749 one-row clients 0.89x at 128 (0.92x at
    #: 256), with 10,000 clients 0.96x (0.98x); a1a, 100 clients (224 non-zeros each) 1.00x at 128,
    #: 1.07x at 256.  An iteration without the metric (lazy, ``--metrics logged``) searches whenever
    #: k <= search_max.  Both ways give the same bits.
    search_max, search_ratio = 8, 128

    def __init__(self, b: Built):
        super().__init__(b)
        from . import get
        c, p, sk, D = b.config, b.problem, b.sketch, b.D
        d, n, R = p.d, p.n, self.R
        self.args = (c.log_every, c.metrics == "every", get(c.algorithm).code, self.x, p.pack(), p.client_columns,
                     SketchS(*sk.kernel_args()), np.uint64(c.seed), client_keys(np.uint64(c.seed), n),
                     step_pack(D), self.range_ptr, work(R, d, int(np.diff(p.client_ptr[self.range_ptr]).max())),
                     sketch_bufs(R, d), self.search_max,
                     self.search_ratio, np.zeros(d), np.zeros(d), np.zeros(d), sketch_bits(sk, c, n, d), self.acc,
                     self.out)

    def collect(self, completed):
        tr, extras, G = super().collect(completed)
        if self.b.config.metrics == "logged" and completed:
            G = float(self.acc[A_G] / logged_before(completed, self.b.config.log_every))
        return tr, extras, G

    def meta(self):
        c = self.b.config
        return {**super().meta(), "metrics": c.metrics}

    @classmethod
    def summary_rows(cls, trace):
        c, m = trace.config, trace.meta
        rows = cls.common_rows(trace, f"{c.algorithm} | {c.compressor} | stepsize {c.stepsize} ({trace.D.kind}) | "
                                      f"{c.clients} client(s) | seed {c.seed}")
        rows.append(("G_{K,D}", f"{trace.G_KD:.6e}   {_theorem1(trace)}{_estimated(trace)}"))
        cor = m.get("stepsize", {}).get("corollary1")
        if cor:
            st = m["stepsize"]
            rows.append(("Corollary 1", f"λ_D = {cor['lambda_D']:.4e} (n/K = {cor['n_over_K']:.3g}), bound (20) on "
                                        f"min E‖∇f‖²_D/det^(1/d) = {cor['bound_20']:.4e} for ε² = {cor['eps2']:g}; "
                                        f"binding: {st.get('binding', '?')}; Δinf ≈ {cor['delta_inf']:.4g}, "
                                        f"f(x0) − finf ≈ {cor['f0_gap']:.4g} (estimated, cached)"))
        return rows


register("gd", doc="gradient descent x ← x − D∇f(x) (S = I); distributed: mean of client gradients.",
         identity_only=True, code=DET_CGD1, condition="det-cgd1", **{**_SKETCH_METHOD,
                                                                    "default_compressor": "identity"})(DetCgdJob)
register("det-cgd1", aliases=("detcgd1", "det_cgd1"), code=DET_CGD1, condition="det-cgd1", **_SKETCH_METHOD,
         doc="x ← x − D·(1/n)Σ S_i∇f_i(x) (det-CGD1; Algorithm 1 for n > 1).")(DetCgdJob)
register("det-cgd2", aliases=("detcgd2", "det_cgd2"), code=DET_CGD2, condition="det-cgd2", **_SKETCH_METHOD,
         doc="x ← x − (1/n)Σ T_i D∇f_i(x) (det-CGD2; Algorithm 2 for n > 1).")(DetCgdJob)
register("dcgd", doc="DCGD: x ← x − γ(1/n)Σ C_i(∇f_i(x)) with a scalar stepsize.", scalar_only=True,
         code=DET_CGD1, condition="det-cgd1", **{**_SKETCH_METHOD, "default_stepsize": "scalar"})(DetCgdJob)


def logged_before(k: int, log_every: int) -> int:
    """How many logged iterations (multiples of ``log_every``) lie below ``k``."""
    return -(-k // log_every)


def _estimated(trace) -> str:
    c = trace.config
    if c.metrics != "logged":
        return ""
    return (f"; estimated from the {logged_before(trace.iterations, c.log_every)} logged iterations "
            f"(--metrics logged, every {c.log_every})")


def _theorem1(trace) -> str:
    """Theorem 1's bound 2(f(x⁰) − f_lower)/(det(D)^{1/d} K), where it applies."""
    root = trace.meta.get("det_root", float("nan"))
    f_lower = trace.meta.get("f_lower")
    lam = trace.meta.get("stepsize", {}).get("condition_lambda", float("inf"))
    if trace.config.clients != 1 or f_lower is None or lam > 1 + 1e-9 or not trace.iterations:
        return f"(det(D)^(1/d) = {root:.4e})"
    bound = 2 * (trace.loss[0] - f_lower) / (root * trace.iterations)
    return f"(Theorem 1 bounds its expectation by 2(f(x0) - {f_lower:g})/(det(D)^(1/d) K) = {bound:.6e})"
