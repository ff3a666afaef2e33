"""HDF5 results store: one group per run under ``/runs/<run_id>``.

Layout (see README, "Results file"):

* attributes: ``config`` (JSON), ``status`` (completed/diverged/unstable/interrupted/failed),
  ``package_version``, ``git_commit``, ``created``, ``D_kind``, ``G_KD``, ``meta`` (JSON)
* per logged iteration: ``iteration``, ``loss``, ``grad_norm_sq``, ``grad_norm_sq_D``,
  ``bits_up``, ``bits_down`` (cumulative), ``wall_time``
* ``x_final``; ``D`` — the stepsize matrix used (d×d for d <= 2000, else its
  diagonal, or the scalar γ as a 0-d dataset)

Writes are serialised by a lock file next to the results file; a run is written
under a hidden name and renamed when complete, so readers never see half a run
and an existing file is only ever appended to.  If another process holds the
HDF5 file open (HDF5's own file lock), writing fails with a clear error.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock, Timeout

from .errors import StoreError

SCHEMA = 1
STATUSES = ("completed", "diverged", "unstable", "interrupted", "failed")
#: statuses a sweep does not run again (interrupted and failed cells it does); ``unstable``: finished, but the
#: loss rose above its start under a stepsize that violates its condition
DONE = ("completed", "diverged", "unstable")
PER_ITERATION = ("iteration", "loss", "grad_norm_sq", "grad_norm_sq_D", "bits_up", "bits_down", "wall_time")
DENSE_D_LIMIT = 2000
LOCK_TIMEOUT = 60.0


def check_writable(path) -> Path:
    """Fail early (before any computation) if ``path`` cannot take a run.

    An existing file is opened and checked as a cgdbench results file (schema, ``/runs`` a group), so a
    damaged, truncated or foreign file is refused before the run, not after it; its lock file must not be
    a symbolic link (a writer would follow it).
    """
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise StoreError(f"output directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"output directory {str(parent)!r} is not writable")
    lock = Path(str(path) + ".lock")
    if lock.is_symlink():
        raise StoreError(f"lock file {str(lock)!r} is a symbolic link (to {os.readlink(lock)!r}); cgdbench does not "
                         "follow it: remove the link and retry")
    if lock.exists() and not lock.is_file():
        raise StoreError(f"lock file {str(lock)!r} exists and is not a file; remove it and retry")
    if path.exists():
        if path.is_dir():
            raise StoreError(f"output path {str(path)!r} is a directory")
        if not os.access(path, os.W_OK):
            raise StoreError(f"output file {str(path)!r} is not writable")
        if path.stat().st_size:
            if not h5py.is_hdf5(path):
                raise StoreError(f"output file {str(path)!r} exists and is not an HDF5 file; refusing to touch it")
            with _open(path, "r") as f:
                _runs_group(f, path)
    return path


def recovery_path(path) -> Path:
    """Where a run goes when ``path`` cannot take it at the end: ``NAME.recovered.h5`` beside it."""
    path = Path(path)
    return path.with_name(path.name.rsplit(".", 1)[0] + ".recovered.h5")


def _is_lock_error(exc) -> bool:
    """HDF5's "unable to lock file" (another process holds it), not e.g. "truncated file ... sblock"."""
    msg = str(exc).lower()
    return isinstance(exc, BlockingIOError) or "unable to lock" in msg or "errno = 11" in msg


#: how long an open waits for another process's HDF5 file lock (a reader glancing at a sweep's file)
OPEN_RETRY_SECONDS = 10.0


