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


@pytest.mark.slow
def test_asv_suite_runs_once(data_dir, tmp_path):
    """`asv run --quick --python=same --dry-run`: every asv benchmark imports and runs once."""
    env = {**os.environ, "CGDBENCH_DATA": str(data_dir), "HOME": str(tmp_path)}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=ROOT, env=env, capture_output=True, check=True)
    r = subprocess.run([*asv, "run", "--quick", "--python=same", "--dry-run", "--show-stderr"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    bad = [line for line in out.splitlines() if "failed" in line.lower() and "WARNING: Location" not in line]
    assert not bad, "\n".join(bad[:20])
    done = [line for line in out.splitlines()
            if re.match(r"^\[.*···\s+\S*(bench_|\.\.\.)\S*\s+(ok|[0-9.]+±\S+)\s*$", line)]
    assert len(done) >= 10, out[-3000:]
