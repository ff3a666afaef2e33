"""Sweeps: a grid of RunConfigs run into one HDF5 file, skipping what is done, and their summary table.

A **cell** is one RunConfig; its id is the run id the store gives it (``store.run_id``:
a readable slug plus a hash of the full config), so the same cell always has the same
id and a sweep run again skips every cell already ``completed`` in the file (``rerun``
forces them).  Cells run

* in-process (default): one interpreter, kernels compiled once, and the data and the
  stepsize built once per distinct setting (cells that differ only in ``seed`` or
  ``log_every`` share one :class:`~cgdbench.engine.Built`);
* on a process pool (``workers=N``), or on a Dask cluster (``scheduler="tcp://..."``, or
  ``dask=True`` with ``workers=N`` for a LocalCluster).

Only this process (the client) writes the HDF5 file; workers return records.  Each
finished cell is written at once, so a sweep killed with SIGKILL loses no finished cell,
and running it again does exactly the unfinished ones.  A failing cell is stored as
``failed`` with its error and the others go on.

Grid files (TOML): top-level keys are RunConfig field names; a list is a grid axis (the
cells are the Cartesian product), anything else a fixed value.  An optional ``[compare]``
table holds ``target`` (the ε² of the summary's "to ε²" columns) and ``skip_incompatible`` (true: leave out
the combinations a config refuses, e.g. ``gd`` with a compressor, with a note; default false: such a cell is an
error naming it)::

    algorithm = ["det-cgd1", "det-cgd2"]
    compressor = "rand-1"
    stepsize = ["diag-inv", "optimal"]
    dataset = "a1a"
    clients = 10
    iters = 2000
    seed = [0, 1, 2]
    [compare]
    target = 1e-2
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import algorithms, store
from .config import RunConfig
from .errors import CgdbenchError, ConfigError, IncompatibleError

#: a grid larger than this needs ``yes=True`` (``--yes``)
MAX_CELLS = 500
#: fields that do not change what ``engine.build`` makes (for an algorithm without ``seeded_x0``)
_NOT_BUILT = ("seed", "log_every")
COMPARE_KEYS = ("target", "skip_incompatible")


@dataclass(frozen=True)
class Cell:
    config: RunConfig

    @property
    def id(self) -> str:
        return store.run_id(self.config)


@dataclass
class Sweep:
    """Cells plus what the summary needs to know about them."""

    name: str
    cells: list
    target: float = 1e-2
    description: str = ""
    notes: list = field(default_factory=list)
    #: what ``compare --plot`` draws (:func:`cgdbench.plot.plot_file` keywords)
    figure: dict = field(default_factory=lambda: {"x": ("iteration",), "ys": ("loss", "grad_norm_sq")})


def default_target(configs) -> tuple[float, str]:
    """The ε² of the "to ε²" columns when none is given, and where it came from: the ``eps2`` (Corollary 1's
    target ε²) every config shares, else 1e-2.  ``configs``: RunConfigs or their dicts."""
    eps2 = {c.get("eps2") if isinstance(c, dict) else c.eps2 for c in configs}
    if len(eps2) == 1 and None not in eps2:
        return float(eps2.pop()), "the ε² (--eps2) every run shares"
    return 1e-2, "the default; --target sets another"


def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def expand(spec: dict, name: str = "grid") -> Sweep:
    """Cells of a grid dict (lists are axes); unknown keys name the valid ones."""
    spec = dict(spec)
    opts = spec.pop("compare", {}) or {}
    if not isinstance(opts, dict):
        raise ConfigError("[compare] must be a table, e.g. [compare] target = 1e-2")
    bad = sorted(set(opts) - set(COMPARE_KEYS))
    if bad:
        raise ConfigError(f"unknown [compare] key(s) {bad}; allowed: {', '.join(COMPARE_KEYS)}")
    known = _fields()
    unknown = sorted(set(spec) - set(known))
    tables = [k for k in unknown if isinstance(spec[k], dict)]
    if tables:
        raise ConfigError(f"unknown table [{tables[0]}]; the only table is [compare] (keys: {', '.join(COMPARE_KEYS)})")
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; RunConfig fields are: {', '.join(known)}")
    axes = {k: v for k, v in spec.items() if isinstance(v, list)}
    empty = [k for k, v in axes.items() if not v]
    if empty:
        raise ConfigError(f"grid axis {empty[0]!r} is an empty list: the grid has no cells")
    fixed = {k: v for k, v in spec.items() if k not in axes}
    skip = opts.get("skip_incompatible", False)
    if not isinstance(skip, bool):
        raise ConfigError(f"[compare] skip_incompatible {skip!r}: must be true or false")
    cells, seen, skipped, repeated = [], set(), [], []
    for combo in itertools.product(*axes.values()):
        try:
            cfg = RunConfig(**fixed, **dict(zip(axes, combo)))
        except IncompatibleError as exc:  # valid values that do not go together (gd with a compressor, ...)
            where = ", ".join(f"{k} = {v!r}" for k, v in zip(axes, combo)) or "its fixed values"
            if skip:
                skipped.append(f"{where}: {exc}")
                continue
            raise ConfigError(f"grid cell ({where}): {exc}; to leave out the combinations that do not fit (e.g. "
                              "an uncompressed method with compressors), set skip_incompatible = true in [compare]"
                              ) from None
        except ConfigError as exc:  # a bad value (a misspelt name, out of range): an error, whatever the flag
            where = ", ".join(f"{k} = {v!r}" for k, v in zip(axes, combo)) or "its fixed values"
            raise ConfigError(f"grid cell ({where}): {exc}") from None
        cell = Cell(cfg)
        if cell.id not in seen:
            seen.add(cell.id)
            cells.append(cell)
        else:
            repeated.append(", ".join(f"{k} = {v!r}" for k, v in zip(axes, combo)))
    target = opts.get("target", default_target([c.config for c in cells])[0] if cells else 1e-2)
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"[compare] target {target!r}: must be a number > 0") from None
    if not (math.isfinite(target) and target > 0):
        raise ConfigError(f"[compare] target {target!r}: must be a number > 0")
    if not cells:
        raise ConfigError(f"no cell of the grid fits ({len(skipped)} left out by skip_incompatible), e.g. "
                          f"{skipped[0]}")
    notes = ([f"skip_incompatible: {len(skipped)} grid cell(s) left out (seeds counted), e.g. {skipped[0]}"]
             if skipped else [])
    if repeated:  # seed = [0, 0], an alias beside its name, a value equal to the default it fills in
        notes.append(f"{len(repeated)} grid combination(s) name a run already in the grid (the same config), so "
                     f"it runs once, e.g. {repeated[0]}")
    return Sweep(name, cells, target, notes=notes)


def load_toml(path) -> Sweep:
    import tomllib
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {str(path)!r}: no such file")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {str(path)!r} is not valid TOML: {exc}") from None
    try:
        return expand(spec, name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"--config {str(path)!r}: {exc}") from None


def check_size(sweep: Sweep, yes: bool = False) -> None:
    n = len(sweep.cells)
    if n == 0:
        raise ConfigError(f"sweep {sweep.name!r} expands to zero cells")
    if n > MAX_CELLS and not yes:
        raise ConfigError(f"sweep {sweep.name!r} expands to {n} cells, more than {MAX_CELLS}; pass --yes to run them")


# --- running -----------------------------------------------------------------
#: the fields a cell's problem is built from (:func:`~cgdbench.algorithms._common.problem_of`)
_PROBLEM_FIELDS = ("problem", "dataset", "clients", "split", "split_seed", "blocks", "lam", "hidden", "dim")


def check_problems(cells, data_dir=None) -> None:
    """Each distinct problem of the cells built once before any runs, and each compressor bound to its
    dimension: a bad dataset, more clients than the data has rows, or k > d is one error naming the cell
    (nothing written), not a failed record per cell."""
    from . import compressors
    from .algorithms._common import problem_of
    built, seen = {}, set()
    for cell in cells:
        c = cell.config
        key = tuple(getattr(c, f) for f in _PROBLEM_FIELDS)
        sketch = algorithms.get(c.algorithm).contract == "sketch"
        if (key, c.compressor, sketch) in seen:
            continue
        seen.add((key, c.compressor, sketch))
        what = "problem"
        try:
            if key not in built:
                built[key] = None
                p = problem_of(c, data_dir)
                built[key] = (p.d, p.block_ptr)  # not the problem: a grid of many would hold every data copy
                del p
            if built[key] is None:
                continue
            d, block_ptr = built[key]
            what = "problem and compressor"
            if sketch:  # k within each block; diag(L) only sets importance-rand-1's default probabilities
                compressors.make(c.compressor, d, block_ptr, np.ones(d))
            else:
                compressors.make_vector(c.compressor, d)
        except CgdbenchError as exc:
            same = sum(tuple(getattr(o.config, f) for f in _PROBLEM_FIELDS) == key
                       and (what == "problem" or o.config.compressor == c.compressor) for o in cells)
            hint = ("; over datasets of different d, a fraction (rand-k:0.1) fits each" if what != "problem"
                    and "out of range" in str(exc) else "")
            raise ConfigError(f"{exc} (cell {cell.id}" + (f" and {same - 1} more with its {what}" if same > 1 else "")
                            + f"; no cell was run){hint}") from None
        except Exception:  # noqa: BLE001 — not bad input: the cell's own run records it, the others go on
            continue


def _build_key(cfg: RunConfig):
    """Cells with the same key share one Built; ``None``: never shared."""
    d = cfg.to_dict()
    if algorithms.get(cfg.algorithm).traits.get("seeded_x0"):  # the saddles' x0 depends on the seed
        return None
    for k in _NOT_BUILT:
        d.pop(k)
    return json.dumps(d, sort_keys=True)


class _InProcess:
    """Runs cells here, reusing one Built per distinct setting."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.built = {}
        #: cell id -> (Built, seconds it took), built ahead by :meth:`plan`
        self.ahead = {}

    def plan(self, cells) -> None:
        """Build the first cell of each kernel (per algorithm and problem) ahead, and start a helper compiling
        what their runs will compile (:func:`cgdbench.engine.plan_compiles`); those cells reuse the Built."""
        from . import precompile
        from .engine import build, plan_compiles
        if not precompile.enabled():
            return
        firsts, seen = [], set()
        for cell in cells:
            kind = (algorithms.get(cell.config.algorithm).factory, cell.config.problem)
            if kind in seen:
                continue
            seen.add(kind)
            t = time.perf_counter()
            try:
                b = build(cell.config, data_dir=self.data_dir)
            except Exception:  # noqa: BLE001 — its run reports it
                continue
            self.ahead[cell.id] = (b, time.perf_counter() - t)
            firsts.append(b)
        if len(firsts) > 1:
            plan_compiles(firsts)

    def run(self, cell: Cell):
        from .engine import build, run
        key = _build_key(cell.config)
        t = time.perf_counter()
        b, ahead_seconds = self.ahead.pop(cell.id, (None, 0.0))  # built by plan(), or
        if b is None and key is not None and key in self.built:  # the previous cell's, or
            b = dataclasses.replace(self.built[key], config=cell.config)
        elif b is None:  # its own
            b = build(cell.config, data_dir=self.data_dir)
        if key is not None:
            self.built = {key: b}  # run_sweep sends the cells grouped by setting: keep the last one
        build_seconds = time.perf_counter() - t + ahead_seconds
        try:
            tr = run(cell.config, built=b)
        except KeyboardInterrupt as exc:  # what the interrupted cell computed, for run_sweep to store
            if getattr(exc, "trace", None) is not None:
                exc.record = exc.trace.record()
            raise
        # run() timed only the kernels' load as setup; the data and stepsize (or their reuse) came first
        tr.meta["build_seconds"] = build_seconds
        tr.meta["compile_seconds"] += build_seconds
        return tr.record()


