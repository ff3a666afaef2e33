"""What every algorithm module shares: the typed packs its kernel takes, the metric
row of a full-gradient method, and the Python side of a run (:class:`Built`, :class:`Job`).

Packs are ``namedtuple``\\ s of arrays and scalars, one per concept, so a new field
changes the pack and the code reading it, not every kernel signature.  Numba compiles
a namedtuple argument like a tuple (one specialisation per field types, cached on
disk, integer ``kind`` fields dispatched inside the kernels).
"""
from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from .. import store
from .._jit import njit, njit_inline
from ..stepsizes.kernels import d_apply, d_quad

RUNNING, DIVERGED = 0, 1
#: a loss is a blow-up when it rises above the start f₀ by more than (BLOWUP_FACTOR − 1)·max(|f₀|, 1):
#: ten times the start for f₀ >= 1, a rise of 9 below (losses at or near 0, e.g. a saddle at f = 0)
BLOWUP_FACTOR = 10.0


def blowup_level(f0: float) -> float:
    """The loss above which a run started at ``f0`` has blown up (:data:`BLOWUP_FACTOR`)."""
    return f0 + (BLOWUP_FACTOR - 1.0) * max(abs(f0), 1.0) if math.isfinite(f0) else math.inf


def loss_warnings(loss, iteration, unseen_max: float, rescued: int, condition_lambda=None) -> tuple[dict, list]:
    """What a run's losses say: ``({"loss_start", "loss_max", "loss_max_iter", "flagged"}, warnings)``.

    Flagged: a logged loss above :func:`blowup_level`, a reset that rescued one (the log never shows
    it), or a loss that ends above its start with a stepsize violating its condition (λ > 1); the
    last is also ``unstable`` (the run's status).
    """
    loss = np.asarray(loss, dtype=float)
    if loss.size == 0:
        return {"loss_start": None, "loss_max": None, "loss_max_iter": None, "flagged": False, "unstable": False}, []
    f0 = float(loss[0])
    finite = np.where(np.isfinite(loss), loss, -np.inf)
    i = int(np.argmax(finite))
    fmax, tmax = float(loss[i]), int(iteration[i])
    if unseen_max > fmax:
        fmax, tmax = float(unseen_max), None
    level = blowup_level(f0)
    warns = []
    if fmax > level:
        where = f"iteration {tmax}" if tmax is not None else "a reset test (between logged rows)"
        warns.append(f"blow-up: the loss reached {fmax:.4g} at {where}, above {level:.4g} "
                     f"(start {f0:.4g} + {BLOWUP_FACTOR - 1:g}·max(|start|, 1))")
    if rescued:
        warns.append(f"{rescued} reset(s) rescued a blow-up: the corrected iterate's loss was above {level:.4g} and "
                     "the run went back to its anchor (lower η, or a larger compressor)")
    last = float(loss[-1])
    unstable = condition_lambda is not None and condition_lambda > 1 + 1e-9 and last > f0
    if unstable:
        warns.append(f"the loss rose from {f0:.6g} to {last:.6g} with a stepsize that violates its condition "
                     f"(λ = {condition_lambda:.4g} > 1): not a normal completion")
    return {"loss_start": f0, "loss_max": fmax, "loss_max_iter": tmax, "flagged": bool(warns),
            "unstable": bool(unstable)}, warns


MAX_RANGES = 16
#: stream "client" id of the coin all clients share (MARINA's full-gradient rounds)
SHARED_COIN = np.uint64(2**62 + 3)
# acc slots of the full-gradient methods: Σ_{j<k} ‖∇f(x^j)‖²_D̃, bits up, bits down, rows written
A_G, A_UP, A_DOWN, A_ROWS = range(4)

