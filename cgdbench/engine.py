"""Engine: build the arrays a config describes, run the jitted loop, return a Trace.

The K iterations run inside the jitted kernel in a few hundred chunks; between
chunks Python only advances the progress bar and reads the clock (the per-row
``wall_time`` is interpolated linearly inside a chunk).  A Ctrl-C or SIGTERM
between chunks ends the run as ``interrupted`` with everything computed so far.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__, algorithms, compressors, data, problems, stepsizes, store
from .algorithms.det_cgd import DIVERGED, client_ranges, det_cgd_chunk
from .config import RunConfig
from .errors import CgdbenchError

MAX_CHUNKS = 200


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
    ds = data.load(config.dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    problem = problems.get(config.problem)(ds, lam=config.lam, clients=config.clients, split=config.split,
                                          split_seed=config.split_seed, blocks=config.blocks)
    L = problem.smoothness()
    sketch = compressors.make(config.compressor, problem.d, problem.block_ptr, np.diag(L))
    D, info = stepsizes.build(config.stepsize, config.family, sketch, L, problem.block_ptr)
    return Built(config, problem, sketch, D, L, info, problem.x0(config.x0))


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
    run_id: str | None = None
    path: str | None = None

    def record(self) -> dict:
        c = self.config
        attrs = {
            "config": c.to_json(), "status": self.status, "package_version": __version__,
            "git_commit": store.git_commit(), "created": store.now(), "D_kind": self.D.kind,
            "G_KD": self.G_KD, "iterations_completed": self.iterations,
            "meta": json.dumps(self.meta, sort_keys=True, default=str),
        }
        arrays = {k: getattr(self, k) for k in store.PER_ITERATION}
        arrays["x_final"] = self.x_final
        arrays["D"] = store.stepsize_array(self.D)
        slug = f"{c.algorithm}.{c.compressor}.{c.stepsize}.n{c.clients}.s{c.seed}".replace("/", "_")
        return {"attrs": attrs, "arrays": arrays, "slug": slug}

    def summary(self) -> str:
        c = self.config
        rows = [
            ("run", f"{c.algorithm} | {c.compressor} | stepsize {c.stepsize} ({self.D.kind}) | "
                    f"{c.clients} client(s) | seed {c.seed}"),
            ("problem", f"{c.problem} on {self.meta.get('dataset', {}).get('name', '?')} "
                        f"(m={self.meta.get('dataset', {}).get('rows', '?')}, d={self.x_final.size}), λ={c.lam:g}"),
            ("status", f"{self.status} after {self.iterations} of {c.iters} iterations"),
            ("final loss", f"{self.loss[-1]:.10g}" if self.loss.size else "n/a"),
            ("‖∇f‖²", f"{self.grad_norm_sq[-1]:.6e}" if self.loss.size else "n/a"),
            ("G_{K,D}", f"{self.G_KD:.6e}   {self._theorem1()}"),
            ("bits sent", f"up {_bits(self.bits_up[-1] if self.loss.size else 0)}, "
                          f"down {_bits(self.bits_down[-1] if self.loss.size else 0)}"),
            ("wall time", f"{self.meta.get('run_seconds', float('nan')):.3f} s run + "
                          f"{self.meta.get('compile_seconds', float('nan')):.2f} s compile/load "
                          f"({1e6 * self.meta.get('seconds_per_iter', float('nan')):.1f} µs/iteration)"),
        ]
        for w in self.meta.get("warnings", []):
            rows.append(("warning", w))
        if self.run_id:
            rows.append(("saved", f"{self.path} : /runs/{self.run_id}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:>{width}}  {v}" for k, v in rows)


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
    b = built or build(config, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    p, sk, D = b.problem, b.sketch, b.D
    K, d, n = config.iters, p.d, p.n
    algo = algorithms.get(config.algorithm)

    ranges = client_ranges(n)
    R = ranges.size - 1
    x = b.x0.copy()
    rows = _rows(K, config.log_every)
    out_arrays = {k: np.zeros(rows, dtype=np.int64 if k == "iteration" else np.float64)
                  for k in store.PER_ITERATION if k != "wall_time"}
    acc = np.zeros(4)
    down = {"per-client": n * d, "once": d, "none": 0}[config.downlink] * config.value_bits
    args_static = (
        config.log_every, algo.family_code, x, *p.kernel_data(), *sk.kernel_args(), np.uint64(config.seed),
        *D.kernel_args(), D.det_root(), ranges,
        np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d)), np.zeros((R, d), dtype=np.int8),
        np.zeros((R, d), dtype=np.int64), np.zeros((R, d)), np.zeros(R), np.zeros(R, dtype=np.int64),
        np.zeros(d), np.zeros(d), np.zeros(d), np.zeros((R, p.max_rows)),
        float(config.value_bits), float(sk.index_bits(config.index_mode)), float(down), acc,
        out_arrays["iteration"], out_arrays["loss"], out_arrays["grad_norm_sq"], out_arrays["grad_norm_sq_D"],
        out_arrays["bits_up"], out_arrays["bits_down"])

    def call(k0, k1):
        return det_cgd_chunk(k0, k1, K, *args_static)

    call(0, 0)  # compile (or load from cache) outside the timed loop
    compile_seconds = time.perf_counter() - t_build

    chunk = max(1, math.ceil((K + 1) / MAX_CHUNKS))
    status, k = "completed", 0
    marks = [(0, 0.0)]  # (iteration reached, seconds)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=K, unit="it", desc=config.algorithm, leave=False, dynamic_ncols=True)
    interrupted = None
    t0 = time.perf_counter()
    try:
        while k <= K:
            code, k_next = call(k, min(k + chunk, K + 1))
            marks.append((k_next, time.perf_counter() - t0))
            if bar is not None:
                bar.update(min(k_next, K) - min(k, K))
            k = k_next
            if code == DIVERGED:
                status = "diverged"
                break
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", exc
    except Exception as exc:  # a bug: keep what was computed, mark the run failed, re-raise
        status, interrupted = "failed", exc
    finally:
        if bar is not None:
            bar.close()
    run_seconds = time.perf_counter() - t0

    n_rows = int(acc[3])
    completed = min(k, K) if status != "completed" else K
    tr = {name: arr[:n_rows].copy() for name, arr in out_arrays.items()}
    it_marks = np.array([m[0] for m in marks], dtype=float)
    t_marks = np.array([m[1] for m in marks])
    wall = np.interp(tr["iteration"].astype(float), it_marks, t_marks)
    meta = {
        "dataset": p.dataset.describe(), "det_root": D.det_root(), "logdet_D": D.logdet(),
        "f_lower": getattr(p, "f_lower", None),
        "stepsize": b.stepsize_info, "compile_seconds": compile_seconds, "run_seconds": run_seconds,
        "seconds_per_iter": run_seconds / max(completed, 1), "index_bits_per_message": sk.index_bits(config.index_mode),
        "expected_nnz_per_message": sk.expected_nnz(), "ranges": R, "threads": _threads(),
        "warnings": list(b.stepsize_info.get("warnings", [])),
    }
    if status == "failed":
        meta["error"] = f"{type(interrupted).__name__}: {interrupted}"
    if status == "diverged":
        meta["warnings"].append(f"non-finite gradient at iteration {k}: the run diverged")
    trace = Trace(config, status, tr["iteration"], tr["loss"], tr["grad_norm_sq"], tr["grad_norm_sq_D"],
                  tr["bits_up"].astype(np.int64), tr["bits_down"].astype(np.int64), wall, x.copy(), D,
                  float(acc[0] / completed) if completed else float("nan"), completed, meta)
    if out is not None:
        trace.run_id = store.write_run(out, trace.record())
        trace.path = str(out)
    if interrupted is not None:
        interrupted.trace = trace  # the caller can still inspect what was stored
        raise interrupted
    return trace


def _threads() -> int:
    import numba
    return int(numba.get_num_threads())


__all__ = ["run", "build", "Trace", "Built", "RunConfig", "CgdbenchError"]
