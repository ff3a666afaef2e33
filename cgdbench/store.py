"""HDF5 results store: one group per run under ``/runs/<run_id>``.

Layout (see README, "Results file"):

* attributes: ``config`` (JSON), ``status`` (completed/diverged/interrupted/failed),
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
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock, Timeout

from .errors import StoreError

SCHEMA = 1
STATUSES = ("completed", "diverged", "interrupted", "failed")
PER_ITERATION = ("iteration", "loss", "grad_norm_sq", "grad_norm_sq_D", "bits_up", "bits_down", "wall_time")
DENSE_D_LIMIT = 2000
LOCK_TIMEOUT = 60.0


def check_writable(path) -> Path:
    """Fail early (before any computation) if ``path`` cannot take a run."""
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise StoreError(f"output directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"output directory {str(parent)!r} is not writable")
    if path.exists():
        if path.is_dir():
            raise StoreError(f"output path {str(path)!r} is a directory")
        if not os.access(path, os.W_OK):
            raise StoreError(f"output file {str(path)!r} is not writable")
        if path.stat().st_size and not h5py.is_hdf5(path):
            raise StoreError(f"output file {str(path)!r} exists and is not an HDF5 file; refusing to touch it")
    return path


def _open(path: Path, mode: str):
    try:
        return h5py.File(path, mode)
    except (BlockingIOError, OSError) as exc:
        if "lock" in str(exc).lower():
            raise StoreError(f"{str(path)!r} is open in another process (HDF5 file lock); "
                             "close it there and retry") from None
        raise StoreError(f"cannot open {str(path)!r} as HDF5: {exc}") from None


def _run_id(runs: h5py.Group, config_json: str, slug: str) -> str:
    base = f"{slug}.{hashlib.sha256(config_json.encode()).hexdigest()[:10]}"
    run_id, n = base, 1
    while run_id in runs:
        n += 1
        run_id = f"{base}.r{n}"
    return run_id


def write_run(path, record: dict) -> str:
    """Append one run; returns its id.  ``record`` is :meth:`cgdbench.engine.Trace.record`."""
    path = check_writable(path)
    try:
        with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT):
            with _open(path, "a") as f:
                f.attrs.setdefault("schema", SCHEMA)
                runs = f.require_group("runs")
                for stale in [k for k in runs if k.startswith(".")]:  # a writer that died mid-run
                    del runs[stale]
                run_id = _run_id(runs, record["attrs"]["config"], record["slug"])
                tmp = runs.create_group(f".{run_id}.partial")
                for key, value in record["attrs"].items():
                    tmp.attrs[key] = value
                for key, value in record["arrays"].items():
                    tmp.create_dataset(key, data=value)
                runs.move(tmp.name.rsplit("/", 1)[1], run_id)
                f.flush()
    except Timeout:
        raise StoreError(f"{str(path)!r} is locked by another cgdbench writer "
                         f"(waited {LOCK_TIMEOUT:.0f} s for {str(path)}.lock)") from None
    return run_id


def list_runs(path) -> list[str]:
    with _open(Path(path), "r") as f:
        return [k for k in f.get("runs", {}) if not k.startswith(".")]


def read_run(path, run_id: str | None = None) -> dict:
    """One run as a dict of attributes (config decoded) and arrays; default: the last written."""
    with _open(Path(path), "r") as f:
        runs = f.get("runs")
        ids = [k for k in (runs or {}) if not k.startswith(".")]
        if not ids:
            raise StoreError(f"{str(path)!r} holds no runs")
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