def _open(path: Path, mode: str):
    if mode == "r" and not Path(path).is_file():
        raise StoreError(f"results file {str(path)!r} does not exist" if not Path(path).exists()
                         else f"{str(path)!r} is not a file")
    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    waited = False
    while True:
        try:
            return h5py.File(path, mode)
        except (BlockingIOError, OSError) as exc:
            if not _is_lock_error(exc):
                if "truncated" in str(exc).lower():
                    raise StoreError(f"{str(path)!r} is truncated or damaged (HDF5: {exc}); move it away and use "
                                     "another file (runs are only ever appended, so a copy may hold earlier runs)"
                                     ) from None
                raise StoreError(f"cannot open {str(path)!r} as HDF5: {exc}") from None
            if not waited and mode != "r":
                waited = True
                print(f"cgdbench: {str(path)!r} is open in another process; waiting up to {OPEN_RETRY_SECONDS:g} s",
                      file=sys.stderr, flush=True)
            if time.monotonic() >= deadline:
                raise StoreError(f"{str(path)!r} is open in another process (HDF5 file lock, waited "
                                 f"{OPEN_RETRY_SECONDS:g} s); close it there and retry") from None
            time.sleep(0.05)


def _runs_group(f: h5py.File, path, create: bool = False):
    """The file's ``/runs`` group after checking it is ours: same schema, ``/runs`` a group.

    Checked before anything is written, so a foreign file is never modified.
    """
    schema = f.attrs.get("schema")
    if schema is not None and int(schema) != SCHEMA:
        raise StoreError(f"{str(path)!r} holds results of schema version {int(schema)}; this cgdbench reads and "
                         f"writes schema {SCHEMA}: use the cgdbench version that wrote it, or another file")
    runs = f.get("runs")
    if runs is not None and not isinstance(runs, h5py.Group):
        raise StoreError(f"{str(path)!r} is not a cgdbench results file: its /runs is a {type(runs).__name__}, "
                         "not a group; use another file")
    if runs is None and create:
        f.attrs["schema"] = SCHEMA
        runs = f.create_group("runs")
    elif create:
        f.attrs.setdefault("schema", SCHEMA)
    return runs if runs is not None else {}


def run_id(config) -> str:
    """The id a RunConfig is stored under: a readable slug and a hash of the full config.

    The same config always gets the same id, which is what lets a sweep skip what is done.
    """
    c = config
    slug = f"{c.algorithm}.{c.compressor}.{c.stepsize}.n{c.clients}.s{c.seed}".replace("/", "_")
    return f"{slug}.{hashlib.sha256(c.to_json().encode()).hexdigest()[:10]}"


def failed_record(config, error: str) -> dict:
    """What a cell that raised is stored as: its config, status ``failed``, the error; no arrays."""
    from . import __version__
    from .environment import describe
    meta = {"error": error, "environment": describe(), "warnings": []}
    attrs = {"config": config.to_json(), "status": "failed", "package_version": __version__,
             "git_commit": meta["environment"]["git_commit"], "created": now(), "G_KD": float("nan"),
             "iterations_completed": 0, "meta": json.dumps(meta, sort_keys=True, default=str)}
    return {"attrs": attrs, "arrays": {}, "run_id": run_id(config)}


def write_run(path, record: dict, replace: bool = False) -> str:
    """Append one run; returns its id.  ``record`` is :meth:`cgdbench.engine.Trace.record`.

    A config already stored: a failed or interrupted earlier run (or, with ``replace``,
    a completed or diverged one, unless the new run failed) is replaced; otherwise the
    new run is stored as a deliberate repeat ``<id>.rN`` with attribute ``repeat_of``
    (summaries and plots count a seed once).  The old run is renamed away before it is
    deleted, so a crash in between keeps one of the two.
    """
    path = check_writable(path)
    try:
        with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT):
            with _open(path, "a") as f:
                runs = _runs_group(f, path, create=True)
                for stale in [k for k in runs if k.startswith(".")]:  # a writer that died mid-run
                    kept = stale[1:-len(".replaced")] if stale.endswith(".replaced") else None
                    if kept and kept not in runs:  # died between moving the old run away and the new one in
                        runs.move(stale, kept)
                    else:
                        del runs[stale]
                base = record["run_id"]
                attrs = dict(record["attrs"])
                target, old = base, None
                if base in runs:
                    finished = runs[base].attrs.get("status") in DONE
                    if not finished or (replace and attrs["status"] != "failed"):
                        old = base
                    else:
                        n = 2
                        while f"{base}.r{n}" in runs:
                            n += 1
                        target = f"{base}.r{n}"
                        attrs["repeat_of"] = base
                tmp = runs.create_group(f".{target}.partial")
                for key, value in attrs.items():
                    tmp.attrs[key] = value
                for key, value in record["arrays"].items():
                    tmp.create_dataset(key, data=value)
                if old is not None:
                    runs.move(old, f".{old}.replaced")
                runs.move(tmp.name.rsplit("/", 1)[1], target)
                if old is not None:
                    del runs[f".{old}.replaced"]
                f.flush()
    except Timeout:
        raise StoreError(f"{str(path)!r} is locked by another cgdbench writer "
                         f"(waited {LOCK_TIMEOUT:.0f} s for {str(path)}.lock)") from None
    except OSError as exc:  # the lock file itself (a link, a directory, permissions)
        raise StoreError(f"cannot take the lock {str(path)}.lock: {exc}") from None
    return target


