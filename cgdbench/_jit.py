"""The one place that decides how kernels are compiled.

Fastmath: only flags that keep NaN/inf semantics (divergence must stay detectable)
and do not reassociate sums (reassociation lets the vectorizer change summation
order, and the same seed must give bit-identical results everywhere).

On-disk cache: Numba invalidates a cached kernel only when *its own* source file
changes, not when a kernel it calls from another file does — a stale engine
kernel would silently run old code.  So the cache lives in a directory keyed by
a hash of every source file of the package (and the Numba version): any edit
starts a fresh cache.  ``$NUMBA_CACHE_DIR`` still wins when set; the default is
``$CGDBENCH_CACHE/numba/<hash>``, else the user cache directory.
"""
import hashlib
import os
import types
from pathlib import Path

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract"})


def source_hash() -> str:
    """Hash of the package's Python sources and the Numba version."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    from platformdirs import user_cache_dir
    return Path(os.environ.get("CGDBENCH_CACHE") or user_cache_dir("cgdbench")) / "numba" / source_hash()


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = str(cache_dir())

#: serial kernels
njit = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True)
#: small kernels called inside hot loops: inlined at Numba-IR level, which also
#: removes the per-call reference counting of every array argument (~50 ns a call
#: for a kernel taking eight arrays, measured).  Not for large kernels: inlining
#: the logistic gradient into the prange body made the engine 25% slower.
njit_inline = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True, inline="always")
prange = numba.prange
#: parallel kernels called from the serial part of another kernel (both of its paths): large work per
#: region (milliseconds), fixed chunks, so the result never depends on the thread count
njit_chunks = numba.njit(cache=True, fastmath=set(FASTMATH), parallel=True, nogil=True)


class TwoPath:
    """A ``prange`` kernel compiled twice from one source: ``.parallel`` and ``.serial``.

    The work split never depends on the thread count (fixed client ranges, each with its
    own buffer row, reduced in order), so both paths do the same arithmetic in the same
    order and give bit-identical results.  The engine picks, chunk by chunk, whichever
    path is faster *now* (:class:`cgdbench.parallel.PathChooser`): a parallel region
    needs every thread of the team scheduled, and when another process holds a core a
    2-thread region can cost many times the serial loop.

    The serial twin is a copy of the function under another ``__qualname__``: Numba's
    disk cache keys a function by module, qualified name and line, not by its
    compile flags, so two dispatchers of one function would share (and overwrite)
    one cache entry.
    """

    def __init__(self, fn):
        self.py_func = fn
        self.__name__, self.__qualname__, self.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        self.__module__ = fn.__module__
        self.parallel = numba.njit(cache=True, fastmath=set(FASTMATH), parallel=True, nogil=True)(fn)
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "__serial"
        twin.__module__ = fn.__module__
        self.serial = njit(twin)

    def __call__(self, *args):
        return self.parallel(*args)

    def path(self, name: str):
        return self.serial if name == "serial" else self.parallel


#: kernels with ``prange``: compiled as a parallel and a serial path (see :class:`TwoPath`)
njit_parallel = TwoPath