def _guarded(runner: _InProcess, cell: Cell) -> dict:
    """The cell's record, or a failure record: a failing cell is recorded and the sweep goes on."""
    try:
        return runner.run(cell)
    except Exception as exc:  # noqa: BLE001 — bad input or a bug, in this cell only
        return store.failed_record(cell.config, f"{type(exc).__name__}: {exc}")


def run_cell(config_json: str, data_dir=None) -> dict:
    """One cell in a worker (process pool or Dask): the record to store, or a failure record."""
    return _guarded(_worker_runner(data_dir), Cell(RunConfig.from_dict(json.loads(config_json))))


_RUNNER = None


def _worker_runner(data_dir):
    global _RUNNER
    if _RUNNER is None or _RUNNER.data_dir != data_dir:
        _RUNNER = _InProcess(data_dir)
    return _RUNNER


def _pool_init():
    import numba
    numba.set_num_threads(1)  # N worker processes on the machine's cores: one thread each


def run_sweep(sweep: Sweep, out, *, rerun: bool = False, workers: int = 1, scheduler: str | None = None,
              dask: bool = False, data_dir=None, progress: bool = True, log=None) -> dict:
    """Run the sweep's unfinished cells into ``out``; returns counts (done, skipped, failed)."""
    from . import parallel, precompile
    log = log or (lambda msg: print(msg, file=sys.stderr))
    store.check_writable(out)
    parallel.path_setting()  # bad thread settings: one error now, not one failed record per cell
    parallel.check_threading_layer()
    if workers < 1:
        raise ConfigError(f"--workers {workers}: need at least 1")
    if dask and scheduler:
        raise ConfigError(f"--dask starts a local cluster and --scheduler {scheduler} connects to one: give one of "
                          "them")
    done = store.completed_ids(out) if Path(out).exists() else set()
    todo = [c for c in sweep.cells if rerun or c.id not in done]
    skipped = len(sweep.cells) - len(todo)
    counts = {"cells": len(sweep.cells), "skipped": skipped, "ran": 0, "failed": 0, "diverged": 0, "flagged": 0,
              "seconds": 0.0}
    if not scheduler:  # a remote cluster's workers find the data themselves, where this client may not
        check_problems(todo, data_dir)
    log(f"{sweep.name}: {len(sweep.cells)} cells, {skipped} already completed in {out}"
        + (" (skipped; --rerun runs them again)" if skipped else "") + f", {len(todo)} to run")
    if not todo:
        return counts
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="cell", desc=sweep.name, dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()

    def store_one(cell, record):
        store.write_run(out, record, replace=rerun)
        counts["ran"] += 1
        counts["diverged"] += record["attrs"]["status"] in ("diverged", "unstable")
        counts["flagged"] += bool(json.loads(record["attrs"].get("meta", "{}")).get("flagged"))
        if record["attrs"]["status"] == "failed":
            counts["failed"] += 1
            log(f"cell {cell.id} failed: {json.loads(record['attrs']['meta']).get('error', '?')}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(cell.id[:60])

    try:
        if scheduler or dask:
            _run_dask(todo, store_one, scheduler, workers, data_dir)
        elif workers > 1:
            _run_pool(todo, store_one, workers, data_dir)
        else:
            runner = _InProcess(data_dir)
            # cells of one setting in a row, so the one Built the runner keeps serves them all
            order = sorted(todo, key=lambda c: _build_key(c.config) or "")
            runner.plan(order)
            for cell in order:
                if bar is not None:
                    bar.set_postfix_str(cell.id[:60])
                try:
                    record = _guarded(runner, cell)
                except KeyboardInterrupt as exc:  # store the interrupted cell (a resume runs it again)
                    if getattr(exc, "record", None) is not None:
                        store_one(cell, exc.record)
                    raise
                store_one(cell, record)
    finally:
        precompile.stop_all()  # a helper still compiling for cells that failed
        if bar is not None:
            bar.close()
    counts["seconds"] = time.perf_counter() - t0
    return counts


def _result(future, cell) -> dict:
    """A worker's record; a worker that died (out of memory, a crash) is a failed cell, not a failed sweep."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 — BrokenProcessPool, KilledWorker, ...
        return store.failed_record(cell.config, f"worker lost: {type(exc).__name__}: {exc}")


def _run_pool(todo, store_one, workers, data_dir):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # spawn: GNU OpenMP is not fork-safe once Numba's pool has started
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init)
    try:
        futs = {ex.submit(run_cell, c.config.to_json(), data_dir): c for c in todo}
        for f in as_completed(futs):
            store_one(futs[f], _result(f, futs[f]))
    except BaseException:
        # Ctrl-C / SIGTERM: what is stored stays; queued cells are dropped, running ones ended.  The processes are
        # taken before shutdown (which drops the executor's table of them); one that outlives SIGTERM (its cell
        # stops only between chunks, then blocks writing a result nobody reads) is killed, or the exit waits on it
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        raise
    ex.shutdown()


def connect(scheduler: str | None, workers: int, timeout: float = 5.0):
    """A Dask client: the cluster at ``scheduler``, or a LocalCluster of ``workers`` processes."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("Dask is not installed: pip install 'dask[distributed]' (or the README's install "
                          "command, which includes it)") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout), None
        except ValueError as exc:
            raise CgdbenchError(f"--scheduler {scheduler!r} is not a scheduler address ({exc}); "
                                "write tcp://HOST:PORT") from None
        except (OSError, TimeoutError) as exc:
            raise CgdbenchError(f"--scheduler {scheduler}: no Dask scheduler answered within {timeout:g} s "
                                f"({type(exc).__name__}: {exc})") from None
    import logging
    # silence_logs: a Ctrl-C cancels the running cells, and each worker would log that as a WARNING (its
    # CancelledError); errors still show
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _run_dask(todo, store_one, scheduler, workers, data_dir):
    from dask.distributed import as_completed
    client, cluster = connect(scheduler, workers)
    try:
        client.run(_pool_init)
        futs = {client.submit(run_cell, c.config.to_json(), data_dir, pure=False, key=f"cell-{c.id}"): c
                for c in todo}
        try:
            for f in as_completed(list(futs)):
                store_one(futs[f], _result(f, futs[f]))
        except BaseException:
            client.cancel(list(futs))
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- summary -----------------------------------------------------------------
METHOD_KEYS = ("problem", "dataset", "clients", "algorithm", "compressor", "stepsize")


