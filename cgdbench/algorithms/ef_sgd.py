"""Compressed SGD with error feedback, perturbation and reset (Avdiukhin & Yaroslavtsev, Algorithm 1).

Per iteration t, with W workers (single node: W = 1), shared noise ξ_t ~ N(0, r²I)
and shared compressor randomness θ̃_t::

    reset  (lines 4-8, only with ``use_reset``): if t − t' > I or ‖x_{t'} − x̃_t‖ > R:
               x_t ← x̃_t if f(x̃_t) < f(x_{t'}) else x_{t'};   t' ← t;   e^{(i)} ← 0
    worker i:  G_i = ∇F_i(x_t, θ_{i,t})                      (minibatch of its own rows)
               v_i = e^{(i)} + G_i + ξ_t   (e^{(i)} ≡ 0 without error feedback)
               g_i = C(v_i, θ̃_t);   e^{(i)} ← v_i − g_i
    server:    x_{t+1} = x_t − η (1/W) Σ_i g_i

``x̃_t = x_t − η ē_t`` (ē the mean worker error) is the error-corrected iterate;
it obeys x̃_{t+1} = x̃_t − η((1/W)Σ_i G_i + ξ_t), so it is tracked in O(d)
without forming ē.  The paper prints the reset test as f(x_t) < f(x_{t'}) while
moving to x̃_t; we compare f at the point we move to (docs/paper-notes.md §7).

Determinism: workers are split into fixed ranges (as in det-CGD); each range
owns its buffers, ranges are reduced in index order; minibatches use streams
keyed by (seed, worker, t), noise and compressor randomness the shared streams.
"""
import math
import sys
import time
from collections import namedtuple

import numpy as np

from .. import compressors, stepsizes
from .._jit import njit, njit_parallel, prange
from ..errors import CgdbenchError, ConfigError
from ..parallel import one_blas_thread
from ..compressors.sketches import _floyd
from ..compressors.vector import SHARED_COMPRESSOR, SHARED_NOISE, decode_add, encode
from ..problems.conv import conv_pass, pass_buffers
from ..problems.saddles import P_CONV_AE, P_LINEAR_AE, P_MLP_CLS, batch_loss_grad, linear_ae_full, mlp_accuracy
from ..rng import stream_key, uniform
from . import register
from ._common import DIVERGED, RUNNING, Built, Job, cbufs, client_ranges, down_values, rows_for
from ._common import blowup_level, problem_of, vector_pack
# acc slots carried between chunks
A_ROWS, A_BITS_UP, A_BITS_DOWN, A_SGN_SUM, A_SGN_COUNT, A_RESETS, A_F_ANCHOR, A_T_ANCHOR, A_F_MAX, A_RESCUES = range(10)


#: a saddle problem's kernel data (problems/saddles.py ``kernel_data``) and its held-out set (``test_data``)
Saddle = namedtuple("Saddle", "kind F G V Iv Xte yte")
#: Algorithm 1's switches and scalars
Settings = namedtuple("Settings", "use_ef use_reset reset_iters escape_radius eta noise noise_decay_at noise_factor "
                                  "batch blowup_level")
#: per-range buffers (one row per range) and the per-worker errors E (W×d; 1×d without error feedback)
SgdWork = namedtuple("SgdWork", "E gsum hsum v grad scratch rows rows_scale row_mark Gw P S Lc")
#: what is logged: the common rows plus the stochastic-gradient norm, the reset count and the test accuracy
#: (classifiers; NaN for the others)
SgdRows = namedtuple("SgdRows", "iteration loss grad_norm_sq bits_up bits_down stoch_grad_norm_sq resets "
                                "test_accuracy")

NOISE_SCHEDULES = ("constant", "step:T[:F]")


