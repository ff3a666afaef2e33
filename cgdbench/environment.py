"""What a run ran on: package and library versions, threading, CPU, and the source commit.

Numba's generated code and speed depend on all of these, so every stored run carries
them (``meta["environment"]``), and the gate's baseline records them too.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

NOT_A_CHECKOUT = "not a checkout"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 — a missing optional library is reported, not fatal
        return "absent"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_target() -> str:
    """The CPU Numba compiles for: ``NUMBA_CPU_NAME`` if set, else LLVM's name of this host's CPU
    (``znver3``, ``sapphirerapids``, ...): machines that print the same model name ("AMD EPYC")
    may differ here, and with it the code Numba generates."""
    name = os.environ.get("NUMBA_CPU_NAME", "").strip()
    if name and name != "host":
        return name
    try:
        import llvmlite.binding as llvm
        return llvm.get_host_cpu_name()
    except Exception:  # noqa: BLE001 — reported, not fatal
        return "unknown"


def _git(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=5)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the work tree this package runs from, or ``"not a checkout"`` (see :func:`commit_of`)."""
    return commit_of(Path(__file__))


def commit_of(file: Path) -> str:
    """HEAD of the git work tree that tracks ``file``, or ``"not a checkout"``.

    Only when ``file`` is tracked in that work tree: a package installed into
    site-packages inside some other repository must not report that repository's HEAD.
    ``-dirty`` is appended when tracked files have changes.
    """
    file = Path(file).resolve()
    try:
        top = _git("rev-parse", "--show-toplevel", cwd=file.parent)
        if top.returncode != 0:
            return NOT_A_CHECKOUT
        root = Path(top.stdout.strip()).resolve()
        rel = file.relative_to(root).as_posix()
        if _git("ls-files", "--error-unmatch", rel, cwd=root).returncode != 0:
            return NOT_A_CHECKOUT
        head = _git("rev-parse", "HEAD", cwd=root)
        if head.returncode != 0:
            return NOT_A_CHECKOUT
        dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=root).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, ValueError, subprocess.SubprocessError):
        return NOT_A_CHECKOUT


@lru_cache(maxsize=1)
def _static() -> dict:
    from . import __version__
    return {
        "package_version": __version__, "python": platform.python_version(),
        "numpy": _version("numpy"), "numba": _version("numba"), "scipy": _version("scipy"),
        "h5py": _version("h5py"), "cpu": cpu_model(), "cpu_target": cpu_target(), "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "platform": platform.platform(),
        "executable": sys.executable, "git_commit": git_commit(),
    }


def describe(threads: int | None = None, threading_layer: str | None = None) -> dict:
    """Versions, CPU, commit; the Numba thread count and threading layer in force."""
    import numba
    if threading_layer is None:
        try:
            threading_layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet in this process
            threading_layer = "not started"
    return {**_static(), "threads": int(threads if threads is not None else numba.get_num_threads()),
            "threading_layer": threading_layer,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "path_setting": os.environ.get("CGDBENCH_PATH", "auto")}


def available_memory() -> float:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo, else the free pages; inf if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse, before allocating, a request of about ``nbytes`` that does not fit in the available memory.

    ``what`` names the structure and the options that size it; ``fix`` says which option to change.
    """
    from .errors import ConfigError
    avail = available_memory()
    if nbytes > avail:
        raise ConfigError(f"{what} needs about {_gib(nbytes)}, more than the {_gib(avail)} of memory available "
                          f"now; {fix}")
