"""Engine: build the arrays a config describes, run the jitted loop, return a Trace.

The K iterations run inside the jitted kernel in a few hundred chunks; between
chunks Python only advances the progress bar, reads the clock (the per-row
``wall_time`` is interpolated linearly inside a chunk) and picks the compiled path
of the next chunk, parallel or serial (:mod:`cgdbench.parallel`; both give
bit-identical results).  A Ctrl-C or SIGTERM between chunks ends the run as
``interrupted`` with everything computed so far.
"""
from __future__ import annotations

import bisect
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__, algorithms, compressors, data, environment, parallel, problems, stepsizes, store
from .algorithms.det_cgd import DIVERGED, client_ranges, det_cgd_chunk
from .config import RunConfig
from .errors import CgdbenchError

MAX_CHUNKS = 200
#: long runs still get chunks short enough for the path choice to follow the machine's load
MAX_CHUNK_ITERS = 1000


@dataclass
class Built:
    """Everything a run needs, built from a config (no iterations done yet)."""

    config: RunConfig
    problem: object
    sketch: compressors.Sketch
    D: stepsizes.StepsizeMatrix
    L: np.ndarray
    stepsize_info: dict
    x0: np.ndarray


def build(config: RunConfig, data_dir=None, allow_hash_mismatch: bool = False) -> Built:
    """Load data and build problem, sketch and stepsize; raises on any bad input."""
    if config.family == "ef":
        return _build_sgd(config, data_dir, allow_hash_mismatch)
    ds = data.load(config.dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    problem = problems.get(config.problem)(ds, lam=config.lam, clients=config.clients, split=config.split,
                                          split_seed=config.split_seed, blocks=config.blocks)
    L = problem.smoothness()
    sketch = compressors.make(config.compressor, problem.d, problem.block_ptr, np.diag(L))
    x0 = problem.x0(config.x0)
    setting = None
    if stepsizes.parse(config.stepsize)[0] in stepsizes.DISTRIBUTED:
        from .stepsizes.distributed import setting_for
        setting = setting_for(problem, x0, config.iters, config.eps2)
    D, info = stepsizes.build(config.stepsize, config.family, sketch, L, problem.block_ptr, setting=setting)
    if setting is not None:
        info["inf_estimate"] = setting.source
    return Built(config, problem, sketch, D, L, info, x0)


def _build_sgd(config: RunConfig, data_dir, allow_hash_mismatch) -> Built:
    """Compressed SGD: a saddle problem, a vector compressor (contractive form under EF), η."""
    algo = algorithms.get(config.algorithm)
    problem = problems.get(config.problem).create(
        dataset=config.dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch, hidden=config.hidden,
        dim=config.dim, lam=config.lam, clients=config.clients, split=config.split, split_seed=config.split_seed)
    comp = compressors.make_vector(config.compressor, problem.d)
    if algo.use_ef:
        comp = comp.contractive()
    smallest = int(np.diff(problem.worker_ptr).min())
    if config.batch_size > smallest:
        raise CgdbenchError(f"--batch-size {config.batch_size} is larger than the data: the smallest worker has "
                            f"{smallest} rows ({problem.m} rows over {problem.n} worker(s)); use at most {smallest}")
    info = {"rule": "scalar", "gamma": config.lr, "compressor": comp.spec(), "compressor_note": comp.note,
            "mu_theory": comp.mu, "omega_theory": comp.omega, "warnings": []}
    D = stepsizes.StepsizeMatrix.scalar(config.lr, problem.d)
    return Built(config, problem, comp, D, None, info, problem.x0(config.x0, seed=config.seed))


@dataclass
class Trace:
    """What one run produced; ``record()`` is what the HDF5 store writes."""

    config: RunConfig
    status: str
    iteration: np.ndarray
    loss: np.ndarray
    grad_norm_sq: np.ndarray
    grad_norm_sq_D: np.ndarray
    bits_up: np.ndarray
    bits_down: np.ndarray
    wall_time: np.ndarray
    x_final: np.ndarray
    D: stepsizes.StepsizeMatrix
    G_KD: float                 # (1/K) Σ_{k<K} ‖∇f(x^k)‖²_{D/det(D)^{1/d}} over completed steps
    iterations: int             # completed steps
    meta: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)   # family-specific arrays (sgd: stoch_grad_norm_sq, lambda_min, ...)
    run_id: str | None = None
    path: str | None = None

    def record(self) -> dict:
        c = self.config
        attrs = {
            "config": c.to_json(), "status": self.status, "package_version": __version__,
            "git_commit": self.meta.get("environment", {}).get("git_commit") or environment.git_commit(),
            "created": store.now(), "D_kind": self.D.kind,
            "G_KD": self.G_KD, "iterations_completed": self.iterations,
            "meta": json.dumps(self.meta, sort_keys=True, default=str),
        }
        arrays = {k: getattr(self, k) for k in store.PER_ITERATION}
        arrays["x_final"] = self.x_final
        # compressed SGD: D = ηI, stored as the scalar (d×d would be η on a diagonal)
        arrays["D"] = np.float64(self.D.gamma) if c.family == "ef" else store.stepsize_array(self.D)
        arrays.update(self.extras)
        return {"attrs": attrs, "arrays": arrays, "run_id": store.run_id(c)}

    def summary(self) -> str:
        c = self.config
        if c.family == "ef":
            return self._summary_sgd()
        rows = [
            ("run", f"{c.algorithm} | {c.compressor} | stepsize {c.stepsize} ({self.D.kind}) | "
                    f"{c.clients} client(s) | seed {c.seed}"),
            ("problem", f"{c.problem} on {self.meta.get('dataset', {}).get('name', '?')} "
                        f"(m={self.meta.get('dataset', {}).get('rows', '?')}, d={self.x_final.size}), λ={c.lam:g}"),
            ("status", f"{self.status} after {self.iterations} of {c.iters} iterations"),
            ("final loss", f"{self.loss[-1]:.10g}" if self.loss.size else "n/a"),
            ("‖∇f‖²", f"{self.grad_norm_sq[-1]:.6e}" if self.loss.size else "n/a"),
            ("G_{K,D}", f"{self.G_KD:.6e}   {self._theorem1()}"),
        ]
        cor = self.meta.get("stepsize", {}).get("corollary1")
        if cor:
            st = self.meta["stepsize"]
            rows.append(("Corollary 1", f"λ_D = {cor['lambda_D']:.4e} (n/K = {cor['n_over_K']:.3g}), bound (20) on "
                                        f"min E‖∇f‖²_D/det^(1/d) = {cor['bound_20']:.4e} for ε² = {cor['eps2']:g}; "
                                        f"binding: {st.get('binding', '?')}; Δinf ≈ {cor['delta_inf']:.4g}, "
                                        f"f(x0) − finf ≈ {cor['f0_gap']:.4g} (estimated, cached)"))
        return self._format(rows)

    def _format(self, rows) -> str:
        """The method-specific ``rows``, then what every run reports: bits, time, warnings, where saved."""
        m, last = self.meta, self.loss.size > 0
        rows = rows + [
            ("bits sent", f"up {_bits(self.bits_up[-1] if last else 0)}, down {_bits(self.bits_down[-1] if last else 0)}"),
            ("wall time", f"{m.get('run_seconds', float('nan')):.3f} s run + {m.get('compile_seconds', float('nan')):.2f} s "
                          f"compile/load ({1e6 * m.get('seconds_per_iter', float('nan')):.1f} µs/iteration)"
                          + (f" + {m['sosp_seconds']:.2f} s second-order checks" if m.get("sosp_seconds") else "")),
        ]
        for w in self.meta.get("warnings", []):
            rows.append(("warning", w))
        if self.run_id:
            rows.append(("saved", f"{self.path} : /runs/{self.run_id}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:>{width}}  {v}" for k, v in rows)

    def _summary_sgd(self) -> str:
        c, m = self.config, self.meta
        ds = m.get("dataset", {})
        last = self.loss.size > 0
        flags = [f"η={c.lr:g}", f"B={c.batch_size}", f"r={c.noise:g}"]
        if algorithms.get(c.algorithm).use_ef:
            flags.append(f"reset I={c.reset_iters}, R={c.escape_radius if c.escape_radius else '∞'}"
                         if c.reset else "no reset")
        rows = [
            ("run", f"{c.algorithm} | {m.get('stepsize', {}).get('compressor', c.compressor)} | {', '.join(flags)} | "
                    f"{c.clients} worker(s) | seed {c.seed} | x0 {c.x0}"),
            ("problem", f"{c.problem} on {ds.get('name', '?')} (m={ds.get('rows', '?')}, d={self.x_final.size})"
                        + (f", λ={c.lam:g}" if c.lam else "")),
            ("status", f"{self.status} after {self.iterations} of {c.iters} iterations"),
            ("final loss", (f"{self.loss[-1]:.10g}" if last else "n/a")
             + (f"   (f* = {m['f_star']:.10g}, gap {self.loss[-1] - m['f_star']:.3e})"
                if last and m.get("f_star") is not None else "")),
            ("‖∇f‖²", f"{self.grad_norm_sq[-1]:.6e}" if last else "n/a"),
        ]
        if m.get("stepsize", {}).get("compressor_note"):
            rows.append(("compressor", m["stepsize"]["compressor_note"]))
        if "resets" in self.extras and self.extras["resets"].size:
            rows.append(("resets", f"{int(self.extras['resets'][-1])}"))
        v = m.get("sosp")
        if v:
            rows.append(("ε-SOSP", f"{'yes' if v['is_sosp'] else 'no'}: ‖∇f‖ = {v['grad_norm']:.3e} "
                                  f"{'<=' if v['first_order'] else '>'} ε = {v['eps']:g}; λ_min = {v['lambda_min']:.4e} "
                                  f"{'>=' if v['second_order'] else '<'} −√(ρε) = {v['lambda_threshold']:.4e} "
                                  f"(ρ = {v['rho']:g}, {m.get('lambda_min_method', '?')})"))
        return self._format(rows)


    def _theorem1(self) -> str:
        """Theorem 1's bound 2(f(x⁰) − f_lower)/(det(D)^{1/d} K), where it applies."""
        root = self.meta.get("det_root", float("nan"))
        f_lower = self.meta.get("f_lower")
        lam = self.meta.get("stepsize", {}).get("condition_lambda", float("inf"))
        if self.config.clients != 1 or f_lower is None or lam > 1 + 1e-9 or not self.iterations:
            return f"(det(D)^(1/d) = {root:.4e})"
        bound = 2 * (self.loss[0] - f_lower) / (root * self.iterations)
        return f"(Theorem 1 bounds its expectation by 2(f(x0) - {f_lower:g})/(det(D)^(1/d) K) = {bound:.6e})"


def _bits(b: float) -> str:
    b = float(b)
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if b >= scale:
            return f"{b / scale:.3f} {unit} ({int(b)} bits)"
    return f"{int(b)} bits"


def _rows(K: int, log_every: int) -> int:
    return K // log_every + 1 + (1 if K % log_every else 0)


def run(config: RunConfig, out=None, progress: bool = False, data_dir=None,
        allow_hash_mismatch: bool = False, built: Built | None = None) -> Trace:
    """Run ``config``; append the result to HDF5 file ``out`` if given.

    Bad input raises :class:`~cgdbench.errors.CgdbenchError` before anything is
    written.  A diverged or interrupted run is still returned (and stored) with
    its trace up to that point; ``KeyboardInterrupt`` is re-raised after storing.
    """
    if out is not None:
        store.check_writable(out)
    t_build = time.perf_counter()
    layer = parallel.check_threading_layer()
    parallel.path_setting()  # a bad CGDBENCH_PATH fails here, before any build
    b = built or build(config, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    job = _EfJob(b) if config.family == "ef" else _DetCgdJob(b)
    threads = _threads()
    chooser = parallel.PathChooser(threads, key=job.shape_key())
    for path in chooser.paths:
        job.call(0, 0, path)  # compile (or load from cache) outside the timed loop
    compile_seconds = time.perf_counter() - t_build

    K = config.iters
    chunk = max(1, min(math.ceil((K + 1) / MAX_CHUNKS), MAX_CHUNK_ITERS))
    stops = job.stops()  # iterations where Python must look at the state (second-order checkpoints)
    status, k = "completed", 0
    marks = [(0, 0.0)]  # (iteration reached, seconds of iterating)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=K, unit="it", desc=config.algorithm, leave=False, dynamic_ncols=True)
    interrupted = None
    t0 = time.perf_counter()
    paused = 0.0
    try:
        if 0 in stops:
            job.checkpoint(0)
            paused = time.perf_counter() - t0
        while k <= K:
            k_end = min(k + chunk, K + 1)
            i = bisect.bisect_right(stops, k)  # the next checkpoint after k (stops are sorted)
            if i < len(stops) and stops[i] < k_end:
                k_end = stops[i]
            path, cap = chooser.pick()
            if cap is not None:
                k_end = min(k_end, k + cap)
            tc = time.perf_counter()
            code, k_next = job.call(k, k_end, path)
            t_now = time.perf_counter()
            chooser.record(path, t_now - tc, k_next - k)
            marks.append((k_next, t_now - t0 - paused))
            if bar is not None:
                bar.update(min(k_next, K) - min(k, K))
            k = k_next
            if code == DIVERGED:
                status = "diverged"
                break
            if k in stops and k <= K:
                tp = time.perf_counter()
                job.checkpoint(k)
                paused += time.perf_counter() - tp
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", exc
    except Exception as exc:  # a bug: keep what was computed, mark the run failed, re-raise
        status, interrupted = "failed", exc
    finally:
        if bar is not None:
            bar.close()
    run_seconds = time.perf_counter() - t0 - paused

    completed = min(k, K) if status != "completed" else K
    final = job.final(status)
    tr, extras, G_KD = job.collect(completed)
    it_marks = np.array([m[0] for m in marks], dtype=float)
    t_marks = np.array([m[1] for m in marks])
    wall = np.interp(tr["iteration"].astype(float), it_marks, t_marks)
    meta = {
        "dataset": b.problem.dataset_info,
        "det_root": b.D.det_root(), "logdet_D": b.D.logdet(),
        "f_lower": getattr(b.problem, "f_lower", None),
        "stepsize": b.stepsize_info, "compile_seconds": compile_seconds, "run_seconds": run_seconds,
        "seconds_per_iter": run_seconds / max(completed, 1), "threads": threads, "threading_layer": layer,
        "paths": chooser.report(), "environment": environment.describe(threads, layer),
        "warnings": list(b.stepsize_info.get("warnings", [])), **job.meta(),
    }
    if status == "failed":
        meta["error"] = f"{type(interrupted).__name__}: {interrupted}"
    if status == "diverged":
        meta["warnings"].append(f"non-finite gradient at iteration {k}: the run diverged")
    meta.update(final)
    trace = Trace(config, status, tr["iteration"], tr["loss"], tr["grad_norm_sq"], tr["grad_norm_sq_D"],
                  tr["bits_up"].astype(np.int64), tr["bits_down"].astype(np.int64), wall, job.x.copy(), b.D,
                  G_KD, completed, meta, extras)
    if out is not None:
        trace.run_id = store.write_run(out, trace.record())
        trace.path = str(out)
    if interrupted is not None:
        interrupted.trace = trace  # the caller can still inspect what was stored
        raise interrupted
    return trace


class _DetCgdJob:
    """det-CGD family: arrays for :func:`det_cgd_chunk` and what a run reports."""

    def __init__(self, b: Built):
        c, p, sk, D = b.config, b.problem, b.sketch, b.D
        K, d, n = c.iters, p.d, p.n
        self.b = b
        ranges = client_ranges(n)
        R = ranges.size - 1
        self.x = b.x0.copy()
        rows = _rows(K, c.log_every)
        self.out = {k: np.zeros(rows, dtype=np.int64 if k == "iteration" else np.float64)
                    for k in store.PER_ITERATION if k != "wall_time"}
        self.acc = np.zeros(4)
        down = {"per-client": n * d, "once": d, "none": 0}[c.downlink] * c.value_bits
        o = self.out
        self.args = (
            c.log_every, algorithms.get(c.algorithm).family_code, self.x, *p.kernel_data(), *sk.kernel_args(),
            np.uint64(c.seed), *D.kernel_args(), D.det_root(), ranges,
            np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d), dtype=np.int8),
            np.zeros((R, d), dtype=np.int64), np.zeros((R, d)), np.zeros(R), np.zeros(R, dtype=np.int64),
            np.zeros(d), np.zeros(d), np.zeros(d), np.zeros((R, p.max_rows)),
            float(c.value_bits), float(sk.index_bits(c.index_mode)), float(down), self.acc,
            o["iteration"], o["loss"], o["grad_norm_sq"], o["grad_norm_sq_D"], o["bits_up"], o["bits_down"])
        self.ranges = R

    def call(self, k0, k1, path):
        return det_cgd_chunk.path(path)(k0, k1, self.b.config.iters, *self.args)

    def shape_key(self):
        p = self.b.problem
        return ("det-cgd", p.n, p.d, int(p.indptr[-1]), self.b.config.algorithm, self.b.config.compressor)

    def stops(self):
        return range(0)

    def checkpoint(self, k):
        pass

    def collect(self, completed):
        n_rows = int(self.acc[3])
        tr = {name: arr[:n_rows].copy() for name, arr in self.out.items()}
        return tr, {}, float(self.acc[0] / completed) if completed else float("nan")

    def meta(self):
        sk, c = self.b.sketch, self.b.config
        return {"index_bits_per_message": sk.index_bits(c.index_mode), "expected_nnz_per_message": sk.expected_nnz(),
                "ranges": self.ranges}

    def final(self, status):
        return {}