def noise_schedule(spec: str, iters: int) -> tuple[float, float]:
    """``(T, F)`` of a noise schedule: r_t = r for t < T, r·F from T on (``constant``: T = ∞, F = 1).

    ``step:T[:F]``: T an iteration (1 <= T <= --iters) or a fraction 0 < T < 1 of --iters;
    F >= 0, default 0 (the noise is switched off, as the saddle paper does "at later iterations").
    """
    text = str(spec).strip().lower()
    if text == "constant":
        return math.inf, 1.0
    parts = text.split(":")
    if parts[0] != "step" or len(parts) not in (2, 3):
        raise ConfigError(f"--noise-schedule {spec!r}: write one of {', '.join(NOISE_SCHEDULES)} "
                          "(e.g. step:2000 or step:0.5:0.1)")
    try:
        T = float(parts[1])
        F = float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        raise ConfigError(f"--noise-schedule {spec!r}: T and F must be numbers") from None
    if not (math.isfinite(F) and F >= 0):
        raise ConfigError(f"--noise-schedule {spec!r}: the factor F must be a finite number >= 0")
    if 0 < T < 1:
        T = float(max(1, round(T * iters)))  # a fraction of a very short run: at least iteration 1
    elif not (math.isfinite(T) and T.is_integer() and T >= 1):
        raise ConfigError(f"--noise-schedule {spec!r}: T must be an iteration >= 1 or a fraction in (0, 1) "
                          "of --iters")
    if T > iters:
        raise ConfigError(f"--noise-schedule {spec!r}: the decay iteration {int(T)} is beyond --iters {iters}; "
                          f"use T <= {iters} or a fraction such as step:0.5")
    return T, F


#: compile-time switch of the kernels below: False in ``ef_sgd_chunk``, whose conv branches Numba prunes
#: before typing (so the kernel of the saddles, MLPs and logistic problems does not compile the conv
#: autoencoder's passes: about a third of its compile time), True in ``ef_sgd_chunk__conv``
CONV = False


@njit_parallel(serial_calls=("conv_pass",), parallel=False)
def full_loss_grad(Q, W, x, all_rows, g, scratch):
    """f(x) and ∇f(x) over all rows (the linear autoencoder uses Σ = XᵀX/m, the conv one its chunked pass)."""
    if Q.kind == P_LINEAR_AE:
        return linear_ae_full(x, Q.G, Q.Iv[0], Q.Iv[1], Q.V[0], g, False, x, g)
    if not CONV and Q.kind == P_CONV_AE:  # batch_loss_grad would read it as an MLP (out of bounds)
        raise ValueError("full_loss_grad: the conv autoencoder runs on full_loss_grad__conv")
    if CONV:
        if Q.kind == P_CONV_AE:
            return conv_pass(Q.Iv, Q.F, Q.V[0], x, all_rows, all_rows.shape[0], g, W.P, W.S, W.Lc)
    return batch_loss_grad(Q.kind, Q.F, Q.G, Q.V, Q.Iv, x, all_rows, all_rows.shape[0], g, scratch)


@njit
def gaussian_vector(seed, t, r, out):
    """``out = r·N(0, I)`` from the shared noise stream of iteration t (Box–Muller)."""
    key = stream_key(seed, SHARED_NOISE, t)
    d = out.shape[0]
    for j in range(0, d, 2):
        u1 = uniform(key, j)
        u2 = uniform(key, j + 1)
        rad = r * math.sqrt(-2.0 * math.log(1.0 - u1))
        out[j] = rad * math.cos(2.0 * math.pi * u2)
        if j + 1 < d:
            out[j + 1] = rad * math.sin(2.0 * math.pi * u2)


