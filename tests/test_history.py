"""`cgdbench history`: asv results (read through asv's own code) -> HDF5 table."""
import json

import numpy as np
import pytest

from cgdbench import history
from cgdbench.history import HistoryError

EXPECTED_UNITS = {"seconds", "bits"}  # benchmark units, not a timing
COLUMNS = ["result", "params", "version", "started_at", "duration"]


def fake_results(root, commits):
    """An asv results directory with one machine, written by asv's own Results class."""
    import datetime
    from asv import results as asv_results
    from asv.runner import BenchmarkResult
    (root / "vm").mkdir(parents=True, exist_ok=True)
    (root / "vm" / "machine.json").write_text(json.dumps({"machine": "vm", "version": 1}))
    (root / "benchmarks.json").write_text(json.dumps({
        "bench.T.time_x": {"type": "time", "unit": "seconds", "param_names": ["algorithm", "clients"],
                           "params": [["'gd'", "'det-cgd1'"], ["1", "100"]], "version": "v"},
        "bench.track_bits": {"type": "track", "unit": "bits", "param_names": [], "params": [], "version": "v"},
        "version": 2}))
    for i, (commit, t) in enumerate(commits):
        res = asv_results.Results({"machine": "vm"}, {}, commit, 1_700_000_000_000 + i * 86_400_000, "3.11",
                                  "env1", {})
        bench = {"name": "bench.T.time_x", "version": "v", "params": [["'gd'", "'det-cgd1'"], ["1", "100"]]}
        res.add_result(bench, BenchmarkResult(result=[t, 2 * t, None, 4 * t], samples=[[t], [2 * t], None, [4 * t]], number=[1] * 4,
                                              errcode=0, stderr="", profile=None), started_at=datetime.datetime(2023, 11, 14, tzinfo=datetime.timezone.utc), duration=1.0)
        bench = {"name": "bench.track_bits", "version": "v", "params": []}
        res.add_result(bench, BenchmarkResult(result=[1000 + i], samples=[[1000 + i]], number=[1], errcode=0, stderr="",
                                              profile=None), started_at=datetime.datetime(2023, 11, 14, tzinfo=datetime.timezone.utc), duration=1.0)
        res.save(str(root))


def test_round_trip_and_append_without_duplicates(tmp_path):
    res = tmp_path / "results"
    fake_results(res, [("a" * 40, 1.0), ("b" * 40, 1.5)])
    out = tmp_path / "h.h5"
    r = history.export(res, out)
    assert (r["read"], r["added"], r["total"]) == (10, 10, 10)
    t = history.read_table(out)
    sel = (t["benchmark"] == "bench.T.time_x") & (t["commit"] == "b" * 40)
    params = [json.loads(p) for p in t["params"][sel]]
    assert params == [{"algorithm": "gd", "clients": 1}, {"algorithm": "gd", "clients": 100},
                      {"algorithm": "det-cgd1", "clients": 1}, {"algorithm": "det-cgd1", "clients": 100}]
    np.testing.assert_array_equal(t["value"][sel], [1.5, 3.0, np.nan, 6.0])
    assert set(t["unit"]) == EXPECTED_UNITS
    assert t["date"][0].startswith("2023-11-14")
    # a new commit appears: only its rows are appended, the old ones stay as they were
    fake_results(res, [("a" * 40, 1.0), ("b" * 40, 1.5), ("c" * 40, 2.0)])
    r = history.export(res, out)
    assert (r["read"], r["added"], r["total"]) == (15, 5, 15)
    t2 = history.read_table(out)
    for c in history.COLUMNS:
        np.testing.assert_array_equal(t2[c][:10], t[c])


def test_corrupt_file_is_skipped_with_a_warning(tmp_path):
    res = tmp_path / "results"
    fake_results(res, [("a" * 40, 1.0)])
    (res / "vm" / "broken-env1.json").write_text('{"commit_hash": "x", ')
    (res / "vm" / "partial-env1.json").write_text(json.dumps({"commit_hash": "y"}))
    with pytest.warns(UserWarning) as rec:
        r = history.export(res, tmp_path / "h.h5")
    names = " ".join(str(w.message) for w in rec)
    assert "broken-env1.json" in names and "partial-env1.json" in names
    assert r["added"] == 5


def test_not_an_asv_directory(tmp_path):
    with pytest.raises(HistoryError, match="not an asv results directory"):
        history.export(tmp_path, tmp_path / "h.h5")
    with pytest.raises(HistoryError, match="not a directory"):
        history.export(tmp_path / "nope", tmp_path / "h.h5")


def test_cli(tmp_path):
    import subprocess
    import sys
    res = tmp_path / "results"
    fake_results(res, [("a" * 40, 1.0)])
    r = subprocess.run([sys.executable, "-m", "cgdbench.cli", "history", "--results", str(res), "--out",
                        str(tmp_path / "h.h5")], capture_output=True, text=True)
    assert r.returncode == 0 and "5 new rows" in r.stdout, r.stderr
    (tmp_path / "p").mkdir()
    r = subprocess.run([sys.executable, "-m", "cgdbench.cli", "history", "--results", str(tmp_path / "p"),
                        "--out", str(tmp_path / "h.h5")], capture_output=True, text=True)
    assert r.returncode == 2 and "not an asv results directory" in r.stderr