def _to_target(rec: dict, target: float):
    from .metrics import to_target
    k, up, down = to_target(rec["iteration"], rec["grad_norm_sq_D"], rec["bits_up"], rec["bits_down"], target)
    return (math.nan,) * 3 if k < 0 else (float(k), float(up), float(down))


def summary_rows(path, target: float, ids=None) -> list[dict]:
    """One row per method (config without seed), medians and 10-90% quantiles over seeds (diverged runs count)."""
    groups = store.group_runs(path, statuses=store.DONE, ids=ids)
    # fields that tell methods on one problem apart beyond METHOD_KEYS (noise, lr, blocks, ...)
    by_problem: dict = {}
    for k in groups:
        c = json.loads(k)
        by_problem.setdefault(c["problem"], []).append(c)
    varying = {p: sorted(k for k in cs[0] if k not in METHOD_KEYS and len({json.dumps(c.get(k)) for c in cs}) > 1)
               for p, cs in by_problem.items()}
    rows = []
    for key, recs in groups.items():
        cfg = json.loads(key)
        # from a saddle the gradient starts at ~0, so "G_k <= ε²" says nothing there: det-CGD runs only
        to = np.array([_to_target(r, target) if _full_gradient(cfg)
                       else (math.nan,) * 3 for r in recs])
        vals = {
            "final_loss": [r["loss"][-1] for r in recs],
            "final_grad_norm_sq": [r["grad_norm_sq"][-1] for r in recs],
            "G_KD": [r["G_KD"] for r in recs],
            "iters_to_target": to[:, 0], "bits_up_to_target": to[:, 1], "bits_down_to_target": to[:, 2],
            "us_per_iter": [1e6 * r["meta"]["seconds_per_iter"] for r in recs],
            "setup_s": [r["meta"].get("compile_seconds", math.nan) for r in recs],
            # classifiers: the held-out accuracy at the last logged row
            "final_test_accuracy": [r["test_accuracy"][-1] if "test_accuracy" in r and r["test_accuracy"].size
                                    else math.nan for r in recs],
        }
        row = {k: cfg.get(k) for k in METHOD_KEYS}
        row["also"] = {k: cfg.get(k) for k in varying[cfg["problem"]] if cfg.get(k) is not None}
        row["dataset"] = recs[0]["meta"].get("dataset", {}).get("name", cfg.get("dataset"))
        row["seeds"] = len(recs)
        row["log_every"] = cfg.get("log_every")
        row["diverged"] = sum(r["status"] == "diverged" for r in recs)
        row["unstable"] = sum(r["status"] == "unstable" for r in recs)
        row["reached"] = int(np.isfinite(to[:, 0]).sum())
        # each distinct run warning once, with the number of seeds that gave it (the summary prints them)
        warns: dict = {}
        for r in recs:
            for w in dict.fromkeys(r["meta"].get("warnings", [])):  # a seed counts once per warning
                warns[w] = warns.get(w, 0) + 1
        row["warnings"] = [[w, n] for w, n in warns.items()]
        # compressed SGD on the saddle problems: how many seeds ended at an ε-SOSP (of those checked)
        checks = [r["meta"]["sosp"] for r in recs if isinstance(r["meta"].get("sosp"), dict)]
        row["sosp"] = [int(sum(bool(s["is_sosp"]) for s in checks)), len(checks)]
        # why the others are not: the worst first-order ratio ‖∇f‖/ε, and how many fail the λ_min condition
        missed = [s for s in checks if not s["is_sosp"]]
        row["sosp_missed"] = {"grad_over_eps": max((s["grad_norm"] / s["eps"] for s in missed
                                                    if not s["first_order"]), default=None),
                              "lambda_min_fails": sum(not s["second_order"] for s in missed)} if missed else None
        for k, v in vals.items():
            v = np.asarray(v, dtype=float)
            fin = v[np.isfinite(v)]
            row[k] = (tuple(float(q) for q in np.quantile(fin, [0.5, 0.1, 0.9])) if fin.size
                      else (math.nan, math.nan, math.nan))
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[k]) for k in METHOD_KEYS) + tuple(str(v) for v in r["also"].values()))
    return rows