@njit_parallel(serial_calls=("conv_pass", "full_loss_grad"))
def ef_sgd_chunk(k0, k1, K, log_every, A, x, xt, xa, Q, worker_ptr, all_rows, C, seed, range_ptr, W, B,
                 xi, gfull, full_scratch, bits_up_iter, bits_down_iter, acc, out):
    """Run iterations ``k0 <= t < k1`` (``t == K`` only logs the final point).

    Packs: ``A`` the :data:`Settings`, ``Q`` the :data:`Saddle` problem, ``C`` the compressor,
    ``W`` the :data:`SgdWork` buffers, ``B`` the compressor's buffers, ``out`` the :data:`SgdRows`.
    Returns ``(status, next t)``; ``x``/``xt``/``xa``/``W.E``/``acc`` carry the state.
    """
    d = x.shape[0]
    W_ = worker_ptr.shape[0] - 1
    n_ranges = range_ptr.shape[0] - 1
    inv_w = 1.0 / W_
    use_ef, use_reset, eta, batch = A.use_ef, A.use_reset, A.eta, A.batch
    # every array written inside the prange is a local, not a pack field: see _common.Work
    E, gsum, hsum, vbuf, gradbuf, scratch, rows_buf, rows_scale, row_mark = W[:9]
    Gw = W.Gw
    if not CONV and Q.kind == P_CONV_AE:
        raise ValueError("ef_sgd_chunk: the conv autoencoder runs on ef_sgd_chunk__conv")
    idx_b, val_b, code_b, bits_b, table_b, work_b, mark_b = B
    for t in range(k0, k1):
        # --- Algorithm 1, lines 4-8: reset after I iterations or on escaping radius R
        if use_reset and t > 0:
            dist2 = 0.0
            for j in range(d):
                dj = xa[j] - xt[j]
                dist2 += dj * dj
            if t - acc[A_T_ANCHOR] > A.reset_iters or dist2 > A.escape_radius * A.escape_radius:
                ft = full_loss_grad(Q, W, xt, all_rows, gfull, full_scratch)
                if not ft <= acc[A_F_MAX]:  # NaN too: a blow-up the log rows may never show
                    acc[A_F_MAX] = ft
                if not ft <= A.blowup_level and not ft < acc[A_F_ANCHOR]:
                    acc[A_RESCUES] += 1
                if ft < acc[A_F_ANCHOR]:
                    acc[A_F_ANCHOR] = ft
                    for j in range(d):
                        x[j] = xt[j]
                else:
                    for j in range(d):
                        x[j] = xa[j]
                for j in range(d):
                    xa[j] = x[j]
                    xt[j] = x[j]
                for i in range(E.shape[0]):
                    for j in range(d):
                        E[i, j] = 0.0
                acc[A_T_ANCHOR] = t
                acc[A_RESETS] += 1
        # --- metrics on logged iterations (one full pass over the data)
        if t % log_every == 0 or t == K:
            row = np.int64(acc[A_ROWS])
            f = full_loss_grad(Q, W, x, all_rows, gfull, full_scratch)
            gn = 0.0
            for j in range(d):
                gn += gfull[j] * gfull[j]
            out.iteration[row] = t
            out.loss[row] = f
            out.grad_norm_sq[row] = gn
            out.bits_up[row] = acc[A_BITS_UP]
            out.bits_down[row] = acc[A_BITS_DOWN]
            out.stoch_grad_norm_sq[row] = acc[A_SGN_SUM] / acc[A_SGN_COUNT] if acc[A_SGN_COUNT] > 0 else np.nan
            out.resets[row] = acc[A_RESETS]
            out.test_accuracy[row] = (mlp_accuracy(Q.Iv, x, Q.Xte, Q.yte, full_scratch) if Q.kind == P_MLP_CLS
                                      else np.nan)
            acc[A_SGN_SUM] = 0.0
            acc[A_SGN_COUNT] = 0.0
            acc[A_ROWS] = row + 1
            if not (math.isfinite(f) and math.isfinite(gn)):
                return DIVERGED, t
        if t == K:
            return RUNNING, t + 1
        if A.noise > 0.0:  # the schedule: r until T, r·F from T on (F = 0: no noise, ξ = 0)
            r_t = A.noise if t < A.noise_decay_at else A.noise * A.noise_factor
            if r_t > 0.0:
                gaussian_vector(seed, t, r_t, xi)
            else:
                for j in range(d):
                    xi[j] = 0.0
        ckey = stream_key(seed, SHARED_COMPRESSOR, t)
        conv = False
        if CONV:
            conv = Q.kind == P_CONV_AE
            if conv:  # its minibatch gradients first, worker by worker, each a parallel pass over fixed chunks
                for i in range(W_):
                    lo = worker_ptr[i]
                    _floyd(stream_key(seed, i, t), 0, lo, worker_ptr[i + 1] - lo, batch, 1.0, row_mark,
                           rows_buf[0], rows_scale[0], 0)
                    conv_pass(Q.Iv, Q.F, Q.V[0], x, rows_buf[0], batch, Gw[i], W.P, W.S, W.Lc)
        # --- workers, in fixed ranges (one buffer row per range)
        for rr in prange(n_ranges):
            gs = gsum[rr]
            hs = hsum[rr]
            for j in range(d):
                gs[j] = 0.0
                hs[j] = 0.0
            v = vbuf[rr]
            gr = gradbuf[rr]
            for i in range(range_ptr[rr], range_ptr[rr + 1]):
                if conv:
                    gi = Gw[i]
                else:
                    lo = worker_ptr[i]
                    mi = worker_ptr[i + 1] - lo
                    key = stream_key(seed, i, t)
                    _floyd(key, 0, lo, mi, batch, 1.0, row_mark, rows_buf[rr], rows_scale[rr], 0)
                    batch_loss_grad(Q.kind, Q.F, Q.G, Q.V, Q.Iv, x, rows_buf[rr], batch, gr, scratch[rr])
                    gi = gr
                for j in range(d):
                    hs[j] += gi[j]
                    v[j] = gi[j] + xi[j] + (E[i, j] if use_ef else 0.0)
                nnz, ms = encode(C.kind, C.d, C.k, C.s, C.r, C.c, C.scale, ckey, v, idx_b[rr], val_b[rr],
                                 code_b[rr], bits_b[rr], table_b[rr], work_b[rr], mark_b[rr])
                decode_add(C.kind, C.d, nnz, ms, 1.0, idx_b[rr], val_b[rr], code_b[rr], bits_b[rr], gs)
                if use_ef:
                    ei = E[i]
                    for j in range(d):
                        ei[j] = v[j]
                    decode_add(C.kind, C.d, nnz, ms, -1.0, idx_b[rr], val_b[rr], code_b[rr], bits_b[rr], ei)
        # --- server: ranges reduced in index order
        sgn = 0.0
        for j in range(d):
            gj = 0.0
            hj = 0.0
            for rr in range(n_ranges):
                gj += gsum[rr, j]
                hj += hsum[rr, j]
            gj *= inv_w
            hj *= inv_w
            sgn += hj * hj
            x[j] -= eta * gj
            if use_reset:  # x̃ is only read by the reset test (reset implies error feedback)
                xt[j] -= eta * (hj + xi[j])
        acc[A_SGN_SUM] += sgn
        acc[A_SGN_COUNT] += 1.0
        acc[A_BITS_UP] += bits_up_iter
        acc[A_BITS_DOWN] += bits_down_iter
    return RUNNING, k1


