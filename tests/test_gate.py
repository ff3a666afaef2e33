"""The CI gate: compare logic on crafted baselines, and the real metrics against the committed baseline."""
import json

import pytest

from cgdbench import gate

BASE = {"metrics": {"c1": {"bits_to_eps": 100, "final_loss": 0.5}, "c2": {"bits_to_eps": 7}},
        "timings": {"k1": {"speedup": 10.0}, "k2": {"speedup": 0.5}}}


def current(**changes):
    cur = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        *keys, last = path.split("__")
        d = cur
        for k in keys:
            d = d[k]
        if value is None:
            del d[last]
        else:
            d[last] = value
    return cur


def statuses(rows):
    return {(r[1], r[2]): r[-1] for r in rows if r[-1] != "ok"}


def test_pass():
    rows, ok = gate.compare(BASE, current(timings__k1={"speedup": 5.01}))  # within 2x
    assert ok and not statuses(rows)


def test_changed_metric_fails_even_by_one_ulp():
    rows, ok = gate.compare(BASE, current(metrics__c1__final_loss=0.5000000000000001))
    assert not ok and statuses(rows) == {("c1", "final_loss"): "changed"}


def test_missing_and_new_cells_fail():
    rows, ok = gate.compare(BASE, current(metrics__c2=None, metrics__c3={"bits_to_eps": 1}))
    assert not ok and statuses(rows) == {("c2", "*"): "missing", ("c3", "*"): "new"}
    rows, ok = gate.compare(BASE, current(metrics__c1__bits_to_eps=None))
    assert not ok and statuses(rows) == {("c1", "bits_to_eps"): "missing"}


def test_slower_kernel_fails():
    rows, ok = gate.compare(BASE, current(timings__k2={"speedup": 0.2}))
    assert not ok and statuses(rows) == {("k2", "speedup"): "slower"}
    assert "k2" in gate.format_rows(rows, only_failures=True)
    rows, ok = gate.compare(BASE, current(timings__k2={"speedup": 0.2}), tolerance=3.0)
    assert ok


def test_metrics_match_the_committed_baseline(data_dir):
    """The deterministic half of the gate, as CI runs it."""
    baseline = json.loads(gate.DEFAULT_BASELINE.read_text())
    rows, ok = gate.compare({"metrics": baseline["metrics"]}, {"metrics": gate.metrics(data_dir)})
    assert ok, gate.format_rows(rows, only_failures=True)


def test_update_baseline_round_trip(tmp_path, data_dir, capsys):
    path = tmp_path / "b.json"
    assert gate.run_gate(path, update=True, data_dir=data_dir, skip_timings=True) == 0
    assert gate.run_gate(path, data_dir=data_dir, skip_timings=True) == 0
    doc = json.loads(path.read_text())
    doc["metrics"][next(iter(doc["metrics"]))]["bits_up"] += 1
    path.write_text(json.dumps(doc))
    assert gate.run_gate(path, data_dir=data_dir, skip_timings=True) == 1
    assert "changed" in capsys.readouterr().out
    with pytest.raises(gate.GateError, match="--update-baseline"):
        gate.run_gate(tmp_path / "none.json", data_dir=data_dir, skip_timings=True)
