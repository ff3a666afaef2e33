"""The one place that decides how kernels are compiled.

Fastmath: only flags that keep NaN/inf semantics (divergence must stay detectable)
and do not reassociate sums (reassociation lets the vectorizer change summation
order, and the same seed must give bit-identical results everywhere).

On-disk cache: Numba invalidates a cached kernel only when *its own* source file
changes, not when a kernel it calls from another file does — a stale engine
kernel would silently run old code.  So the cache lives in a directory keyed by
a hash of every source file a kernel can reach (:func:`kernel_sources`: the
modules that compile kernels and everything they import) and the Numba version:
an edit there starts a fresh cache; an edit to the CLI or the engine's loop does
not.  ``$NUMBA_CACHE_DIR`` still wins when set; the default is
``$CGDBENCH_CACHE/numba/<hash>``, else the user cache directory.
"""
import hashlib
import os
import re
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


#: ``from .x import a, b`` / ``from cgdbench.x import (a, b)`` / ``import cgdbench.x``, at any indentation
_IMPORT = re.compile(rb"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+([^\n]+))",
                     re.M)


def kernel_sources(root: Path | None = None) -> list[Path]:
    """The package's files a compiled kernel can depend on, sorted.

    A kernel freezes the functions and constants it reaches through its module's globals, and
    those come from that module's imports.  So: every module that imports this one (the modules
    that compile kernels), every package module they import, transitively (any import line in
    the file, a function's included; a docstring line that reads like one only adds a file),
    and the ``__init__`` of every package on the way.  The rest (the CLI, the engine's Python
    loop, the gate, reports, plots) can change without emptying the cache.
    """
    root = root or Path(__file__).resolve().parent
    files = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    imports = {}
    for mod, path in files.items():
        pkg = mod.split(".") if path.name == "__init__.py" and mod else mod.split(".")[:-1]
        found = set()
        for dots, module, names, plain in _IMPORT.findall(path.read_bytes()):
            if plain:
                for item in plain.decode().split(","):
                    head = item.split()[0].split(".") if item.split() else []
                    if head and head[0] == root.name:
                        found.add(".".join(head[1:]))
                continue
            module = module.decode()
            if dots:
                base = pkg[:len(pkg) - len(dots) + 1] + (module.split(".") if module else [])
            elif module.split(".")[0] == root.name:
                base = module.split(".")[1:]
            else:
                continue
            found.add(".".join(base))
            listed = re.sub(r"#[^\n]*", "", names.decode()).strip("()")
            found.update(".".join(base + [item.split()[0]]) for item in listed.split(",") if item.split())
        imports[mod] = {m for m in found if m in files}
    todo = [m for m, deps in imports.items() if "_jit" in deps] + ["_jit"]
    seen = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".") if mod else []
        todo.extend(".".join(parts[:i]) for i in range(len(parts)))  # the packages' __init__ run first
        todo.extend(imports[mod])
    return sorted(files[m] for m in seen)


def source_hash(root: Path | None = None) -> str:
    """Hash of the sources a kernel can depend on (:func:`kernel_sources`) and the Numba version."""
    root = root or Path(__file__).resolve().parent
    h = hashlib.sha256(numba.__version__.encode())
    for path in kernel_sources(root):
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
        self._options = dict(serial_calls=serial_calls, parallel=parallel, fastmath=fastmath)
        self.__name__, self.__qualname__, self.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        self.__module__ = fn.__module__
        flags = dict(cache=True, fastmath=set(fastmath), nogil=True)
        twins = {path: {name: getattr(fn.__globals__[name], path) for name in serial_calls}
                 for path in ("parallel", "serial")}
        self.parallel = numba.njit(parallel=parallel, **flags)(_copy(fn, twins["parallel"], ""))
        self.serial = numba.njit(**flags)(_copy(fn, twins["serial"], "__serial"))
        self._suffixes = set()

    def __call__(self, *args):
        return self.parallel(*args)

    def path(self, name: str):
        return self.serial if name == "serial" else self.parallel

    def entry(self, name: str, args: tuple):
        """The compiled ``name`` path for the types of ``args`` (compiled, or loaded from the cache, now).

        Calling it skips Numba's dispatch, which types every argument on every call: for a kernel
        taking two dozen arrays and packs that was 13-20 µs a call against 3.5 µs for the entry
        point (which still unboxes them), i.e. ~5% of an engine chunk of 11 a1a iterations.  Only for
        arguments of exactly these types: the engine calls it with one job's fixed arrays.
        """
        disp = self.path(name)
        sig = self.signature(name, args)
        if sig not in disp.overloads:
            disp.compile(sig)
        return disp.get_overload(sig)

    def specialize(self, suffix: str, **names) -> "TwoPath":
        """This kernel again, with some of its module's globals replaced: a constant, or another two-path
        kernel it calls.  Numba prunes a branch ``if NAME:`` on a replaced constant before typing, so what
        only that branch calls is not compiled at all.  The copy's ``__qualname__`` ends in ``suffix``
        (its own disk-cache entry: Numba's cache key has the name, not the globals, so a suffix serves one
        specialization only); bind it to that name in the module (the compile helper finds it there).  The
        copy sees the module's globals as they are now.
        """
        fn = self.py_func
        unknown = sorted(set(names) - set(fn.__globals__))
        if unknown:
            raise ValueError(f"specialize: {', '.join(unknown)} not a global of {fn.__qualname__}'s module")
        if not suffix.startswith("__") or "__serial" in suffix or suffix in self._suffixes:
            raise ValueError(f"specialize: suffix {suffix!r} must start with '__', not contain '__serial' and "
                             f"not be one {fn.__qualname__} already used ({sorted(self._suffixes)})")
        self._suffixes.add(suffix)
        return TwoPath(_copy(fn, names, suffix), **self._options)

    def signature(self, name: str, args: tuple) -> tuple:
        """The Numba types of ``args`` as the ``name`` path sees them (what it is compiled for)."""
        disp = self.path(name)
        return tuple(disp.typeof_pyval(a) for a in args)

    def cached(self, name: str, sig: tuple):
        """Whether the ``name`` path for ``sig`` is compiled in this process or found in the disk cache,
        without loading it; ``None`` when it cannot tell (reads Numba's cache index, not a public API)."""
        disp = self.path(name)
        if sig in disp.overloads:
            return True
        try:
            cache = disp._cache
            return cache._index_key(sig, disp.targetctx.codegen()) in cache._cache_file._load_index()
        except Exception:  # noqa: BLE001 — another Numba version: no answer, nothing is compiled early
            return None


def _copy(fn, replace: dict, suffix: str):
    """``fn`` as a new function with the globals in ``replace`` replaced (else it sees its module's, live) and
    ``suffix`` added to its ``__qualname__``."""
    if not replace and not suffix:
        return fn
    glb = {**fn.__globals__, **replace} if replace else fn.__globals__
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