#: a vector compressor C (:class:`cgdbench.compressors.Compressor`)
VectorC = namedtuple("VectorC", "kind d k s r c scale")
#: a compressor's message and scratch buffers, one row per client range
CBufs = namedtuple("CBufs", "idx val code bits table work mark")
#: a diagonal sketch S (:class:`cgdbench.compressors.Sketch`)
SketchS = namedtuple("SketchS", "kind d k block_ptr block_k block_q cdf inv_p")
#: a sketch's sample buffers, one row per client range, the non-zeros each range sent, and each
#: range's coordinate → position map (``pos[j] = q + 1`` while coordinate j is the q-th kept one, else 0)
SketchBufs = namedtuple("SketchBufs", "mark idx scale nnz pos")
#: a typed stepsize matrix D (:class:`cgdbench.stepsizes.StepsizeMatrix`) and det(D)^{1/d}
StepD = namedtuple("StepD", "kind gamma diag mat block_ptr block_of det_root")
#: per-range sums and scratch: data-gradient sums, message sums, one gradient, one vector, row scratch,
#: data losses.  Kernels unpack every pack they write into locals *before* a ``prange``
#: (``gsum_b, msum_b, g_b, v_b, z_b, lbuf = W``) and index those inside: on Numba 0.68's
#: parallel path a write through a namedtuple field inside the loop body — ``W.loss[r] = s``,
#: or an inlined function writing into ``SB.idx[r]`` — is silently lost (measured: the logged
#: loss, and det-CGD's sketch draws, were wrong on the parallel path only; ``tests/test_parallel.py``
#: compares the two paths bit for bit for every kernel).
Work = namedtuple("Work", "gsum msum g v zbuf loss")
#: logged rows
Rows = namedtuple("Rows", "iteration loss grad_norm_sq grad_norm_sq_D bits_up bits_down")
#: bits of one message: compressed, a full d-vector, and what one round sends down
Bits = namedtuple("Bits", "msg full down")
#: a sketch's message costs per sent value and per message (indices), a full d-vector, one round down
SketchBits = namedtuple("SketchBits", "value index full down")


def split_note(config, dataset: dict) -> str:
    """How the rows were split over clients, for the summary's problem row ('' for the default contiguous split)."""
    if config.split == "contiguous":
        return ""
    classes = dataset.get("worker_classes")
    shown = f": client i holds class {', '.join(map(str, classes))}" if classes else ""
    return f", split {config.split}{shown}"


