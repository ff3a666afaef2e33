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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__, algorithms, environment, parallel, precompile, stepsizes, store
from .algorithms._common import DIVERGED, Built, loss_warnings
from .config import RunConfig
from .errors import CgdbenchError

MAX_CHUNKS = 200
#: long runs still get chunks short enough for the path choice to follow the machine's load
MAX_CHUNK_ITERS = 1000
#: once a path's cost is known, a chunk runs at least this long (a chunk costs ~8 µs of Python and unboxing:
#: with 200 chunks of 11 a1a iterations, ~30 µs each, that was ~2.5% of the run)
MIN_CHUNK_SECONDS = 2e-3


def build(config: RunConfig, data_dir=None, allow_hash_mismatch: bool = False) -> Built:
    """Load data and build what the config's algorithm needs; raises on any bad input.  On one BLAS thread
    (:func:`cgdbench.parallel.one_blas_thread`: the same L and D on any machine, no stall under load)."""
    with parallel.one_blas_thread():
        return algorithms.get(config.algorithm).factory.build(config, data_dir, allow_hash_mismatch)


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
    extras: dict = field(default_factory=dict)   # the algorithm's own arrays (sgd: stoch_grad_norm_sq, lambda_min, ...)
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
        arrays["D"] = algorithms.get(c.algorithm).factory.stored_D(self.D)
        arrays.update(self.extras)
        return {"attrs": attrs, "arrays": arrays, "run_id": store.run_id(c)}

    def summary(self) -> str:
        return self._format(algorithms.get(self.config.algorithm).factory.summary_rows(self))

    def _format(self, rows) -> str:
        """The method-specific ``rows``, then what every run reports: bits, time, warnings, where saved."""
        m, last = self.meta, self.loss.size > 0
        rows = rows + [
            ("bits sent", f"up {_bits(self.bits_up[-1] if last else 0)}, "
                          f"down {_bits(self.bits_down[-1] if last else 0)}"
                          # an interrupted run stops between logged rows: its counts are those of the last row
                          + (f" (to x^{int(self.iteration[-1])}, the last logged row)"
                             if last and int(self.iteration[-1]) < self.iterations else "")),
            ("wall time", f"{m.get('run_seconds', float('nan')):.3f} s run + "
                          f"{m.get('compile_seconds', float('nan')):.2f} s setup ("
                          + (f"{m['build_seconds']:.2f} s data and stepsize, " if m.get("build_seconds") else "")
                          + ("the rest " if m.get("build_seconds") else "")
                          + f"compile/load; {1e6 * m.get('seconds_per_iter', float('nan')):.1f} µs/iteration)"
                          + (f" + {m['sosp_seconds']:.2f} s second-order checks" if m.get("sosp_seconds") else "")),
        ]
        if m.get("flagged"):
            rows.append(("flagged", "not a normal completion: the loss blew up or rose (see the warnings)"))
        for w in self.meta.get("warnings", []):
            rows.append(("warning", w))
        if self.run_id:
            rows.append(("saved", f"{self.path} : /runs/{self.run_id}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:>{width}}  {v}" for k, v in rows)


def _bits(b: float) -> str:
    b = float(b)
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if b >= scale:
            return f"{b / scale:.3f} {unit} ({int(b)} bits)"
    return f"{int(b)} bits"


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
    build_seconds = 0.0 if built else time.perf_counter() - t_build  # the data and the stepsize
    job = algorithms.get(config.algorithm).factory(b)
    threads = _threads()
    chooser = parallel.PathChooser(threads, key=job.shape_key(), work=job.parallel_work())
    helper = _compile(job, chooser.paths)  # outside the timed loop
    precompile.drain()  # a sweep's helper: what it has not compiled yet is compiled now, not during the timing
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
    final, t_end = {}, None
    stop = _DeferredStop()  # Ctrl-C / SIGTERM take effect between chunks: the counts match the stored rows
    try:
        if 0 in stops:
            job.checkpoint(0)
            paused = time.perf_counter() - t0
        while k <= K:
            path, cap = chooser.pick()
            length = chunk
            per_iter = chooser.cost(path)
            if per_iter > 0:  # the path's cost is known: at least MIN_CHUNK_SECONDS (within MAX_CHUNK_ITERS)
                length = max(chunk, min(MAX_CHUNK_ITERS, int(MIN_CHUNK_SECONDS / per_iter)))
            k_end = min(k + (length if cap is None else min(length, cap)), K + 1)
            i = bisect.bisect_right(stops, k)  # the next checkpoint after k (stops are sorted)
            if i < len(stops) and stops[i] < k_end:
                k_end = stops[i]
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
            stop.check()
            if k in stops and k <= K:
                tp = time.perf_counter()
                job.checkpoint(k)
                paused += time.perf_counter() - tp
        t_end = time.perf_counter()
        stop.restore()  # the final checks (λ_min) can take a while: Ctrl-C there keeps the finished run
        stop.check()
        final = job.final(status)
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", exc
    except Exception as exc:  # a bug: keep what was computed, mark the run failed, re-raise
        status, interrupted = "failed", exc
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    run_seconds = (t_end or time.perf_counter()) - t0 - paused  # the iterations, not the final checks
    if interrupted is not None and k > K:  # cut short in the final checks: every iteration ran
        final = job.final_cut("interrupted during the final second-order check" if status == "interrupted" else
                              f"the final second-order check failed: {type(interrupted).__name__}: {interrupted}")

    completed = min(k, K) if status != "completed" else K
    tr, extras, G_KD = job.collect(completed)
    it_marks = np.array([m[0] for m in marks], dtype=float)
    t_marks = np.array([m[1] for m in marks])
    wall = np.interp(tr["iteration"].astype(float), it_marks, t_marks)
    meta = {
        "dataset": b.problem.dataset_info,
        "det_root": b.D.det_root(), "logdet_D": b.D.logdet(),
        "f_lower": getattr(b.problem, "f_lower", None),
        "stepsize": b.stepsize_info, "compile_seconds": compile_seconds, "build_seconds": build_seconds,
        "compile_helper": helper, "run_seconds": run_seconds,
        "seconds_per_iter": run_seconds / max(completed, 1), "threads": threads, "threading_layer": layer,
        "paths": chooser.report(), "environment": environment.describe(threads, layer),
        "warnings": list(b.stepsize_info.get("warnings", [])) + ([b.problem.dataset_info["label_note"]]
                                                                 if b.problem.dataset_info.get("label_note") else []),
        **job.meta(),
    }
    if status == "failed":
        meta["error"] = f"{type(interrupted).__name__}: {interrupted}"
    if status == "diverged":
        meta["warnings"].append(f"non-finite gradient at iteration {k}: the run diverged")
    loss_meta, loss_warns = loss_warnings(tr["loss"], tr["iteration"], *job.unseen_losses(),
                                          condition_lambda=b.stepsize_info.get("condition_lambda"))
    meta.update(loss_meta)
    meta["warnings"] += loss_warns
    if status == "completed" and loss_meta["unstable"]:
        status = "unstable"  # finished, but the loss rose under a stepsize that violates its condition
    meta.update(final)
    trace = Trace(config, status, tr["iteration"], tr["loss"], tr["grad_norm_sq"], tr["grad_norm_sq_D"],
                  tr["bits_up"].astype(np.int64), tr["bits_down"].astype(np.int64), wall, job.x.copy(), b.D,
                  G_KD, completed, meta, extras)
    if out is not None:
        record = trace.record()
        try:
            trace.run_id = store.write_run(out, record)
            trace.path = str(out)
        except CgdbenchError as exc:  # computed, but the file cannot take it now: never throw the run away
            rescue = store.recovery_path(out)
            trace.run_id = store.write_run(rescue, record)
            trace.path = str(rescue)
            print(f"cgdbench: could not store the run in {str(out)!r} ({exc}); it is saved in {str(rescue)!r} "
                  f"as /runs/{trace.run_id}", file=sys.stderr, flush=True)
    if interrupted is not None:
        interrupted.trace = trace  # the caller can still inspect what was stored
        raise interrupted
    return trace


class _DeferredStop:
    """SIGINT/SIGTERM during the iterations set a flag; :meth:`check` raises KeyboardInterrupt between chunks.

    A signal arriving inside a chunk used to raise wherever Python next ran, possibly after the chunk's rows
    were logged but before the engine counted its iterations: the stored counts lagged the rows.  Only in
    the main thread (signal handlers can be set only there); elsewhere signals behave as before.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.hit = None
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.old[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        if self.hit is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.hit = signum

    def check(self):
        if self.hit is not None:
            raise KeyboardInterrupt

    def restore(self):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        self.old = {}


def _compile(job, paths) -> list[str] | None:
    """Compile (or load from the disk cache) every path the run may take.

    A path a helper process has in hand (a sweep's plan, :func:`plan_compiles`) is waited for and
    loaded from the cache.  When two paths are needed, neither is cached and no helper has them, the
    second (serial, the shorter compile) is compiled by a helper meanwhile (:mod:`cgdbench.precompile`).
    Returns the paths a helper compiled (None: none).
    """
    kernel = job.kernel
    if not hasattr(kernel, "signature"):
        for path in paths:
            job.call(0, 0, path)
        return None
    sigs = {p: job.signature(p) for p in paths}
    own = None
    if (len(paths) == 2 and precompile.enabled() and not precompile.planned(kernel, paths[1], sigs[paths[1]])
            and all(kernel.cached(p, sigs[p]) is False for p in paths)):
        own = precompile.start([(kernel, paths[1], sigs[paths[1]])])
    helped = []
    try:
        for path in paths:
            if precompile.claim(kernel, path, sigs[path]):
                helped.append(path)
            job.call(0, 0, path)  # compiles it here, or loads what the helper compiled
    finally:
        if own is not None:
            own.kill()
    return helped or None


def plan_compiles(builts) -> "precompile.Helper | None":
    """Start a helper compiling, into the disk cache, what runs of ``builts`` (in run order) will compile.

    A sweep calls this with the first Built of each kernel: each one's paths (as :class:`PathChooser`
    would pick them) whose signature is not cached yet, in the order the runs will need them.  The
    helper takes them from the last, this process from the first (:mod:`cgdbench.precompile`), so the
    second core compiles while the first does.  Before the first run is timed, :func:`run` compiles what
    the helper has not started and waits for the rest (``precompile.drain``): no run is timed with a
    compiler on the other core.  None when there is nothing to overlap.
    """
    if not precompile.enabled():
        return None
    threads, needs = _threads(), []
    for b in builts:
        job = algorithms.get(b.config.algorithm).factory(b)
        kernel = job.kernel
        if not hasattr(kernel, "cached"):
            continue
        for path in parallel.PathChooser(threads, work=job.parallel_work()).paths:
            sig = job.signature(path)
            if kernel.cached(path, sig) is False:
                needs.append((kernel, path, sig))
    if len(needs) < 2:
        return None
    return precompile.start(needs[::-1])


def _threads() -> int:
    import numba
    return int(numba.get_num_threads())


__all__ = ["run", "build", "Trace", "Built", "RunConfig", "CgdbenchError"]
