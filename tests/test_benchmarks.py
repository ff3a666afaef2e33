"""The benchmark suites run (once each, no timing asserted)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pytest_benchmark_suite_runs(data_dir):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                        str(ROOT / "benchmarks" / "pytest_suite")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "CGDBENCH_DATA": str(data_dir)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "9 passed" in r.stdout


@pytest.mark.parametrize("script,args,keys", [
    ("peers.py", ["--iters", "5", "--repeats", "1", "--no-jax", "--json"], {"floor", "floor-float32", "engine"}),
    ("many_clients.py", ["--dataset", "a1a", "--clients", "10,1605", "--iters", "5", "--repeats", "1", "--json"],
     {"10", "1605"}),
    ("threading_policy.py", ["--settings", "default", "--load", "0", "--threads", "1", "--iters", "5", "--repeats",
                             "1", "--json"], None),
])
def test_benchmark_scripts_run(data_dir, script, args, keys):
    """The one-off scripts behind docs/performance.md still run (tiny sizes; nothing timed is asserted)."""
    import json
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "CGDBENCH_DATA": str(data_dir)})
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if keys is not None:
        assert set(out["us_per_iteration"]) == keys
    else:  # threading_policy.py: one row per cell, with "error" where the cell could not run
        assert out and all("error" not in row and row["engine"] for row in out), out


#: asv's timing attributes: the suite must not use them for data of its own (reading ``self.params``,
#: asv's own meaning, is fine)
ASV_RESERVED = {"rounds", "repeat", "number", "warmup_time", "timeout", "processes", "min_run_count",
                "sample_time"}
#: what asv accepts for the timing ones (anything else is a sign of another meaning)
ASV_RANGES = {"rounds": (1, 10), "number": (0, 1000), "warmup_time": (-1, 60), "timeout": (1, 3600),
              "processes": (1, 10), "min_run_count": (1, 100), "sample_time": (0, 10)}


def _benchmark_files():
    return sorted((ROOT / "benchmarks").glob("bench_*.py"))


@pytest.fixture
def benchmarks_importable(monkeypatch):
    """Import the asv suite in this process without its NUMBA_NUM_THREADS default reaching Numba here."""
    import numba
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))


def test_asv_suite_uses_no_reserved_attribute_for_its_own_data(benchmarks_importable):
    """No ``self.rounds``-style reads of an asv attribute, and every asv attribute set is in asv's range.

    (``SketchMessages.rounds = 1000`` once meant "messages per timing" and made asv run 1000 rounds.)
    """
    import ast
    import importlib
    misuse = []
    for f in _benchmark_files():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and node.attr in ASV_RESERVED:
                misuse.append(f"{f.name}:{node.lineno} reads self.{node.attr}")
        mod = importlib.import_module(f"benchmarks.{f.stem}")
        for obj in vars(mod).values():
            for attr, (lo, hi) in ASV_RANGES.items():
                v = getattr(obj, attr, None) if getattr(obj, "__module__", None) == mod.__name__ else None
                if v is not None and not (isinstance(v, (int, float)) and lo <= v <= hi):
                    misuse.append(f"{f.name}: {getattr(obj, '__name__', obj)}.{attr} = {v!r} (asv range {lo}..{hi})")
    assert not misuse, "\n".join(misuse)


def test_asv_times_every_full_gradient_algorithm(benchmarks_importable, monkeypatch):
    """bench_engine.Iteration's algorithms are the registry's: one registered later is timed at its defaults."""
    import importlib

    from cgdbench import algorithms
    from cgdbench.algorithms import det_cgd
    mod = importlib.import_module("benchmarks.bench_engine")
    assert set(mod.ALGORITHMS) == set(algorithms.REGISTRY.names(oracle="full"))
    assert set(mod.Iteration.params[1]) == set(mod.ALGORITHMS)
    # a new algorithm (registered the documented way) joins at its own default compressor and stepsize
    monkeypatch.setattr(algorithms.REGISTRY, "entries", dict(algorithms.REGISTRY.entries))
    algorithms.register("gd-copy", doc="test", oracle="full", contract="sketch", default_compressor="identity",
                        default_stepsize="scalar")(det_cgd.DetCgdJob)
    assert importlib.reload(mod).ALGORITHMS["gd-copy"] == {}
    monkeypatch.undo()
    importlib.reload(mod)


def test_asv_tracks_are_positive(data_dir, benchmarks_importable):
    """Every fast ``track_*`` with a "lower is better" meaning returns a positive value (asv compares ratios)."""
    from benchmarks import bench_compressors
    q = bench_compressors.CompressorQuality()
    for spec in bench_compressors.CompressorQuality.params[0]:
        assert q.track_mu(spec) > 0, spec
    v = bench_compressors.CompressorVariance()
    for spec in bench_compressors.CompressorVariance.params[0]:
        assert v.track_omega(spec) > 0, spec


def _asv(tmp_path, data_dir):
    from cgdbench import _jit
    # asv's own state under a fresh HOME, but the compiled kernels this process already has (a cold Numba
    # cache made the dry run compile the engine again: ~55 s of a 2-core machine's suite)
    env = {**os.environ, "CGDBENCH_DATA": str(data_dir), "HOME": str(tmp_path),
           "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(_jit.cache_dir())}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=ROOT, env=env, capture_output=True, check=True)
    return asv, env


def test_asv_check(data_dir, tmp_path):
    """`asv check`: asv discovers and imports every benchmark and accepts its signature."""
    asv, env = _asv(tmp_path, data_dir)
    r = subprocess.run([*asv, "check", "--python=same"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "No problems found" in r.stdout, (r.stdout + r.stderr)[-3000:]


def test_asv_runs_one_benchmark_of_each_kind(data_dir, tmp_path):
    """A dry run of one time_, track_ and peakmem_ benchmark: asv can run the suite (a time_ benchmark with one
    parameter set: asv starts a process per set, ~2 s each on a 2-core machine)."""
    asv, env = _asv(tmp_path, data_dir)
    r = subprocess.run([*asv, "run", "--quick", "--python=same", "--dry-run", "--show-stderr", "-b",
                        r"Corollary1NewtonStep\.time_phi|CompressorQuality\.track_bits|Memory\.peakmem"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert not [line for line in out.splitlines() if "failed" in line.lower() and "WARNING: Location" not in line]
    for name in ("time_phi_gradient_hessian", "track_bits_fraction", "peakmem_run"):
        assert re.search(rf"{name}\s+(ok|[0-9.]+)", out) or name in out, out[-3000:]


@pytest.mark.slow
def test_asv_suite_runs_once(data_dir, tmp_path):
    """`asv run --quick --python=same --dry-run`: every asv benchmark imports and runs once (minutes)."""
    asv, env = _asv(tmp_path, data_dir)
    r = subprocess.run([*asv, "run", "--quick", "--python=same", "--dry-run", "--show-stderr"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    bad = [line for line in out.splitlines() if "failed" in line.lower() and "WARNING: Location" not in line]
    assert not bad, "\n".join(bad[:20])
    done = [line for line in out.splitlines()
            if re.match(r"^\[.*···\s+\S*(bench_|\.\.\.)\S*\s+(ok|[0-9.]+±\S+)\s*$", line)]
    assert len(done) >= 10, out[-3000:]
