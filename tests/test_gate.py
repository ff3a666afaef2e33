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
    rows, ok = gate.compare(BASE, current(timings__k1={"speedup": 6.7}))  # within the default 1.5x
    assert ok and not statuses(rows)
    rows, ok = gate.compare(BASE, current(timings__k1={"speedup": 6.6}))
    assert not ok and statuses(rows) == {("k1", "speedup"): "slower"}


def test_changed_metric_fails_even_by_one_ulp():
    rows, ok = gate.compare(BASE, current(metrics__c1__final_loss=0.5000000000000001))
    assert not ok and statuses(rows) == {("c1", "final_loss"): "changed"}
    table = gate.format_rows(rows, only_failures=True)
    # full precision, and the difference
    assert "0.5000000000000001" in table and "+1.1102230246251565e-16" in table


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
    env = gate.environment()
    baseline = gate.entry_for(json.loads(gate.DEFAULT_BASELINE.read_text()), env)
    assert baseline is not None, (f"no baseline entry for this machine ({gate._machine({'environment': env})}): "
                                  "run `cgdbench gate --update-baseline` on a quiet machine and commit "
                                  "cgdbench/gate_baseline.json")
    rows, ok = gate.compare({"metrics": baseline["metrics"]}, {"metrics": gate.metrics(data_dir)})
    assert ok, gate.format_rows(rows, only_failures=True)


def test_update_baseline_round_trip(tmp_path, data_dir, capsys):
    path = tmp_path / "b.json"
    assert gate.run_gate(path, update=True, data_dir=data_dir, skip_timings=True) == 0
    assert gate.run_gate(path, data_dir=data_dir, skip_timings=True) == 0
    doc = json.loads(path.read_text())
    entry = doc["machines"][0]
    entry["metrics"][next(iter(entry["metrics"]))]["bits_up"] += 1
    path.write_text(json.dumps(doc))
    assert gate.run_gate(path, data_dir=data_dir, skip_timings=True) == 1
    assert "changed" in capsys.readouterr().out
    with pytest.raises(gate.GateError, match="--update-baseline"):
        gate.run_gate(tmp_path / "none.json", data_dir=data_dir, skip_timings=True)


class NoisyMachine:
    """A fake clock: each call costs its nominal seconds times noise; now and then a call is preempted.

    The noise is what a shared 2-core machine does to single-threaded timings: a few percent
    of jitter on every call, and 30% of calls stretched up to 4x by another process.
    """

    def __init__(self, seed):
        import numpy as np
        self.rng = np.random.default_rng(seed)
        self.now = 0.0

    def clock(self):
        return self.now

    def cost(self, seconds):
        def call():
            factor = 1 + abs(self.rng.normal(0, 0.03))
            if self.rng.random() < 0.3:
                factor *= self.rng.uniform(1, 4)
            self.now += seconds * factor
        return call


def _simulated_ratio(seed, kernel_s, numpy_s):
    m = NoisyMachine(seed)
    fast, slow = gate._best_pair(m.cost(kernel_s), m.cost(numpy_s), gate.DEFAULT_REPEATS, clock=m.clock)
    return slow / fast


def test_timing_half_passes_noise_and_fails_a_2x_slowdown():
    """The gate's pass/fail logic on a simulated noisy timer: 200 machines, unchanged code and a 2x slower kernel."""
    base = {"timings": {"k": {"speedup": 36.0}}}
    unchanged = [gate.compare(base, {"timings": {"k": {"speedup": _simulated_ratio(s, 1e-3, 36e-3)}}})[1]
                 for s in range(200)]
    slower = [gate.compare(base, {"timings": {"k": {"speedup": _simulated_ratio(s, 2e-3, 36e-3)}}})[1]
              for s in range(200)]
    assert all(unchanged) and not any(slower)


def _entry(**env):
    return {"environment": {**gate.environment(), **env}, "metrics": {"c": {"bits_up": 1}}, "timings": {}}


