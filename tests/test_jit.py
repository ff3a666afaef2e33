"""The compiled-kernel cache's key: every file a kernel can depend on, and only those (cgdbench._jit)."""
import importlib
import pkgutil
from pathlib import Path

import cgdbench
from cgdbench import _jit


def _kernels_of(module):
    from numba.core.registry import CPUDispatcher
    return [name for name, obj in vars(module).items()
            if isinstance(obj, (CPUDispatcher, _jit.TwoPath)) and getattr(obj, "__module__", None) == module.__name__]


def test_every_module_with_a_kernel_is_hashed():
    hashed = set(_jit.kernel_sources())
    with_kernels = []
    for info in pkgutil.walk_packages(cgdbench.__path__, "cgdbench."):
        if info.name.endswith("__main__"):  # runs the CLI
            continue
        module = importlib.import_module(info.name)
        if _kernels_of(module):
            with_kernels.append(module.__name__)
            assert Path(module.__file__).resolve() in hashed, module.__name__
    assert len(with_kernels) >= 10  # the walk found the algorithms, problems, compressors, rng, stepsizes
    names = {p.name for p in hashed}
    assert {"det_cgd.py", "logreg.py", "sketches.py", "rng.py", "kernels.py", "_jit.py"} <= names
    assert not {"cli.py", "engine.py", "gate.py", "report.py", "sweep.py"} & names


def _package(root: Path, files: dict) -> Path:
    pkg = root / "pkg"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_import_closure_of_a_synthetic_package(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "_jit.py": "",
        "consts.py": "K = 1\n",
        "helpers.py": "from .consts import K\n",
        "kern.py": "from ._jit import njit\nfrom . import (  # a comment\n    helpers,\n)\n"
                   "def f():\n    import pkg.late as late\n",
        "late.py": "",
        "sub/__init__.py": "",
        "sub/deep.py": "from .. import _jit\nfrom ..consts import K\n",
        "cli.py": "from .kern import f\nfrom . import engine\n",
        "engine.py": "import numpy\n",
        "doc.py": '"""Not a kernel module."""\n',
    })
    got = {p.relative_to(pkg).as_posix() for p in _jit.kernel_sources(pkg)}
    assert got == {"__init__.py", "_jit.py", "consts.py", "helpers.py", "kern.py", "late.py", "sub/__init__.py",
                   "sub/deep.py"}
    h0 = _jit.source_hash(pkg)
    (pkg / "cli.py").write_text("# edited\n")
    (pkg / "engine.py").write_text("# edited\n")
    assert _jit.source_hash(pkg) == h0  # the CLI and the loop: the cache stays
    (pkg / "consts.py").write_text("K = 2\n")
    assert _jit.source_hash(pkg) != h0  # a constant a kernel reaches: a fresh cache


_TINY = '''
from cgdbench._jit import njit_parallel, prange


@njit_parallel
def doubled_sum(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += 2.0 * x[i]
    return s
'''

_CHILD = '''
import numpy as np
import tiny_kernel
from cgdbench import precompile
k = tiny_kernel.doubled_sum
args = (np.arange(5.0),)
sig = k.signature("serial", args)
before = (k.cached("serial", sig), k.cached("parallel", sig))
helper = precompile.start([(k, "serial", sig), (k, "parallel", sig)])
import os, time
while not os.path.exists(helper._file(0, "claim")):  # the helper has started its first item
    time.sleep(0.01)
mine = precompile.claim(k, "parallel", sig)  # not started (the helper is on the serial one): this process's
theirs = precompile.claim(k, "serial", sig)  # started: wait for it
ok = helper.wait()
after = (k.cached("serial", sig), k.cached("parallel", sig))
value = k.entry("serial", (np.arange(5.0),))(np.arange(5.0))
hits = sum(k.serial.stats.cache_hits.values())
print(before, mine, theirs, ok, after, value, hits, precompile._active)
'''


def test_a_helper_process_compiles_a_path_into_the_disk_cache(tmp_path):
    """TwoPath.cached reads the disk cache; precompile's helper compiles its items there in order, skipping
    one this process claimed before the helper reached it, and this process then loads the helper's (a cache
    hit) instead of compiling it."""
    import os
    import subprocess
    import sys
    (tmp_path / "tiny_kernel.py").write_text(_TINY)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # the helper skipped the parallel path this process claimed: it stays uncompiled (nobody compiled it)
    assert out.stdout.split() == ["(False,", "False)", "False", "True", "True", "(True,", "False)", "20.0", "1",
                                  "[]"], out.stdout


_FLAGGED = '''
from cgdbench._jit import njit_parallel, prange

FLAG = False


def not_jittable(x):  # plain Python: typing a call to it fails in nopython mode
    return object()


@njit_parallel
def total(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i]
    if FLAG:
        s += not_jittable(x)
    return s


total__on = total.specialize("__on", FLAG=True)
'''

_FLAGGED_CHILD = '''
import numpy as np
import flagged
args = (np.arange(5.0),)
print(flagged.total.entry("serial", args)(*args), flagged.total.entry("parallel", args)(*args))
print(flagged.total__on.__qualname__, flagged.total__on.serial.py_func.__qualname__)
try:
    flagged.total__on.entry("serial", args)
    print("compiled")
except Exception as exc:
    print(type(exc).__name__)
for suffix, names in (("__on", {"FLAG": True}), ("__x", {"FLAGG": True}), ("on", {}), ("__serial", {})):
    try:  # a suffix used twice would share a disk-cache entry; a misspelt global would replace nothing
        flagged.total.specialize(suffix, **names)
        print("accepted")
    except ValueError:
        print("refused")
'''


def test_specialize_prunes_a_branch_on_a_replaced_constant(tmp_path):
    """TwoPath.specialize: with FLAG False the branch calling plain Python is pruned before typing (both
    paths compile); the copy with FLAG True keeps it, so typing it fails; the copy has its own name."""
    import os
    import subprocess
    import sys
    (tmp_path / "flagged.py").write_text(_FLAGGED)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _FLAGGED_CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10.0", "10.0", "total__on", "total__on__serial", "TypingError"] + ["refused"] * 4, \
        out.stdout
