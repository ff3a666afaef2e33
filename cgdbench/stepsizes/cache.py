"""The stepsize caches: one directory, atomic writes, keys of (L, sketch, kind)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$CGDBENCH_CACHE/stepsizes``, else the user cache directory."""
    from platformdirs import user_cache_dir
    return Path(os.environ.get("CGDBENCH_CACHE") or user_cache_dir("cgdbench")) / "stepsizes"


def save_npz(path: Path, **arrays) -> str:
    """Write a cache entry atomically (an interrupted write leaves no half file); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return str(path)


def load(path: Path, fields) -> dict | None:
    """The cached ``fields`` of ``path``, or None when there is no entry.

    An entry that cannot be read (half-written by an older version, truncated, not an npz
    or JSON file, a field missing) is reported once on stderr, removed and treated as
    missing, so the caller recomputes it; it never fails a run.
    """
    if not path.is_file():
        return None
    try:
        if path.suffix == ".json":
            z = json.loads(path.read_text())
            return {f: z[f] for f in fields} if fields else z
        with np.load(path, allow_pickle=False) as z:
            return {f: z[f][()] if z[f].ndim == 0 else z[f].copy() for f in fields}
    except Exception as exc:  # any unreadable entry: report, drop, recompute
        print(f"cgdbench: stepsize cache entry {path} is unreadable ({type(exc).__name__}: {exc}); "
              "removed, recomputing", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def key(L, sketch, kind) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(L, dtype=np.float64).tobytes())
    h.update(f"{kind}|{sketch.spec()}|{sketch.d}|{sketch.block_ptr.tolist()}|v2".encode())
    if sketch.name == "importance-rand-1":
        h.update(sketch.p.tobytes())
    return h.hexdigest()[:32]