def client_ranges(n: int) -> np.ndarray:
    """Fixed split of ``n`` clients into ``min(n, MAX_RANGES)`` contiguous ranges (never the thread count)."""
    r = min(n, MAX_RANGES)
    sizes = np.full(r, n // r, dtype=np.int64)
    sizes[: n % r] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@njit_inline
def metrics_row(log_row, k, n, W, reg, reg_grad, grad, D, acc, out):
    """∇f(x^k) = (1/n)Σ_r gsum_r + ∇(regularizer) into ``grad``, ranges in order; log a row.

    Returns ``‖∇f‖²_{D/det(D)^{1/d}}``, or NaN when a metric is not finite (divergence).
    """
    d = grad.shape[0]
    loss = 0.0
    for t in range(d):
        grad[t] = 0.0
    for r in range(W.gsum.shape[0]):
        loss += W.loss[r]
        for t in range(d):
            grad[t] += W.gsum[r, t]
    gns = 0.0
    for t in range(d):
        grad[t] = grad[t] / n + reg_grad[t]
        gns += grad[t] * grad[t]
    gnsD = d_quad(D.kind, D.gamma, D.diag, D.mat, D.block_ptr, D.block_of, grad) / D.det_root
    if not (math.isfinite(gns) and math.isfinite(gnsD) and math.isfinite(reg) and math.isfinite(loss)):
        return np.nan
    if log_row:
        row = np.int64(acc[A_ROWS])
        out.iteration[row] = k
        out.loss[row] = loss / n + reg
        out.grad_norm_sq[row] = gns
        out.grad_norm_sq_D[row] = gnsD
        out.bits_up[row] = acc[A_UP]
        out.bits_down[row] = acc[A_DOWN]
        acc[A_ROWS] += 1
    return gnsD


@njit
def mean_of_ranges(buf, n, out):
    """``out = (1/n) Σ_r buf[r]``, ranges summed in index order."""
    d = out.shape[0]
    for t in range(d):
        out[t] = 0.0
    for r in range(buf.shape[0]):
        for t in range(d):
            out[t] += buf[r, t]
    for t in range(d):
        out[t] /= n


@njit_inline
def server_step(D, g, step, x):
    """``x ← x − D g`` through the buffer ``step`` (as det-CGD does it: the product rounded before the
    subtraction, never fused into one FMA, so that methods reducing to GD reproduce it bit for bit)."""
    d_apply(D.kind, D.gamma, D.diag, D.mat, D.block_ptr, D.block_of, g, step)
    for t in range(x.shape[0]):
        x[t] -= step[t]


@dataclass
class Built:
    """Everything a run needs, built from a config (no iterations done yet)."""

    config: object
    problem: object
    sketch: object          # the sketch S or compressor C the algorithm sends with
    D: object               # StepsizeMatrix (γI for scalar methods)
    L: np.ndarray | None
    stepsize_info: dict
    x0: np.ndarray


def rows_for(K: int, log_every: int) -> int:
    return K // log_every + 1 + (1 if K % log_every else 0)


def down_values(config, n: int, d: int) -> int:
    """Values sent down per round under the downlink model."""
    return {"per-client": n * d, "once": d, "none": 0}[config.downlink]


def finite_sum_problem(config, data_dir, allow_hash_mismatch):
    """The CSR finite-sum problem a config names (data loaded, rows split over clients)."""
    from .. import data, problems
    ds = data.load(config.dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    return problems.get(config.problem)(ds, lam=config.lam, clients=config.clients, split=config.split,
                                       split_seed=config.split_seed, blocks=config.blocks)


def problem_of(config, data_dir=None, allow_hash_mismatch=False):
    """The problem a config names, built alone (its data loaded and split; no compressor or stepsize): a
    finite-sum problem for the full-gradient methods, a saddle problem's ``create`` for the minibatch ones."""
    from .. import problems
    cls = problems.get(config.problem)
    if cls.oracle == "full":
        return finite_sum_problem(config, data_dir, allow_hash_mismatch)
    return cls.create(dataset=config.dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch,
                      hidden=config.hidden, dim=config.dim, lam=config.lam, clients=config.clients,
                      split=config.split, split_seed=config.split_seed)


def step_pack(D) -> StepD:
    return StepD(*D.kernel_args(), D.det_root())


def vector_pack(comp) -> VectorC:
    return VectorC(*comp.kernel_args())


def cbufs(comp, R: int) -> CBufs:
    return CBufs(*(np.stack([a] * R) for a in comp.buffers()))


def sketch_bufs(R: int, d: int) -> SketchBufs:
    return SketchBufs(np.zeros((R, d), np.int8), np.zeros((R, d), np.int64), np.zeros((R, d)), np.zeros(R, np.int64),
                      np.zeros((R, d), np.int32))


def work(R: int, d: int, max_rows: int) -> Work:
    return Work(np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, max_rows)),
                np.zeros(R))


def check_memory(what: str, n: int, d: int) -> None:
    """An n×d per-client state that would not fit is a one-line error before anything runs."""
    from ..environment import check_memory as fits
    fits(8.0 * n * d, f"{what} keeps a d-vector per client (n·d = {n:,}·{d:,} doubles)", "use fewer --clients")