def _q(v, fmt) -> str:
    med, lo, hi = v
    if not math.isfinite(med):
        return "—"
    if lo == hi:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(lo, fmt)}–{format(hi, fmt)}]"


#: distinct warnings the summary prints per method (the rest: ``cgdbench report``)
SHOWN_WARNINGS = 3


def _method(r) -> str:
    return f"{r['algorithm']} | {r['compressor']} | {r['stepsize']}" + "".join(f", {k}={v}"
                                                                             for k, v in r.get("also", {}).items())


def _warning_lines(rows) -> list[str]:
    lines = []
    for r in rows:
        ws = r.get("warnings") or []
        for w, n in ws[:SHOWN_WARNINGS]:
            lines.append(f"  {_method(r)}: {w}" + (f" ({n}/{r['seeds']} seeds)" if r["seeds"] > 1 else ""))
        if len(ws) > SHOWN_WARNINGS:
            lines.append(f"  {_method(r)}: {len(ws) - SHOWN_WARNINGS} more distinct warning(s): cgdbench report")
    return lines


def _full_gradient(r) -> bool:
    """A full-gradient method's row (its "to ε²" columns mean something; from a saddle they do not)."""
    entry = algorithms.REGISTRY.find(r.get("algorithm"))
    return entry is None or entry.oracle != "minibatch"