full_loss_grad__conv = full_loss_grad.specialize("__conv", CONV=True)
ef_sgd_chunk__conv = ef_sgd_chunk.specialize("__conv", CONV=True, full_loss_grad=full_loss_grad__conv)


def build(config, data_dir=None, allow_hash_mismatch=False) -> Built:
    """A saddle problem, a vector compressor (its contractive form under error feedback), D = ηI."""
    from . import get
    problem = problem_of(config, data_dir, allow_hash_mismatch)
    comp = compressors.make_vector(config.compressor, problem.d)
    random_compressor = bool(comp.unbiased and comp.omega)
    mu = comp.contractive().mu  # the μ of its μ-compressor form (RandomK unscaled: k/d)
    if get(config.algorithm).use_ef:
        comp = comp.contractive()
    eta, eta_rule = (config.lr, "--lr") if config.lr is not None else problem.default_lr(mu, random_compressor)
    I, I_rule = ((config.reset_iters, "--reset-iters") if config.reset_iters is not None else
                 (math.ceil(1.0 / (eta * math.sqrt(config.rho * config.eps))), "⌈1/(η√(ρε))⌉ (Theorem 3.1's I)"))
    smallest = int(np.diff(problem.worker_ptr).min())
    if config.batch_size > smallest:
        raise CgdbenchError(f"--batch-size {config.batch_size} is larger than the data: the smallest worker has "
                            f"{smallest} rows ({problem.m} rows over {problem.n} worker(s)); use at most {smallest}")
    info = {"rule": "scalar", "gamma": eta, "lr_rule": eta_rule, "reset_iters": I, "reset_iters_rule": I_rule,
            "compressor": comp.spec(), "compressor_note": comp.note,
            "mu_theory": comp.mu, "omega_theory": comp.omega, "warnings": []}
    D = stepsizes.StepsizeMatrix.scalar(eta, problem.d)
    return Built(config, problem, comp, D, None, info, problem.x0(config.x0, seed=config.seed))


