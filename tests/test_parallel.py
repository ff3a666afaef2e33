"""Threading policy: both compiled paths give bit-identical runs, the chooser follows the load, bad settings fail clearly."""
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import cgdbench
from cgdbench import environment, parallel
from cgdbench.errors import ConfigError

SCRIPT = textwrap.dedent("""
    import json, os, sys, numpy as np, numba, cgdbench
    from cgdbench import parallel
    cfg = cgdbench.RunConfig(**json.loads(sys.argv[1]))
    for threads, path in json.loads(sys.argv[2]):
        numba.set_num_threads(threads)
        os.environ["CGDBENCH_PATH"] = path
        parallel.PathChooser.forget()
        tr = cgdbench.run(cfg)
        blob = np.concatenate([tr.x_final, tr.loss, tr.grad_norm_sq, tr.grad_norm_sq_D, tr.bits_up.astype(float)]
                              + [np.asarray(v, dtype=float).ravel() for v in tr.extras.values()])
        print(json.dumps({"setting": [threads, path], "threads": tr.meta["threads"],
                          "chunks": tr.meta["paths"]["chunks"], "hex": blob.tobytes().hex()}))
""")
#: (threads, CGDBENCH_PATH): one thread; two threads on each fixed path; two threads chosen per chunk.  One
#: process with a 2-thread pool runs them all (numba.set_num_threads): a process per setting cost its start
#: and the compiled kernels' load four times, ~100 s of the suite on a 2-core machine
SETTINGS = [(1, "auto"), (2, "parallel"), (2, "serial"), (2, "auto")]


@pytest.mark.parametrize("kw", [
    dict(algorithm="det-cgd1", compressor="rand-1", stepsize="diag-inv", clients=37, iters=300),
    # phishing's values are not all 1 (rows scaled to unit norm): det-CGD's non-binary path; metrics on logged
    # rows only: the lazy iterations (margins of the kept columns' rows only) between the full ones
    dict(dataset="phishing", algorithm="det-cgd1", compressor="rand-k:3", stepsize="diag-inv", clients=37, iters=200,
         metrics="logged", log_every=5),
    dict(algorithm="det-cgd2", compressor="bern-q:0.5", stepsize="optimal", clients=20, blocks="3", iters=300),
    dict(problem="mlp-classifier", hidden="6,3", algorithm="ef-sgd", compressor="rand-k:0.1", clients=10,
         split="by-label", noise=0.01, iters=300, batch_size=16, reset_iters=7, log_every=3),
    dict(algorithm="ef21", compressor="top-k:3", clients=37, iters=200),
    dict(algorithm="diana", compressor="qsgd:4", clients=37, iters=200, stepsize="scalar:0.05"),
    dict(algorithm="marina", compressor="rand-k:5", clients=37, iters=200, marina_p=0.2),
    dict(algorithm="det-marina", compressor="bern-q:0.5", blocks="3", clients=20, iters=200, marina_p=0.2),
], ids=["det-cgd1", "det-cgd1-weighted", "det-cgd2", "ef-sgd", "ef21", "diana", "marina", "det-marina"])
def test_every_prange_kernel_is_bit_identical_on_every_path_and_thread_count(kw):
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps({**kw, "seed": 9}), json.dumps(SETTINGS)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    out = {tuple(o["setting"]): o for o in map(json.loads, res.stdout.strip().splitlines()[-len(SETTINGS):])}
    assert set(out) == set(SETTINGS)
    assert out[1, "auto"]["threads"] == 1 and out[2, "parallel"]["threads"] == 2
    # each setting ran the path it names (so the comparison compares the two compilations)
    assert out[1, "auto"]["chunks"]["parallel"] == 0 and out[2, "serial"]["chunks"]["parallel"] == 0
    assert out[2, "parallel"]["chunks"]["serial"] == 0 and out[2, "parallel"]["chunks"]["parallel"] > 0
    assert out[2, "auto"]["chunks"]["parallel"] > 0 and out[2, "auto"]["chunks"]["serial"] > 0
    assert len({o["hex"] for o in out.values()}) == 1


class FakeMachine:
    """Seconds per iteration of each path (a function of the chunk number), on a fake clock."""

    def __init__(self, parallel_cost, serial_cost):
        self.parallel_cost, self.serial_cost = parallel_cost, serial_cost
        self.now = 0.0

    def clock(self):
        return self.now

    def chooser(self, key):
        return parallel.PathChooser(2, "auto", key=key, clock=self.clock)

    def drive(self, chooser, chunks, chunk=10):
        total = 0.0
        for i in range(chunks):
            path, cap = chooser.pick()
            n = min(chunk, cap) if cap else chunk
            seconds = n * (self.parallel_cost(i) if path == "parallel" else self.serial_cost(i))
            self.now += seconds
            chooser.record(path, seconds, n)
            total += seconds
        return total


@pytest.fixture(autouse=True)
def _fresh_memory(monkeypatch):
    monkeypatch.setattr(parallel.PathChooser, "_memory", {})
    monkeypatch.setattr(parallel.PathChooser, "_warmed", set())


