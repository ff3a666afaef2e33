"""Compile a kernel's second path in a helper process while this process compiles the first.

A run with two threads needs both paths of its kernel (:class:`cgdbench._jit.TwoPath`), and
on a fresh machine (or after an edit to a file a kernel can reach) compiling them is most of
the time of a first run: det-CGD's parallel path 32-34 s and its serial path 14 s, EF-SGD's
87 and 18-70 s on the 2-core AMD EPYC (znver1).  Numba compiles on one core.  So when neither
path is in the disk cache and a second core is free, :func:`start` hands the serial path's
signature to a helper process (``python -m cgdbench.precompile FILE``), which compiles it
into the same disk cache while this process compiles the parallel path; this process then
loads the serial path from the cache.

Only the signature travels (Numba types pickle), never the data.  Nothing depends on the
helper: if it fails, is killed, or compiled something else, the run compiles the path
itself when it loads it.  The results are the same bits either way (the same compiled
code).  ``CGDBENCH_COMPILE_HELPER=0`` turns it off.
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile

ENV = "CGDBENCH_COMPILE_HELPER"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "false", "no", "off") and usable_cores() >= 2


class Helper:
    """A helper process compiling ``path`` of a kernel; :meth:`wait` for it before loading that path."""

    def __init__(self, proc: subprocess.Popen, path: str, spec: str):
        self.proc, self.path, self._spec = proc, path, spec

    def wait(self) -> bool:
        """Block until the helper has finished; True when it compiled (or found) the path."""
        try:
            return self.proc.wait() == 0
        finally:
            self._cleanup()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self):
        try:
            os.unlink(self._spec)
        except OSError:
            pass


def start(kernel, path: str, sig: tuple) -> Helper | None:
    """Start compiling ``kernel``'s ``path`` for ``sig`` in a helper process (``None``: not possible)."""
    module, name = getattr(kernel, "__module__", None), getattr(kernel, "__qualname__", None)
    if not module or not name or "<" in name:
        return None
    try:
        fd, spec = tempfile.mkstemp(prefix="cgdbench-compile-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"module": module, "name": name, "path": path, "sig": sig}, f)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return None
    proc = subprocess.Popen([sys.executable, "-m", "cgdbench.precompile", spec], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Helper(proc, path, spec)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], "rb") as f:
        job = pickle.load(f)
    kernel = importlib.import_module(job["module"])
    for part in job["name"].split("."):
        kernel = getattr(kernel, part)
    kernel.path(job["path"]).compile(job["sig"])  # saved to the disk cache (cache=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