_SGD = ("lr", "batch_size", "noise", "noise_schedule", "sosp_every", "eps", "rho", "hidden", "dim")
_SGD_METHOD = dict(oracle="minibatch", contract="vector", rules=("scalar",), default_compressor="identity",
                   default_stepsize="lr", seeded_x0=True)


class EfSgdJob(Job):
    """Compressed SGD: arrays for :func:`ef_sgd_chunk` (``ef_sgd_chunk__conv`` for the conv autoencoder),
    second-order checkpoints."""

    kernel = ef_sgd_chunk
    build = staticmethod(build)

    def __init__(self, b: Built):
        from . import get
        c, p, comp = b.config, b.problem, b.sketch
        K, d, W = c.iters, p.d, p.n
        algo = get(c.algorithm)
        self.b = b
        self.range_ptr = ranges = client_ranges(W)
        self.R = R = ranges.size - 1
        self.x = b.x0.copy()
        self.xt = b.x0.copy()
        self.xa = b.x0.copy()
        rows = rows_for(K, c.log_every)
        self.out = SgdRows(*(np.zeros(rows, dtype=np.int64 if k == "iteration" else np.float64)
                             for k in SgdRows._fields))
        self.acc = np.zeros(10)
        use_reset = algo.use_ef and c.reset
        f0 = p.f(self.x) if use_reset else math.nan  # only the reset test reads f(x⁰) (and the blow-up level)
        self.acc[A_F_ANCHOR] = f0 if use_reset else 0.0
        self.acc[A_F_MAX] = -math.inf
        down = down_values(c, W, d) * c.value_bits + W * comp.bits_down_extra()
        up = W * comp.bits_up(c.value_bits, c.index_mode)
        ss = p.scratch_size()
        decay_at, factor = noise_schedule(c.noise_schedule, K)
        settings = Settings(algo.use_ef, use_reset, float(b.stepsize_info["reset_iters"]),
                            float(c.escape_radius) if c.escape_radius else math.inf, float(b.stepsize_info["gamma"]),
                            float(c.noise),
                            decay_at, factor, c.batch_size, blowup_level(f0))
        conv = p.kind == P_CONV_AE
        if conv:
            self.kernel = ef_sgd_chunk__conv
        work = SgdWork(np.zeros((W if algo.use_ef else 1, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)),
                       np.zeros((R, d)), np.zeros((R, ss)), np.zeros((R, c.batch_size), np.int64),
                       np.zeros((R, c.batch_size)), np.zeros(p.m, np.int8),
                       np.zeros((W, d) if conv else (1, 1)),
                       *(pass_buffers(p.arch) if conv else (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1))))
        self.args = (c.log_every, settings, self.x, self.xt, self.xa, Saddle(*p.kernel_data(), *p.test_data()),
                     p.worker_ptr,
                     np.arange(p.m, dtype=np.int64), vector_pack(comp), np.uint64(c.seed), ranges, work,
                     cbufs(comp, R), np.zeros(d), np.zeros(d), np.zeros(ss), float(up), float(down), self.acc,
                     self.out)
        self.lam_min, self.lam_iter = [], []
        self.lam_method = None
        self.sosp_seconds = 0.0

    def shape_key(self):
        c, p = self.b.config, self.b.problem
        return ("ef-sgd", c.problem, p.n, p.d, p.m, c.batch_size, c.algorithm, c.compressor)

    def parallel_work(self) -> int:
        """Per iteration, each worker's batch gradient (about d operations a sample) and its compressed
        message (a d-vector); see :meth:`Job.parallel_work`.  One worker has nothing to split, except on the
        conv autoencoder, whose passes split the batch."""
        p = self.b.problem
        if self.R < 2 and self.kernel is not ef_sgd_chunk__conv:
            return 0
        return p.n * (self.b.config.batch_size + 1) * p.d

    def stops(self):
        every, K = self.b.config.sosp_every, self.b.config.iters
        return range(0, K, every) if every else range(0)

    def checkpoint(self, k):
        from ..second_order import DENSE_LIMIT, lambda_min
        t = time.perf_counter()
        d = self.b.problem.d
        say = sys.stderr.isatty() and d > 200  # seconds to a minute: say what the pause is
        if say:
            how = "dense eigendecomposition" if d <= DENSE_LIMIT else "Lanczos on Hessian-vector products"
            print(f"λ_min(∇²f) at iteration {k}: {how}, d = {d} ...", end="", file=sys.stderr, flush=True)
        with one_blas_thread():  # a dense eigensolver: the same λ_min bits on any core count
            lam, self.lam_method = lambda_min(self.b.problem, self.x, seed=self.b.config.seed)
        self.sosp_seconds += time.perf_counter() - t
        if say:
            print(f" {lam:.4g} ({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
        self.lam_min.append(lam)
        self.lam_iter.append(k)

    def collect(self, completed):
        n_rows = int(self.acc[A_ROWS])
        tr = {name: getattr(self.out, name)[:n_rows].copy() for name in SgdRows._fields}
        tr["grad_norm_sq_D"] = tr["grad_norm_sq"]  # D/det(D)^(1/d) = I for D = ηI
        extras = {"stoch_grad_norm_sq": tr.pop("stoch_grad_norm_sq"), "resets": tr.pop("resets").astype(np.int64)}
        acc = tr.pop("test_accuracy")
        if self.b.problem.labelled:
            extras["test_accuracy"] = acc
        if self.lam_iter:
            extras["lambda_min"] = np.array(self.lam_min)
            extras["lambda_min_iter"] = np.array(self.lam_iter, dtype=np.int64)
        G = float(np.mean(tr["grad_norm_sq"][tr["iteration"] < completed])) if n_rows else float("nan")
        return tr, extras, G

    def unseen_losses(self):
        return float(self.acc[A_F_MAX]), int(self.acc[A_RESCUES])

    def meta(self):
        c, comp, p = self.b.config, self.b.sketch, self.b.problem
        return {"bits_per_message": comp.bits_up(c.value_bits, c.index_mode), "ranges": self.R,
                "f_star": p.f_star, "G_KD_note": "mean ‖∇f‖² over logged iterates (D = ηI)"}

    def final_cut(self, reason: str):
        return {"sosp": None, "sosp_skipped": reason}

    def final(self, status):
        """λ_min at the final point and the ε-SOSP verdict (when the run finished)."""
        from ..second_order import sosp
        c = self.b.config
        if status != "completed":
            return {}
        if not self.b.problem.final_sosp and not c.sosp_every:
            return {"sosp": None, "sosp_skipped": f"{c.problem} (d = {self.b.problem.d}) checks λ_min only when "
                                                 "--sosp-every N asks"}
        if not self.lam_iter or self.lam_iter[-1] != c.iters:
            self.checkpoint(c.iters)
        n_rows = int(self.acc[A_ROWS])
        gn = math.sqrt(self.out.grad_norm_sq[n_rows - 1])
        return {"sosp": sosp(gn, self.lam_min[-1], c.eps, c.rho), "lambda_min_method": self.lam_method,
                "sosp_seconds": self.sosp_seconds}

    @staticmethod
    def stored_D(D):
        return np.float64(D.gamma)  # D = ηI, stored as the scalar

    @classmethod
    def summary_rows(cls, trace):
        from . import get
        c, m = trace.config, trace.meta
        ds = m.get("dataset", {})
        last = trace.loss.size > 0
        st = m.get("stepsize", {})
        flags = [f"η={st.get('gamma', c.lr):g}", f"B={c.batch_size}", f"r={c.noise:g}"]
        if c.noise > 0 and c.noise_schedule != "constant":
            flags.append(f"noise {c.noise_schedule}")
        if get(c.algorithm).use_ef:
            flags.append(f"reset I={st.get('reset_iters', c.reset_iters)}, "
                         f"R={c.escape_radius if c.escape_radius else '∞'}" if c.reset else "no reset")
        run = (f"{c.algorithm} | {m.get('stepsize', {}).get('compressor', c.compressor)} | {', '.join(flags)} | "
               f"{c.clients} worker(s) | seed {c.seed} | x0 {c.x0}")
        gap = (f"   (f* = {m['f_star']:.10g}, gap {trace.loss[-1] - m['f_star']:.3e})"
               if last and m.get("f_star") is not None else "")
        rows = cls.common_rows(trace, run, lam_always=False, loss_note=gap)
        if m.get("stepsize", {}).get("compressor_note"):
            rows.append(("compressor", m["stepsize"]["compressor_note"]))
        if "test_accuracy" in trace.extras and trace.extras["test_accuracy"].size:
            acc = trace.extras["test_accuracy"]
            rows.append(("test accuracy", f"{acc[-1]:.4f} at the end, best {np.nanmax(acc):.4f} "
                                          f"({ds.get('test_rows', '?')} held-out samples)"))
        if get(c.algorithm).use_ef and c.reset and "resets" in trace.extras and trace.extras["resets"].size:
            rows.append(("resets", f"{int(trace.extras['resets'][-1])}"))
        v = m.get("sosp")
        if m.get("sosp_skipped"):
            rows.append(("ε-SOSP", f"not checked ({m['sosp_skipped']})"))
        if v:
            rows.append(("ε-SOSP", f"{'yes' if v['is_sosp'] else 'no'}: ‖∇f‖ = {v['grad_norm']:.3e} "
                                  f"{'<=' if v['first_order'] else '>'} ε = {v['eps']:g}; "
                                  f"λ_min = {v['lambda_min']:.4e} "
                                  f"{'>=' if v['second_order'] else '<'} −√(ρε) = {v['lambda_threshold']:.4e} "
                                  f"(ρ = {v['rho']:g}, {m.get('lambda_min_method', '?')})"))
            if v.get("fails"):
                rows.append(("not ε-SOSP", "; ".join(v["fails"])))
        return rows


register("sgd", doc="compressed SGD x ← x − η(1/W)Σ C(∇F_i(x, θ_i) + ξ), no error feedback "
                    "(identity: plain minibatch SGD; --noise r: perturbed SGD).",
         reads=_SGD, use_ef=False, **_SGD_METHOD)(EfSgdJob)
register("ef-sgd", aliases=("ef_sgd", "efsgd", "compressed-sgd", "algorithm1-saddle"),
         doc="Algorithm 1 of Avdiukhin & Yaroslavtsev: compressed SGD with error feedback, noise (--noise r), "
             "reset after --reset-iters I or beyond --escape-radius R (--no-reset: plain EF-SGD).",
         reads=_SGD + ("reset_iters", "escape_radius", "reset"), use_ef=True, **_SGD_METHOD)(EfSgdJob)