def test_stepsize_matrices_do_not_depend_on_the_blas_thread_count(tmp_path):
    """The setup's NumPy products run on one BLAS thread: det-CGD1's L_i^{-1} blocks were different in their last
    bits with OPENBLAS_NUM_THREADS=2 (a threaded product sums in another order), so a run's D, and every
    metric after it, depended on the machine's core count."""
    code = textwrap.dedent("""
        import hashlib
        import numpy as np
        from cgdbench import engine
        from cgdbench.config import RunConfig
        for kw in (dict(compressor="bern-q:0.5", stepsize="l-inv", blocks="3", clients=5),
                   dict(stepsize="optimal-diag")):
            D = engine.build(RunConfig(algorithm="det-cgd1", iters=5, **kw)).D.dense()
            print(hashlib.sha256(np.ascontiguousarray(D).tobytes()).hexdigest())
    """)
    out = {}
    for t in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": t, "CGDBENCH_CACHE": str(tmp_path / t)}  # no cached D
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out[t] = r.stdout.split()
    assert len(out["1"]) == 2 and out["1"] == out["2"]


def test_chooser_runs_parallel_on_a_quiet_machine():
    m = FakeMachine(lambda i: 38e-6, lambda i: 72e-6)
    c = m.chooser("quiet")
    m.drive(c, 200)
    assert c.chunks["parallel"] > 0.95 * 200 and c.switches == 0


def test_a_slow_first_parallel_chunk_does_not_send_the_run_to_serial():
    """The first parallel chunks of a process start OpenMP's team (thread creation, cold caches on the second
    core): measured 1.2 ms for the first iteration and 0.74 ms each for the next two on a1a, 100 clients,
    against ~80 µs after.  They are a warm-up, not a sample: a first sample of 0.74 ms once sent such runs to
    the serial path (1.6x slower) for most of their iterations."""
    m = FakeMachine(lambda i: 1e-3 if i < 3 else 40e-6, lambda i: 72e-6)
    c = m.chooser("cold team")
    m.drive(c, 300)
    assert c.chunks["parallel"] > 0.95 * 300 and c.switches == 0
    # once per process and shape: with what the first run learnt forgotten, a second run of the same shape (the
    # team started) warms up one iteration, as a switch back to parallel does, then times a probe
    parallel.PathChooser.forget()
    c2 = m.chooser("cold team")
    assert c2.pick() == ("parallel", 1)
    c2.record("parallel", 50e-6, 1)
    assert c2.pick() == ("parallel", parallel.PROBE_ITERS)
    c3 = m.chooser("another shape")  # a shape new to the process warms up COLD_WARMUPS times
    for _ in range(parallel.COLD_WARMUPS):
        assert c3.pick() == ("parallel", 1)
        c3.record("parallel", 1e-3, 1)
    assert c3.pick() == ("parallel", parallel.PROBE_ITERS)


def test_one_slow_chunk_on_a_quiet_machine_does_not_send_the_run_to_serial():
    m = FakeMachine(lambda i: 300e-6 if i % 97 == 0 else 38e-6, lambda i: 72e-6)
    c = m.chooser("outliers")
    total = m.drive(c, 2000)
    assert c.chunks["parallel"] > 0.97 * 2000
    assert total <= 1.15 * 2000 * 10 * 38e-6 + 19 * 10 * 300e-6


def test_chooser_falls_back_to_serial_when_parallel_regions_stall():
    """On a busy machine a 2-thread region now and then waits a time slice (~7 ms) for a core."""
    m = FakeMachine(lambda i: 7e-3 if i % 3 == 0 else 45e-6, lambda i: 72e-6)
    c = m.chooser("busy")
    total = m.drive(c, 2000)
    assert c.chunks["serial"] > 0.97 * 2000
    assert total <= 1.3 * 2000 * 10 * 72e-6  # within 1.3x of running serial throughout


def test_chooser_switches_back_when_the_load_goes():
    m = FakeMachine(lambda i: 7e-3 if i < 50 else 38e-6, lambda i: 72e-6)
    c = m.chooser("load-goes")
    m.drive(c, 2000)  # the stalls push the next probe back by 20x their cost (~1.4 s), then it recovers
    assert c.switches >= 1 and c._best == "parallel"


def test_chooser_remembers_across_runs_in_a_process():
    busy = FakeMachine(lambda i: 7e-3, lambda i: 72e-6)
    busy.drive(busy.chooser("k"), 50)
    again = busy.chooser("k")
    assert again.pick() == ("serial", None)  # no first probe of the stalling path
    assert parallel.PathChooser(2, "auto", key="other").pick()[0] == "parallel"


def test_fixed_settings_and_one_thread():
    assert parallel.PathChooser(1, "auto").paths == ("serial",)
    assert parallel.PathChooser(2, "serial").paths == ("serial",)
    assert parallel.PathChooser(2, "parallel").paths == ("parallel",)