def test_baseline_from_another_machine_or_version_is_refused(tmp_path, capsys):
    doc = {"version": 3, "machines": [_entry(cpu="Some Other CPU", numba="0.1.0"), _entry(python="2.7")]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    assert gate.run_gate(path) == 1
    out = capsys.readouterr().out
    assert "no entry recorded on this machine with these versions" in out
    assert "entry for Some Other CPU / " in out
    assert "cpu: baseline 'Some Other CPU', here" in out and "numba: baseline '0.1.0', here" in out
    assert "python: baseline '2.7', here" in out
    assert out.count("python:") == 1 and "numpy:" not in out  # only the values that differ
    # a version-2 file (one entry at the top level) is read as one machine's entry
    path.write_text(json.dumps(_entry(cpu="Some Other CPU")))
    assert gate.run_gate(path) == 1 and "cpu: baseline 'Some Other CPU'" in capsys.readouterr().out


def test_update_keeps_other_machines_of_the_same_versions_and_drops_stale_ones(tmp_path, data_dir, capsys):
    other, stale, old_self = _entry(cpu="Other CPU"), _entry(cpu="Stale CPU", numba="0.1.0"), _entry()
    older = _entry(cpu="Older CPU")
    del older["environment"]["cpu_target"]  # recorded before the gate compared it
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"version": 3, "machines": [stale, old_self, other, older]}))
    assert gate.run_gate(path, update=True, data_dir=data_dir, skip_timings=True) == 0
    out = capsys.readouterr().out
    assert "1 other machine(s) kept" in out
    here = gate.environment()
    assert f"dropped the entry for Stale CPU / {here['cpu_target']} / x86_64 (numba '0.1.0' ≠" in out
    assert "dropped the entry for Older CPU / None / x86_64 (cpu_target not recorded)" in out
    doc = json.loads(path.read_text())
    cpus = [e["environment"]["cpu"] for e in doc["machines"]]
    assert sorted(cpus) == sorted(["Other CPU", gate.environment()["cpu"]])
    assert doc["machines"][cpus.index("Other CPU")] == other
    mine = gate.entry_for(doc, gate.environment())
    assert mine["metrics"] != old_self["metrics"] and "a1a.gd.identity.scalar.n1" in mine["metrics"]
    assert f"exact metrics changed; the entries for Other CPU / {here['cpu_target']} / x86_64 still hold" in out
    assert gate.run_gate(path, data_dir=data_dir, skip_timings=True) == 0


def test_the_shipped_baseline_is_for_this_environment():
    """The committed baseline holds an entry for the versions and CPU CI runs on (else CI's gate refuses it)."""
    doc = json.loads(gate.DEFAULT_BASELINE.read_text())
    assert gate.entry_for(doc, gate.environment()) is not None, [e["environment"] for e in gate.entries(doc)]


def test_bad_gate_options():
    for kw, msg in [(dict(repeats=0), "--repeats 0"), (dict(tolerance=float("nan")), "--tolerance nan"),
                    (dict(tolerance=0.5), "--tolerance 0.5"), (dict(slowdown=0), "--inject-slowdown 0")]:
        with pytest.raises(gate.GateError, match=msg):
            gate.run_gate(**kw)


def test_baseline_ships_inside_the_package():
    import cgdbench
    from pathlib import Path
    assert gate.DEFAULT_BASELINE.parent == Path(cgdbench.__file__).resolve().parent


def test_a_recorded_ratio_is_the_median_of_several_passes(tmp_path, monkeypatch):
    """One timing pass can land on a fast or slow spell of the machine: the baseline takes the median pass."""
    passes = iter([{"k": {"speedup": 5.0}}, {"k": {"speedup": 1.0}}, {"k": {"speedup": 3.0}}])
    monkeypatch.setattr(gate, "metrics", lambda data_dir=None: {"c": {"bits_up": 1}})
    monkeypatch.setattr(gate, "timings", lambda data_dir=None, repeats=9, slowdown=1: next(passes))
    path = tmp_path / "b.json"
    assert gate.run_gate(path, update=True) == 0
    assert gate.entry_for(json.loads(path.read_text()), gate.environment())["timings"] == {"k": {"speedup": 3.0}}
    assert gate.RECORD_PASSES == 3