def _sosp_missed(r) -> str:
    m = r.get("sosp_missed")
    if not m:
        return ""
    why = ([f"‖∇f‖ up to {m['grad_over_eps']:.2g}ε"] if m["grad_over_eps"] is not None else []) + \
        ([f"λ_min < −√(ρε) in {m['lambda_min_fails']}"] if m["lambda_min_fails"] else [])
    return f" ({', '.join(why)})"


def format_summary(rows, target: float, warnings: bool = True) -> str:
    """The summary table, a footnote on its columns and (``warnings``) each distinct run warning once."""
    table, note = summary_table(rows, target)
    # the context columns every row shares go under the table (the console table was ~250 characters wide)
    shared = [i for i, c in enumerate(table[0]) if c in ("data", "seeds") and len(table) > 2
              and len({row[i] for row in table[1:]}) == 1]
    head = "; ".join(f"{table[0][i]}: {table[1][i]}" for i in shared)
    table = [[x for i, x in enumerate(row) if i not in shared] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines) + (f"\nevery row: {head}" if head else "") + "\n" + note
    warned = _warning_lines(rows) if warnings else []
    return text + ("\nwarnings (each distinct one once):\n" + "\n".join(warned) if warned else "")


def summary_table(rows, target: float) -> tuple[list[list[str]], str]:
    """The summary's cells (a header row, then one row per method) and the footnote on its columns: the text
    table of :func:`format_summary` and the report's HTML table."""
    cols = [("method", _method),
            ("data", lambda r: f"{r['problem']} / {r['dataset']} / n={r['clients']}"),
            ("seeds", lambda r: f"{r['seeds']}" + (f" ({r['diverged']} diverged)" if r.get("diverged") else "")
             + (f" ({r['unstable']} unstable)" if r.get("unstable") else "")),
            ("final loss", lambda r: _q(r["final_loss"], ".6g")),
            ("final ‖∇f‖²", lambda r: _q(r["final_grad_norm_sq"], ".3e")),
            *([("test accuracy", lambda r: _q(r.get("final_test_accuracy", (math.nan,) * 3), ".4f"))]
              if any(math.isfinite(r.get("final_test_accuracy", (math.nan,))[0]) for r in rows) else []),
            ("G_K,D", lambda r: _q(r["G_KD"], ".3e")),
            # "to ε²" is a full-gradient method's column (from a saddle ‖∇f‖ starts at ~0); ε-SOSP the saddles'
            *([(f"iters to ε²={target:g}",
                lambda r: _q(r["iters_to_target"], ".0f") + f" ({r['reached']}/{r['seeds']})"),
               ("bits up to ε²", lambda r: _q(r["bits_up_to_target"], ".3g")),
               ("bits down to ε²", lambda r: _q(r["bits_down_to_target"], ".3g"))]
              if any(map(_full_gradient, rows)) else []),
            *([("ε-SOSP (seeds)", lambda r: f"{r['sosp'][0]}/{r['sosp'][1]}{_sosp_missed(r)}"
                 if r.get("sosp", [0, 0])[1] else "—")]
              if any(r.get("sosp", [0, 0])[1] for r in rows) else []),
            ("µs/iter", lambda r: _q(r["us_per_iter"], ".1f")),
            ("setup s", lambda r: _q(r["setup_s"], ".2f"))]
    table = [[c for c, _ in cols]] + [[f(r) for _, f in cols] for r in rows]
    to = (f"\"to ε²\": first logged iteration where the running mean of ‖∇f‖²_D (G_k,D when every iterate is "
          f"logged) is <= {target:g}, (reached/seeds); " if any(map(_full_gradient, rows)) else "")
    if to and any(_full_gradient(r) and (r.get("log_every") or 1) > 1 for r in rows):
        to += ("with --log-every L > 1 that mean is over the logged rows only (x⁰ weighs about L times more than "
               "in G_K,D, so G_K,D can be below ε² with no \"to ε²\"); ")
    sosp = ("ε-SOSP: seeds whose final second-order check passed / seeds checked, in brackets why the others "
            "fail (each run's summary has the values); "
            if any(r.get("sosp", [0, 0])[1] for r in rows) else "")
    return table, (f"median [10–90%] over seeds; {to}{sosp}setup: data, stepsize and kernel compile or cache load, "
                   "paid by the first cell of a setting (the others reuse them); a kernel compiles once per machine, "
                   "so a first run's compile lands on the cell that first waits for it")