def test_auto_runs_the_serial_path_only_when_there_is_too_little_work_to_split():
    small = parallel.PARALLEL_MIN_WORK - 1
    c = parallel.PathChooser(2, "auto", work=small)
    assert c.paths == ("serial",) and str(small) in c.report()["why"]
    assert parallel.PathChooser(2, "auto", work=parallel.PARALLEL_MIN_WORK).paths == ("parallel", "serial")
    assert "why" not in parallel.PathChooser(2, "auto", work=10 ** 6).report()
    assert parallel.PathChooser(2, "parallel", work=0).paths == ("parallel",)  # a fixed setting wins


@pytest.mark.parametrize("kw, split", [
    (dict(clients=1), False),  # one client: one range, nothing to split
    (dict(problem="saddle-quartic", dim=20, algorithm="ef-sgd", compressor="identity", clients=2, batch_size=16,
          x0="saddle"), False),  # the smoke suite's saddle: 2 workers x 17 x 20 = 680 operations
    (dict(clients=4), True),
    (dict(problem="mlp-classifier", hidden="6,3", algorithm="ef-sgd", compressor="rand-k:0.1", clients=10,
          split="by-label"), True),
], ids=["one-client", "small-saddle", "four-clients", "mlp-10-workers"])
def test_a_run_compiles_and_runs_only_the_paths_its_work_size_allows(kw, split, monkeypatch):
    import numba
    monkeypatch.setenv("CGDBENCH_PATH", "auto")
    parallel.PathChooser.forget()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs a pool of 2 Numba threads (NUMBA_NUM_THREADS >= 2)")
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        tr = cgdbench.run(cgdbench.RunConfig(iters=30, **kw))
    finally:
        numba.set_num_threads(before)
    paths = tr.meta["paths"]
    if split:
        assert paths["setting"] == "auto" and "why" not in paths
    else:
        assert paths["setting"] == "serial" and "below" in paths["why"] and paths["chunks"]["parallel"] == 0


def test_bad_path_setting(monkeypatch):
    monkeypatch.setenv("CGDBENCH_PATH", "fast")
    with pytest.raises(ConfigError, match=r"CGDBENCH_PATH='fast': choose one of auto, parallel, serial"):
        parallel.path_setting()


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "cgdbench.cli", "run", "--iters", "5", "--quiet", *args],
                          capture_output=True, text=True, env={**os.environ, **env})


def test_unknown_threading_layer_is_a_one_line_error():
    r = _cli({"NUMBA_THREADING_LAYER": "fastest"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "NUMBA_THREADING_LAYER='fastest' is not a Numba threading layer; choose one of" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unavailable_threading_layer_names_the_usable_ones():
    usable = parallel.available_layers()
    missing = next((x for x in ("tbb", "omp", "workqueue") if x not in usable), None)
    if missing is None:
        pytest.skip("every threading layer loads on this machine")
    r = _cli({"NUMBA_THREADING_LAYER": missing})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"NUMBA_THREADING_LAYER='{missing}' cannot be used here" in r.stderr
    assert f"layers that load here: {', '.join(usable)}" in r.stderr


def test_a_written_run_records_its_environment(tmp_path):
    out = tmp_path / "r.h5"
    cgdbench.run(cgdbench.RunConfig(iters=20), out=out)
    with h5py.File(out, "r") as f:
        attrs = dict(f["runs"][next(iter(f["runs"]))].attrs)
    meta = json.loads(attrs["meta"])
    env = meta["environment"]
    for key in ("package_version", "python", "numpy", "numba", "scipy", "h5py", "threading_layer", "threads",
                "cpu", "cpu_target", "git_commit"):
        assert env.get(key) not in (None, ""), key
    assert env["threads"] == meta["threads"] and env["threading_layer"] == meta["threading_layer"] != "not started"
    assert set(meta["paths"]["chunks"]) == {"parallel", "serial"}
    assert attrs["git_commit"] == env["git_commit"]


def test_commit_only_from_a_work_tree_that_tracks_the_package(tmp_path):
    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)
    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    site = tmp_path / "site-packages" / "cgdbench"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    # installed (untracked) inside another repository: that repository's HEAD is not ours
    assert environment.commit_of(site / "__init__.py") == environment.NOT_A_CHECKOUT
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "y")
    assert len(environment.commit_of(site / "__init__.py")) == 40
    assert environment.commit_of(tmp_path.parent / "nowhere.py") == environment.NOT_A_CHECKOUT


def test_a_stale_estimate_inside_the_margin_does_not_stop_probing():
    """Parallel looked only a little faster (inside the 1.25x margin), then the machine went quiet."""
    m = FakeMachine(lambda i: 100e-6 if i < 100 else 36e-6, lambda i: 72e-6)
    c = m.chooser("stale")
    m.drive(c, 3000)
    assert c._best == "parallel" and c.chunks["parallel"] > 0.8 * 3000


def test_checkpoints_are_visited_in_order_whatever_the_chunk():
    """sosp_every smaller than a chunk: every checkpoint is still taken, in order."""
    tr = cgdbench.run(cgdbench.RunConfig(problem="saddle-quartic", dim=6, algorithm="ef-sgd", lr=0.05, iters=2400,
                                         sosp_every=3, log_every=50, batch_size=8))
    np.testing.assert_array_equal(tr.extras["lambda_min_iter"], list(range(0, 2400, 3)) + [2400])