class Job:
    """How the engine drives one algorithm: ``call`` a chunk, checkpoints, what a run reports.

    The base serves the full-gradient methods on finite sums (det-CGD, EF21, DIANA,
    MARINA, det-MARINA): same logged metrics, bits and G_{K,D}; subclasses set
    :attr:`kernel` and :attr:`args` and may add meta or summary rows.
    """

    kernel = None

    def __init__(self, b: Built):
        c, p = b.config, b.problem
        self.b = b
        self.range_ptr = client_ranges(p.n)
        self.R = self.range_ptr.size - 1
        self.x = b.x0.copy()
        n_rows = rows_for(c.iters, c.log_every)
        self.out = Rows(*(np.zeros(n_rows, dtype=np.int64 if k == "iteration" else np.float64)
                          for k in Rows._fields))
        self.acc = np.zeros(4)
        self.args = ()

    # --- what the engine calls -------------------------------------------------
    def call(self, k0, k1, path):
        args = (k0, k1, self.b.config.iters, *self.args)
        compiled = self.__dict__.setdefault("_compiled", {})  # path -> (self.args, entry point for their types)
        bound, fn = compiled.get(path, (None, None))
        if bound is not self.args:  # first call, or a job that replaced its arrays
            fn = self.kernel.entry(path, args)
            compiled[path] = (self.args, fn)
        return fn(*args)

    def signature(self, path):
        """The Numba types :meth:`call` passes the kernel's ``path`` (what it is compiled for)."""
        return self.kernel.signature(path, (0, 0, self.b.config.iters, *self.args))

    def shape_key(self):
        p, c = self.b.problem, self.b.config
        return (c.algorithm, p.n, p.d, int(p.indptr[-1]), c.compressor)

    def parallel_work(self) -> int:
        """Operations per iteration the parallel path could split, roughly (0: nothing to split).

        Finite sums: two passes over the non-zeros (margins, then the gradient) and up to a d-vector per
        client (a vector compressor's message; a sketch's is smaller).  One range (one client) has nothing
        to split.  :class:`cgdbench.parallel.PathChooser` runs only the serial path below
        :data:`cgdbench.parallel.PARALLEL_MIN_WORK`.
        """
        p = self.b.problem
        return 0 if self.R < 2 else 2 * int(p.indptr[-1]) + p.n * p.d

    def stops(self):
        return range(0)

    def checkpoint(self, k):
        pass

    def collect(self, completed):
        n_rows = int(self.acc[A_ROWS])
        tr = {name: getattr(self.out, name)[:n_rows].copy() for name in Rows._fields}
        return tr, {}, float(self.acc[A_G] / completed) if completed else float("nan")

    def meta(self):
        return {"ranges": self.R}

    def final(self, status):
        """Meta computed once the iterations are done (the saddle methods' second-order check)."""
        return {}

    def final_cut(self, reason: str):
        """The meta :meth:`final` leaves when an interrupt or an error cuts it short (every iteration ran)."""
        return {}

    def unseen_losses(self) -> tuple[float, int]:
        """``(largest loss evaluated between logged rows, blow-ups a reset rescued)``; none here."""
        return float("nan"), 0

    # --- what Trace asks ------------------------------------------------------
    @staticmethod
    def stored_D(D):
        return store.stepsize_array(D)

    @staticmethod
    def common_rows(trace, run: str, lam_always: bool = True, loss_note: str = "") -> list[tuple[str, str]]:
        """The rows every algorithm's summary starts with: run (``run``), problem, status, final loss, ‖∇f‖²."""
        c, ds = trace.config, trace.meta.get("dataset", {})
        last = trace.loss.size > 0
        return [
            ("run", run),
            ("problem", f"{c.problem} on {ds.get('name', '?')} (m={ds.get('rows', '?')}, d={trace.x_final.size})"
                        + (f", λ={c.lam:g}" if lam_always or c.lam else "") + split_note(c, ds)),
            ("status", f"{trace.status} after {trace.iterations} of {c.iters} iterations"),
            ("final loss", (f"{trace.loss[-1]:.10g}" if last else "n/a") + (loss_note if last else "")),
            ("‖∇f‖²", f"{trace.grad_norm_sq[-1]:.6e}" if last else "n/a"),
        ]

    @classmethod
    def summary_rows(cls, trace) -> list[tuple[str, str]]:
        c, m = trace.config, trace.meta
        run = (f"{c.algorithm} | {m.get('stepsize', {}).get('compressor', c.compressor)} | stepsize "
               f"{c.stepsize} ({trace.D.kind}{', γ = %.6g' % trace.D.gamma if trace.D.kind == 'scalar' else ''})"
               f" | {c.clients} client(s) | seed {c.seed}")
        return cls.common_rows(trace, run) + [
            ("G_{K,D}", f"{trace.G_KD:.6e}   (det(D)^(1/d) = {m.get('det_root', float('nan')):.4e})")]


