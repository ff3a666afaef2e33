"""The stepsize caches: one directory, atomic writes, keys of (L, sketch, kind)."""
from __future__ import annotations

import hashlib
import os
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


def key(L, sketch, kind) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(L, dtype=np.float64).tobytes())
    h.update(f"{kind}|{sketch.spec()}|{sketch.d}|{sketch.block_ptr.tolist()}|v2".encode())
    if sketch.name == "importance-rand-1":
        h.update(sketch.p.tobytes())
    return h.hexdigest()[:32]
