"""HDF5 store: round trip, append, locking, preflight errors, interrupted runs."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

import cgdbench
from cgdbench import RunConfig, store
from cgdbench.errors import StoreError

CFG = RunConfig(compressor="rand-k:5", stepsize="l-inv", clients=4, iters=30, log_every=7)


def test_round_trip_and_append(tmp_path):
    out = tmp_path / "r.h5"
    t1 = cgdbench.run(CFG, out=out)
    t2 = cgdbench.run(CFG, out=out)  # same config again: a second run, the first untouched
    assert t1.run_id != t2.run_id
    assert sorted(store.list_runs(out)) == sorted([t1.run_id, t2.run_id])
    r = store.read_run(out, t1.run_id)
    assert r["status"] == "completed" and r["config"] == CFG.to_dict()
    assert r["package_version"] == cgdbench.__version__ and r["git_commit"]
    for k in store.PER_ITERATION:
        np.testing.assert_array_equal(r[k], getattr(t1, k))
    np.testing.assert_array_equal(r["iteration"], [0, 7, 14, 21, 28, 30])
    np.testing.assert_array_equal(r["x_final"], t1.x_final)
    np.testing.assert_array_equal(r["D"], t1.D.dense())
    assert r["D_kind"] == "dense" and r["G_KD"] == t1.G_KD
    assert r["meta"]["dataset"]["name"] == "synthetic-a1a"
    assert r["bits_up"].dtype == np.int64
    with h5py.File(out) as f:
        assert not [k for k in f["runs"] if k.startswith(".")]


def test_preflight_errors_write_nothing(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="does not exist"):
        cgdbench.run(CFG, out=tmp_path / "missing" / "r.h5")
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        cgdbench.run(CFG, out=bad)
    assert bad.read_text() == "not hdf5"
    # root ignores permission bits, so simulate a read-only directory
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = store.os.access
    monkeypatch.setattr(store.os, "access", lambda p, mode: False if str(p) == str(ro) else real_access(p, mode))
    with pytest.raises(StoreError, match="not writable"):
        cgdbench.run(CFG, out=ro / "r.h5")
    assert not (ro / "r.h5").exists()


def test_file_held_by_another_process_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "OPEN_RETRY_SECONDS", 0.5)
    out = tmp_path / "r.h5"
    cgdbench.run(CFG, out=out)
    holder = subprocess.Popen([sys.executable, "-c", f"import h5py,time; f=h5py.File({str(out)!r},'a'); "
                               "print('open', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="open in another process"):
            cgdbench.run(CFG, out=out)
    finally:
        holder.kill()
        holder.wait()
    assert len(store.list_runs(out)) == 1  # the file is intact


def test_interrupted_run_is_stored(tmp_path, monkeypatch):
    from cgdbench.algorithms.det_cgd import DetCgdJob
    calls = {"n": 0}
    real = DetCgdJob.kernel

    class Flaky:
        def entry(self, name, args):
            compiled = real.entry(name, args)

            def call(*a):
                calls["n"] += 1
                if calls["n"] == 4:
                    raise KeyboardInterrupt
                return compiled(*a)
            return call

    monkeypatch.setattr(DetCgdJob, "kernel", Flaky())
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt) as e:
        cgdbench.run(RunConfig(iters=1000), out=out)
    tr = e.value.trace
    assert tr.status == "interrupted" and 0 < tr.iterations < 1000
    r = store.read_run(out)
    assert r["status"] == "interrupted" and r["iterations_completed"] == tr.iterations
    assert r["loss"].size == tr.loss.size > 0


def test_read_errors(tmp_path):
    out = tmp_path / "r.h5"
    with h5py.File(out, "w"):
        pass
    with pytest.raises(StoreError, match="holds no runs"):
        store.read_run(out)
    cgdbench.run(CFG, out=out)
    with pytest.raises(StoreError, match="no run 'x'"):
        store.read_run(out, "x")


def test_a_reader_glancing_at_the_file_does_not_fail_the_writer(tmp_path):
    """A reader that holds the file for a moment: the writer waits for the lock instead of giving up."""
    out = tmp_path / "r.h5"
    cgdbench.run(CFG, out=out)
    holder = subprocess.Popen([sys.executable, "-c", f"import h5py,time; f=h5py.File({str(out)!r},'r'); "
                               "print('open', flush=True); time.sleep(1.5); f.close()"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        cgdbench.run(RunConfig(iters=7), out=out)
    finally:
        holder.kill()
        holder.wait()
    assert len(store.list_runs(out)) == 2
