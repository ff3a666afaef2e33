"""Compile kernel paths in a helper process while this process compiles (or runs) others.

A run with two threads needs both paths of its kernel (:class:`cgdbench._jit.TwoPath`), a
sweep needs several kernels, and on a fresh machine (or after an edit to a file a kernel can
reach) compiling them is most of the time of a first run: det-CGD's parallel path 32-34 s and
its serial path 14 s, EF-SGD's serial path ~40 s on its own, on the 2-core AMD EPYC (znver1).
Numba compiles on one core.  So when a second core is free, :func:`start` hands a list of
``(kernel, path, signature)`` items to a helper process (``python -m cgdbench.precompile
DIR``), which compiles them in its order into the same disk cache, while this process goes
through what it needs in its own order and loads what the helper compiled from the cache.

Each item is compiled by one of the two: whoever creates its claim file first (``O_EXCL``)
compiles it; :func:`claim` makes this process wait for an item the helper has started and
take over one it has not.  A plan lists the helper's items in the reverse of the order this
process will need them (:func:`cgdbench.engine.plan_compiles`), so the two meet in the middle.
Before a run is timed, :func:`drain` compiles here what the helper has not started.

Only the signatures travel (Numba types pickle), never the data.  Nothing depends on the
helper: if it fails, is killed, or compiled something else, the run compiles the path itself
when it loads it.  The results are the same bits either way (the same compiled code).
``CGDBENCH_COMPILE_HELPER=0`` turns it off.
"""
from __future__ import annotations

import importlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time

ENV = "CGDBENCH_COMPILE_HELPER"
#: the longest this process waits for the helper to finish one item before compiling it itself
WAIT_SECONDS = 600.0

#: helpers of this process still alive (claim() consults each)
_active: list["Helper"] = []


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off") and usable_cores() >= 2


def item_key(kernel, path: str, sig: tuple):
    return (getattr(kernel, "__module__", None), getattr(kernel, "__qualname__", None), path, sig)


class Helper:
    """A helper process compiling ``items`` (keys of :func:`item_key`) in order."""

    def __init__(self, proc: subprocess.Popen, items: list, folder: str, kernels: list | None = None):
        self.proc, self.items, self._dir = proc, items, folder
        self._index = {key: i for i, key in enumerate(items)}
        #: the ``(kernel, path, sig)`` of each item, for :func:`drain`
        self.kernels = kernels or []

    def claim(self, key) -> bool | None:
        """``None``: not this helper's item.  Else True when the helper compiled it (after waiting for it if
        it had started), False when this process must compile it (the helper has not started it, failed or
        gave up)."""
        i = self._index.get(key)
        if i is None:
            return None
        if _create(self._file(i, "claim")):
            return False  # the helper had not started it: it will skip it
        deadline = time.monotonic() + WAIT_SECONDS
        while not os.path.exists(self._file(i, "done")):
            if (self.proc.poll() is not None or os.path.exists(self._file(i, "failed"))
                    or time.monotonic() > deadline):
                return os.path.exists(self._file(i, "done"))
            time.sleep(0.02)
        return True

    def wait(self) -> bool:
        """Block until the helper has finished every item (at most :data:`WAIT_SECONDS`, then it is killed);
        True when it exited cleanly."""
        try:
            return self.proc.wait(timeout=WAIT_SECONDS) == 0
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        finally:
            self.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self):
        if self in _active:
            _active.remove(self)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _file(self, i: int, what: str) -> str:
        return os.path.join(self._dir, f"{i}.{what}")


def _create(name: str) -> bool:
    """Create ``name`` if it does not exist; True when this call created it."""
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def start(items: list[tuple]) -> Helper | None:
    """Start compiling ``items`` (``(kernel, path, sig)``, in that order) in a helper process (``None``: not
    possible, or nothing to do)."""
    keys, specs, kernels, folder = [], [], [], ""
    for kernel, path, sig in items:
        key = item_key(kernel, path, sig)
        if not key[0] or not key[1] or "<" in key[1] or key in keys or _find(key[0], key[1]) is not kernel:
            continue  # the helper would not find this kernel under its name
        keys.append(key)
        kernels.append((kernel, path, sig))
        specs.append({"module": key[0], "name": key[1], "path": path, "sig": sig})
    if not specs:
        return None
    try:
        folder = tempfile.mkdtemp(prefix="cgdbench-compile-")
        with open(os.path.join(folder, "items.pkl"), "wb") as f:
            pickle.dump({"sys_path": list(sys.path), "items": specs}, f)  # the same modules as this process
        proc = subprocess.Popen([sys.executable, "-m", "cgdbench.precompile", folder], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, ValueError, pickle.PicklingError, TypeError, AttributeError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    helper = Helper(proc, keys, folder, kernels)
    _active.append(helper)
    return helper


def claim(kernel, path: str, sig: tuple) -> bool:
    """Before this process loads ``kernel``'s ``path`` for ``sig``: True when a helper compiled it (it is in
    the disk cache now), False when this process compiles it (no helper has it, or it had not started)."""
    key = item_key(kernel, path, sig)
    for helper in list(_active):
        got = helper.claim(key)
        if got is not None:
            return got
    return False


def planned(kernel, path: str, sig: tuple) -> bool:
    """Whether a running helper has this item in its list."""
    key = item_key(kernel, path, sig)
    return any(key in helper._index for helper in _active)


def drain() -> None:
    """Compile here every item no helper has started, wait for the ones they have, then let them go.

    The engine calls this before it times a run: the helpers then no longer compete for the cores.
    """
    for helper in list(_active):
        for kernel, path, sig in helper.kernels:
            if helper.claim(item_key(kernel, path, sig)) is False:
                try:
                    kernel.path(path).compile(sig)
                except Exception:  # noqa: BLE001 — the run that needs it compiles it again and says why
                    pass
        helper.wait()


def stop_all() -> None:
    """Kill every helper still running (its unfinished items are compiled here when needed)."""
    for helper in list(_active):
        helper.kill()


def _find(module: str, name: str):
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError):
        return None


def _die_with_parent() -> None:
    """Linux: the helper gets SIGKILL when the run's process dies (else it would compile on, orphaned)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0]
    with open(os.path.join(folder, "items.pkl"), "rb") as f:
        plan = pickle.load(f)
    _die_with_parent()
    sys.path[:] = plan["sys_path"]
    failed = 0
    for i, job in enumerate(plan["items"]):
        if not _create(os.path.join(folder, f"{i}.claim")):
            continue  # the run took it over
        try:
            kernel = _find(job["module"], job["name"])
            kernel.path(job["path"]).compile(job["sig"])  # saved to the disk cache (cache=True)
        except Exception:  # noqa: BLE001 — the run compiles this one itself (no "done": claim() says so)
            failed = 1
            _create(os.path.join(folder, f"{i}.failed"))
            continue
        _create(os.path.join(folder, f"{i}.done"))
    return failed


if __name__ == "__main__":
    sys.exit(main())