def run_statuses(path) -> dict:
    """``{run id: status}`` of the stored runs, deliberate repeats excluded (attributes only, no arrays)."""
    with _open(Path(path), "r") as f:
        runs = _runs_group(f, path)
        return {k: runs[k].attrs.get("status") for k in runs if not k.startswith(".")
                and "repeat_of" not in runs[k].attrs}


def completed_ids(path) -> set:
    """Ids of the runs that are done (:data:`DONE`: an outcome a rerun would repeat), repeats excluded."""
    return {k for k, s in run_statuses(path).items() if s in DONE}


def list_runs(path) -> list[str]:
    with _open(Path(path), "r") as f:
        return [k for k in _runs_group(f, path) if not k.startswith(".")]


def read_run(path, run_id: str | None = None) -> dict:
    """One run as a dict of attributes (config decoded) and arrays; default: the last written."""
    with _open(Path(path), "r") as f:
        runs = _runs_group(f, path)
        ids = [k for k in runs if not k.startswith(".")]
        if not ids:
            raise StoreError(f"{str(path)!r} holds no runs" + (
                " (it holds the asv history table /history, which `cgdbench history` writes: read it with "
                "h5py or cgdbench.history.read_table)" if "history" in f else ""))
        if run_id is None:
            run_id = max(ids, key=lambda k: runs[k].attrs.get("created", ""))
        if run_id not in ids:
            raise StoreError(f"no run {run_id!r} in {str(path)!r}; runs: {', '.join(sorted(ids))}")
        g = runs[run_id]
        out = {"run_id": run_id, **{k: g.attrs[k] for k in g.attrs}}
        for k in ("config", "meta"):
            if k in out:
                out[k] = json.loads(out[k])
        for k in g:
            out[k] = g[k][()]
        return out


def group_runs(path, statuses=("completed",), ids=None, keep=None) -> dict:
    """``{config JSON without seed: [run dict, ...]}``: the runs of each method over seeds.

    Only runs whose status is in ``statuses``, whose id is in ``ids`` (when given) and for
    which ``keep(run)`` holds; deliberate repeats (``repeat_of``) are left out, so a seed
    counts once.
    """
    groups: dict = {}
    for rid in list_runs(path):
        if ids is not None and rid not in ids:
            continue
        rec = read_run(path, rid)
        if rec.get("status") not in statuses or rec.get("repeat_of") or (keep and not keep(rec)):
            continue
        cfg = dict(rec["config"])
        cfg.pop("seed", None)
        groups.setdefault(json.dumps(cfg, sort_keys=True), []).append(rec)
    return groups


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def stepsize_array(D) -> np.ndarray:
    """What goes into dataset ``D``: d×d up to :data:`DENSE_D_LIMIT`, else the cheapest exact form."""
    if D.d <= DENSE_D_LIMIT:
        return D.dense()
    if D.kind == "scalar":
        return np.float64(D.gamma)
    if D.kind == "diagonal":
        return D.diag
    return D.mat