# --- the vector-compressor baselines (EF21, DIANA, MARINA) ----------------------------
def vector_build(config, data_dir, allow_hash_mismatch, contractive: bool = False):
    """Problem, L, the compressor (its contractive form C/(1+ω) if asked) and the scalar constants."""
    from .. import compressors
    from ..stepsizes import baselines
    problem = finite_sum_problem(config, data_dir, allow_hash_mismatch)
    L = problem.smoothness()
    comp = compressors.make_vector(config.compressor, problem.d)
    if contractive:
        comp = comp.contractive()
    return problem, L, comp, baselines.smoothness_constants(problem, L)


def scalar_stepsize(config, rule: str, gamma_theory: float, d: int, what: str):
    """D = γI from the algorithm's theory rule or ``scalar:GAMMA``; a γ above the theory's is a warning."""
    from .. import stepsizes
    name, param = stepsizes.parse(config.stepsize)
    gamma = gamma_theory if name == rule else float(param)
    info = {"rule": name, "gamma": gamma, "gamma_theory": gamma_theory, "gamma_over_theory": gamma / gamma_theory,
            "warnings": []}
    if gamma > gamma_theory * (1 + 1e-12):
        info["warnings"].append(f"γ = {gamma:g} is {gamma / gamma_theory:.4g}x the largest γ = {gamma_theory:.6g} "
                                f"of {what}'s theory: its convergence guarantee does not apply")
    return stepsizes.StepsizeMatrix.scalar(gamma, d), info


def sketch_bits(sketch, config, n: int, d: int) -> SketchBits:
    return SketchBits(float(config.value_bits), float(sketch.index_bits(config.index_mode)),
                      float(d * config.value_bits), float(down_values(config, n, d) * config.value_bits))


def bits_pack(msg_bits: float, config, n: int, d: int, down_extra: int = 0) -> Bits:
    """Bits of one compressed message, of one full d-vector, and of one round's downlink (all clients)."""
    return Bits(float(msg_bits), float(d * config.value_bits),
                float(down_values(config, n, d) * config.value_bits + n * down_extra))


def theory_row(trace, what: str) -> tuple[str, str]:
    """One summary line: the stepsize against its theory and the constants it came from."""
    st = trace.meta.get("stepsize", {})
    consts = ", ".join(f"{k} = {st[k]:.4g}" for k in ("L_f", "L_tilde", "L_max", "omega", "alpha", "p")
                       if st.get(k) is not None)
    return ("theory", f"γ = {st.get('gamma', float('nan')):.6g} = {st.get('gamma_over_theory', float('nan')):.4g} × "
                      f"{what}'s largest γ {st.get('gamma_theory', float('nan')):.6g} ({consts})")


class SketchJob(Job):
    """The methods that send det-CGD's diagonal sketches (det-CGD, det-MARINA): what their meta reports."""

    def meta(self):
        sk, c = self.b.sketch, self.b.config
        return {"index_bits_per_message": sk.index_bits(c.index_mode), "expected_nnz_per_message": sk.expected_nnz(),
                "ranges": self.R}


class VectorJob(Job):
    """The vector-compressor baselines: compressor pack, per-client state, bits per round."""

    #: what ``summary_rows`` calls the theory
    theory = ""

    def __init__(self, b: Built, state_rows: int):
        super().__init__(b)
        c, p, comp = b.config, b.problem, b.sketch
        check_memory(c.algorithm, state_rows, p.d)
        self.state = np.zeros((state_rows, p.d))
        self.server = np.zeros(p.d)
        self.bits = bits_pack(comp.bits_up(c.value_bits, c.index_mode), c, p.n, p.d, comp.bits_down_extra())
        self.common = (c.log_every, self.x, b.problem.pack(), vector_pack(comp), np.uint64(c.seed), self.range_ptr,
                       work(self.R, p.d, p.max_rows), cbufs(comp, self.R), np.zeros(p.d), np.zeros(p.d),
                       step_pack(b.D), self.bits, self.acc, self.out)

    def meta(self):
        return {"ranges": self.R, "bits_per_message": self.bits.msg, "bits_per_full_vector": self.bits.full}

    @classmethod
    def summary_rows(cls, trace):
        rows = super().summary_rows(trace)
        note = trace.meta.get("stepsize", {}).get("compressor_note")
        if note:
            rows.append(("compressor", note))
        rows.append(theory_row(trace, cls.theory))
        return rows
