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
#: the finite-sum methods' kernels (det-CGD, EF21, DIANA, MARINA, det-MARINA): every product rounded.
#: LLVM fuses a product into an FMA only when it has one use, so with contraction the bits of
#: ``s += c * v`` depend on whether ``c * v`` is used elsewhere: det-CGD's two ways of finding a
#: message's coordinates, and the metric rows the methods share (EF21 with the identity is GD exactly),
#: must not depend on it
NO_CONTRACT = frozenset({"nsz", "arcp"})


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
#: serial kernels of the finite-sum methods (the client gradient): no FMA contraction, see NO_CONTRACT
njit_exact = numba.njit(cache=True, fastmath=set(NO_CONTRACT), nogil=True)
prange = numba.prange


class TwoPath:
    """A kernel compiled twice from one source: ``.parallel`` and ``.serial``.

    The work split never depends on the thread count (fixed client ranges, each with its
    own buffer row, reduced in order), so both paths do the same arithmetic in the same
    order and give bit-identical results.  The engine picks, chunk by chunk, whichever
    path is faster *now* (:class:`cgdbench.parallel.PathChooser`): a parallel region
    needs every thread of the team scheduled, and when another process holds a core a
    2-thread region can cost many times the serial loop.

    The serial twin is a copy of the function under another ``__qualname__``: Numba's
    disk cache keys a function by module, qualified name and line, not by its
    compile flags, so two dispatchers of one function would share (and overwrite)
    one cache entry.  ``serial_calls`` names the two-path kernels this one calls: the
    serial twin sees their serial twins under those names (a parallel region nested
    in a serial path would defeat it), the parallel one their parallel dispatchers.
    ``parallel=False``: a kernel with no ``prange`` of its own that only forwards the
    choice to what it calls.
    """

    def __init__(self, fn, serial_calls=(), parallel=True, fastmath=FASTMATH):
        self.py_func = fn
        self.__name__, self.__qualname__, self.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        self.__module__ = fn.__module__
        flags = dict(cache=True, fastmath=set(fastmath), nogil=True)
        self.parallel = numba.njit(parallel=parallel, **flags)(_copy(fn, serial_calls, "parallel", ""))
        self.serial = numba.njit(**flags)(_copy(fn, serial_calls, "serial", "__serial"))

    def __call__(self, *args):
        return self.parallel(*args)

    def path(self, name: str):
        return self.serial if name == "serial" else self.parallel


def _copy(fn, calls, path: str, suffix: str):
    """``fn`` as a new function whose globals in ``calls`` (two-path kernels) are their ``path`` dispatchers."""
    if not calls and not suffix:
        return fn
    glb = dict(fn.__globals__) if calls else fn.__globals__
    for name in calls:
        glb[name] = getattr(glb[name], path)
    out = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__qualname__ = fn.__qualname__ + suffix
    out.__module__ = fn.__module__
    return out


def njit_parallel(fn=None, *, serial_calls=(), parallel=True, fastmath=FASTMATH):
    """Kernels with ``prange`` (or calling such kernels): a parallel and a serial path (:class:`TwoPath`).

    ``@njit_parallel`` or ``@njit_parallel(serial_calls=("conv_pass",))``.
    """
    if fn is None:
        return lambda f: TwoPath(f, serial_calls=serial_calls, parallel=parallel, fastmath=fastmath)
    return TwoPath(fn)