class _EfJob:
    """Compressed SGD family: arrays for :func:`ef_sgd_chunk`, second-order checkpoints."""

    def __init__(self, b: Built):
        from .algorithms.ef_sgd import A_F_ANCHOR, ef_sgd_chunk
        c, p, comp = b.config, b.problem, b.sketch
        K, d, W = c.iters, p.d, p.n
        algo = algorithms.get(c.algorithm)
        self.b, self.kernel = b, ef_sgd_chunk
        ranges = client_ranges(W)
        R = ranges.size - 1
        self.x = b.x0.copy()
        self.xt = b.x0.copy()
        self.xa = b.x0.copy()
        rows = _rows(K, c.log_every)
        names = ("iteration", "loss", "grad_norm_sq", "bits_up", "bits_down", "stoch_grad_norm_sq", "resets")
        self.out = {k: np.zeros(rows, dtype=np.int64 if k == "iteration" else np.float64) for k in names}
        self.acc = np.zeros(8)
        self.acc[A_F_ANCHOR] = p.f(self.x) if algo.use_ef and c.reset else 0.0
        down = {"per-client": W * d, "once": d, "none": 0}[c.downlink] * c.value_bits + W * comp.bits_down_extra()
        up = W * comp.bits_up(c.value_bits, c.index_mode)
        bufs = [np.stack([a] * R) for a in comp.buffers()]
        ss = p.scratch_size()
        o = self.out
        self.args = (
            c.log_every, algo.use_ef, algo.use_ef and c.reset, float(c.reset_iters),
            float(c.escape_radius) if c.escape_radius else math.inf, float(c.lr), float(c.noise), c.batch_size,
            self.x, self.xt, self.xa, *p.kernel_data(), p.worker_ptr, np.arange(p.m, dtype=np.int64),
            *comp.kernel_args(), np.uint64(c.seed), ranges,
            np.zeros((W if algo.use_ef else 1, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)),
            np.zeros((R, d)), np.zeros((R, ss)), np.zeros((R, c.batch_size), np.int64), np.zeros((R, c.batch_size)),
            np.zeros(p.m, np.int8), *bufs, np.zeros(d), np.zeros(d), np.zeros(ss), float(up), float(down), self.acc,
            o["iteration"], o["loss"], o["grad_norm_sq"], o["bits_up"], o["bits_down"], o["stoch_grad_norm_sq"],
            o["resets"])
        self.ranges = R
        self.lam_min, self.lam_iter = [], []
        self.lam_method = None
        self.sosp_seconds = 0.0

    def call(self, k0, k1, path):
        return self.kernel.path(path)(k0, k1, self.b.config.iters, *self.args)

    def shape_key(self):
        c, p = self.b.config, self.b.problem
        return ("ef-sgd", c.problem, p.n, p.d, p.m, c.batch_size, c.algorithm, c.compressor)

    def stops(self):
        every, K = self.b.config.sosp_every, self.b.config.iters
        return range(0, K, every) if every else range(0)

    def checkpoint(self, k):
        from .second_order import lambda_min
        t = time.perf_counter()
        lam, self.lam_method = lambda_min(self.b.problem, self.x)
        self.sosp_seconds += time.perf_counter() - t
        self.lam_min.append(lam)
        self.lam_iter.append(k)

    def collect(self, completed):
        n_rows = int(self.acc[0])
        tr = {name: arr[:n_rows].copy() for name, arr in self.out.items()}
        tr["grad_norm_sq_D"] = tr["grad_norm_sq"]  # D/det(D)^(1/d) = I for D = ηI
        extras = {"stoch_grad_norm_sq": tr.pop("stoch_grad_norm_sq"), "resets": tr.pop("resets").astype(np.int64)}
        if self.lam_iter:
            extras["lambda_min"] = np.array(self.lam_min)
            extras["lambda_min_iter"] = np.array(self.lam_iter, dtype=np.int64)
        G = float(np.mean(tr["grad_norm_sq"][tr["iteration"] < completed])) if n_rows else float("nan")
        return tr, extras, G

    def meta(self):
        c, comp, p = self.b.config, self.b.sketch, self.b.problem
        return {"bits_per_message": comp.bits_up(c.value_bits, c.index_mode), "ranges": self.ranges,
                "f_star": p.f_star, "G_KD_note": "mean ‖∇f‖² over logged iterates (D = ηI)"}

    def final(self, status):
        """λ_min at the final point and the ε-SOSP verdict (when the run finished)."""
        from .second_order import sosp
        c = self.b.config
        if status != "completed":
            return {}
        if not self.lam_iter or self.lam_iter[-1] != c.iters:
            self.checkpoint(c.iters)
        n_rows = int(self.acc[0])
        gn = math.sqrt(self.out["grad_norm_sq"][n_rows - 1])
        return {"sosp": sosp(gn, self.lam_min[-1], c.eps, c.rho), "lambda_min_method": self.lam_method,
                "sosp_seconds": self.sosp_seconds}

def _threads() -> int:
    import numba
    return int(numba.get_num_threads())


__all__ = ["run", "build", "Trace", "Built", "RunConfig", "CgdbenchError"]
