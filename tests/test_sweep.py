"""`cgdbench compare`: grids and suites, skip-if-done, repeats, failure isolation, SIGKILL resume, workers, Dask."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import cgdbench
from cgdbench import store, suites, sweep
from cgdbench.errors import CgdbenchError, ConfigError

GRID = {"algorithm": ["det-cgd1", "det-cgd2"], "compressor": "rand-1", "clients": 3, "iters": 30,
        "seed": [0, 1], "log_every": 1}


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cgdbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_grid_expansion_and_deterministic_ids():
    sw = sweep.expand(GRID)
    assert len(sw.cells) == 4
    assert [c.id for c in sw.cells] == [c.id for c in sweep.expand(GRID).cells]
    assert all(c.id == store.run_id(c.config) for c in sw.cells)
    assert len({c.id for c in sw.cells}) == 4
    assert {(c.config.algorithm, c.config.seed) for c in sw.cells} == {
        ("det-cgd1", 0), ("det-cgd1", 1), ("det-cgd2", 0), ("det-cgd2", 1)}


def test_bad_grids():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['itrs'\]; RunConfig fields are: .*iters"):
        sweep.expand({**GRID, "itrs": 5})
    with pytest.raises(ConfigError, match="grid axis 'seed' is an empty list"):
        sweep.expand({**GRID, "seed": []})
    with pytest.raises(ConfigError, match=r"unknown \[compare\] key"):
        sweep.expand({**GRID, "compare": {"targt": 1}})
    with pytest.raises(ConfigError, match=r"unknown table \[comapre\]; the only table is \[compare\]"):
        sweep.expand({**GRID, "comapre": {"target": 1}})
    # an uncompressed method in a grid of compressors: the cell is named, and the way out
    mixed = {**GRID, "algorithm": ["gd", "det-cgd1"], "compressor": ["identity", "rand-1"], "stepsize": "scalar"}
    with pytest.raises(ConfigError, match=r"grid cell \(algorithm = 'gd', compressor = 'rand-1', seed = 0\): algorithm 'gd' "
                                         r"does not compress.*skip_incompatible = true"):
        sweep.expand(mixed)
    sw = sweep.expand({**mixed, "compare": {"skip_incompatible": True}})
    assert {(c.config.algorithm, c.config.compressor) for c in sw.cells} == {
        ("gd", "identity"), ("det-cgd1", "identity"), ("det-cgd1", "rand-1")}
    assert sw.notes[0].startswith("skip_incompatible: 2 grid cell(s) left out (seeds counted), e.g. algorithm = 'gd', ")
    # a misspelt value is an error whatever the flag (not a combination left out)
    with pytest.raises(ConfigError, match=r"grid cell \(algorithm = 'gd', compressor = 'rnd-k:2', seed = 0\): "
                                         r"unknown compressor 'rnd-k:2'") as err:
        sweep.expand({**mixed, "compressor": ["identity", "rnd-k:2"], "compare": {"skip_incompatible": True}})
    assert "skip_incompatible" not in str(err.value)
    with pytest.raises(ConfigError, match="skip_incompatible 'yes': must be true or false"):
        sweep.expand({**mixed, "compare": {"skip_incompatible": "yes"}})
    # a compressor's range that needs no data is refused when the grid expands, before any cell runs
    for spec, msg in (("rand-k:2.5", "fraction 2.5 is out of range"), ("rand-k:0", "k = 0 is out of range"),
                      ("bern-q:1.5", "q = 1.5 is out of range"), ("block-rand-k:0.0", "fraction 0.0")):
        with pytest.raises(ConfigError, match=msg):
            sweep.expand({**GRID, "compressor": ["rand-1", spec]})
    from cgdbench import compressors
    for spec, msg in (("top-k:7.5", "fraction 7.5 is out of range"), ("qsgd:0", "levels is out of range"),
                      ("sketch-top-k:-2", "k = -2 is out of range")):
        with pytest.raises(ConfigError, match=msg):
            compressors.parse(spec)
    big = sweep.expand({**GRID, "seed": list(range(300))})
    with pytest.raises(ConfigError, match="600 cells, more than 500; pass --yes"):
        sweep.check_size(big)
    sweep.check_size(big, yes=True)


def test_every_suite_expands_and_names_its_cells():
    for name in suites.REGISTRY:
        sw = suites.make(name, seeds=2, iters=10)
        assert sw.cells and sw.name == name
        seeds = {c.config.seed for c in sw.cells}
        assert seeds == {0, 1}
        assert all(c.config.iters == 10 for c in sw.cells)
    assert suites.get("d.2.1").name == "detcgd-distributed" and suites.get("figure2").name == "saddle-escape"
    every = suites.make("detcgd-scalar-vs-matrix", dataset="all", seeds=1, iters=10)  # ../shared has all five
    assert {c.config.dataset for c in every.cells} == set(suites.PAPER_DATASETS)
    for own in ("saddle-escape", "saddle-randomk-classes"):  # their problems carry their own data
        with pytest.raises(ConfigError, match=f"{own} runs on its own data"):
            suites.make(own, dataset="all", seeds=1, iters=10)
    with pytest.raises(ConfigError, match="unknown suite 'nope'.*smoke"):
        suites.get("nope")


def test_list_suites():
    r = cli("list", "suites")
    assert r.returncode == 0
    for name in suites.REGISTRY:
        assert name in r.stdout


def test_skip_if_done_rerun_and_summary(tmp_path):
    out = tmp_path / "s.h5"
    sw = sweep.expand(GRID)
    c1 = sweep.run_sweep(sw, out, progress=False, log=lambda m: None)
    assert (c1["ran"], c1["skipped"], c1["failed"]) == (4, 0, 0)
    c2 = sweep.run_sweep(sw, out, progress=False, log=lambda m: None)
    assert (c2["ran"], c2["skipped"]) == (0, 4)
    before = {i: store.read_run(out, i)["created"] for i in store.list_runs(out)}
    c3 = sweep.run_sweep(sw, out, rerun=True, progress=False, log=lambda m: None)
    assert c3["ran"] == 4 and len(store.list_runs(out)) == 4  # replaced, not appended
    assert all(store.read_run(out, i)["created"] != t for i, t in before.items())
    rows = sweep.summary_rows(out, 1e-2)
    assert len(rows) == 2 and all(r["seeds"] == 2 for r in rows)
    # the same cells run alone give the same numbers: a reused Built changes nothing
    tr = cgdbench.run(sw.cells[1].config)
    rec = store.read_run(out, sw.cells[1].id)
    np.testing.assert_array_equal(tr.loss, rec["loss"])
    np.testing.assert_array_equal(tr.x_final, rec["x_final"])
    text = sweep.format_summary(rows, 1e-2)
    assert "det-cgd1 | rand-1 | diag-inv" in text and "median [10–90%] over seeds" in text
    assert "iters to ε²=0.01" in text.splitlines()[0] and "ε-SOSP" not in text  # det-CGD: no SOSP column
    # what every row shares is said once under the table, not a column (the console table was ~250 wide)
    assert "every row: data: logreg-nonconvex / synthetic-a1a / n=3; seeds: 2" in text
    assert "data" not in text.splitlines()[0].split()
    # every iterate logged: no caveat on the "to ε²" mean; logged every 10: said under the table
    assert "over the logged rows only" not in text
    assert "over the logged rows only" in sweep.format_summary([{**r, "log_every": 10} for r in rows], 1e-2)


def test_summary_prints_each_distinct_run_warning_once(tmp_path):
    """A warning every seed gives (a γ above EF21's theory) is printed once under the table, with its seed count;
    a method without warnings adds no line."""
    out = tmp_path / "w.h5"
    common = {"clients": 3, "iters": 10, "seed": [0, 1]}
    sw = sweep.expand({"algorithm": "ef21", "compressor": "top-k:3", "stepsize": "scalar:5", **common})
    sw.cells += sweep.expand({"algorithm": "det-cgd1", **common}).cells
    assert sweep.run_sweep(sw, out, progress=False, log=lambda m: None)["failed"] == 0
    rows = sweep.summary_rows(out, 1e-2)
    ef21 = next(r for r in rows if r["algorithm"] == "ef21")
    # top-k draws nothing: both seeds give the same two warnings (γ above theory, and the blow-up it causes)
    assert [(w.split()[0], n) for w, n in ef21["warnings"]] == [("γ", 2), ("blow-up:", 2)]
    assert next(r for r in rows if r["algorithm"] == "det-cgd1")["warnings"] == []
    text = sweep.format_summary(rows, 1e-2)
    tail = text.split("warnings (each distinct one once):\n")[1].splitlines()
    assert len(tail) == 2 and all(t.startswith("  ef21 | top-k:3 | scalar:5: ") and t.endswith("(2/2 seeds)")
                                  for t in tail)


def test_saddle_summary_counts_sosp_verdicts_instead_of_to_target_columns(tmp_path):
    """Compressed SGD from the saddle: an ε-SOSP column (seeds whose final check passed) and no "to ε²" columns,
    which mean nothing there (‖∇f‖ starts at ~0)."""
    out = tmp_path / "sq.h5"
    sw = sweep.expand({"problem": "saddle-quartic", "algorithm": "ef-sgd", "x0": "saddle", "noise": [0.0, 0.01],
                       "seed": [0, 1]})
    assert sweep.run_sweep(sw, out, progress=False, log=lambda m: None)["failed"] == 0
    rows = sweep.summary_rows(out, 1e-2)
    assert sorted((r["also"]["noise"], tuple(r["sosp"])) for r in rows) == [(0.0, (0, 2)), (0.01, (2, 2))]
    text = sweep.format_summary(rows, 1e-2)
    head = text.splitlines()[0]
    assert "ε-SOSP (seeds)" in head and "to ε²" not in head
    # without noise both seeds stay at the saddle: the gradient is 0, λ_min is what fails, and the table says so
    assert "0/2 (λ_min < −√(ρε) in 2)" in text and "2/2  " in text
    assert {r["also"]["noise"]: r["sosp_missed"] for r in rows}[0.01] is None
    assert sweep._sosp_missed({"sosp_missed": {"grad_over_eps": 5.27, "lambda_min_fails": 0}}) == " (‖∇f‖ up to 5.3ε)"


def test_a_plain_run_of_a_stored_config_is_a_repeat_not_a_seed(tmp_path):
    out = tmp_path / "r.h5"
    cfg = cgdbench.RunConfig(iters=20)
    a = cgdbench.run(cfg, out=out)
    b = cgdbench.run(cfg, out=out)
    assert b.run_id == a.run_id + ".r2"
    assert store.read_run(out, b.run_id)["repeat_of"] == a.run_id
    assert store.completed_ids(out) == {a.run_id}
    rows = sweep.summary_rows(out, 1e-2)
    assert len(rows) == 1 and rows[0]["seeds"] == 1
    r = cli("run", "--iters", "20", "--out", str(out), "--quiet")
    assert r.returncode == 0 and "already in" in r.stderr and "repeat" in r.stderr


def test_repeated_grid_values_are_one_cell_and_said(tmp_path):
    sw = sweep.expand({"seed": [0, 0, 1], "compressor": ["rand-1", "rand1"], "iters": 5})
    assert len(sw.cells) == 2 and sw.notes == [
        "4 grid combination(s) name a run already in the grid (the same config), so it runs once, e.g. "
        "seed = 0, compressor = 'rand1'"]
    assert sweep.expand({"seed": [0, 1], "iters": 5}).notes == []


def test_a_bad_problem_is_one_error_before_any_cell_runs(tmp_path):
    """A missing dataset, or more clients than rows, in any cell: one error naming the value and the cell,
    and no file written (before, every such cell ran and was stored as failed)."""
    out = tmp_path / "f.h5"
    for grid, words in (({"dataset": [None, str(tmp_path / "missing.svm")], "iters": 20}, "does not exist"),
                        ({"dataset": "nosuch", "iters": 20}, "a1a"),
                        ({"clients": [10, 5000], "iters": 20}, "--clients 5000: more clients than rows"),
                        # the compressors bound to the problem's d (k > d was a failed cell per seed)
                        ({"compressor": ["rand-1", "rand-k:100000"], "iters": 20}, "k = 100000 is out of range"),
                        ({"algorithm": "ef21", "compressor": "top-k:500", "iters": 20}, "d = 123")):
        with pytest.raises(ConfigError, match="no cell was run") as err:
            sweep.run_sweep(sweep.expand(grid), out, progress=False, log=lambda m: None)
        assert words in str(err.value) and not out.exists()


def test_dask_and_a_scheduler_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--dask starts a local cluster and --scheduler tcp://x:1 connects"):
        sweep.run_sweep(sweep.expand({"iters": 5}), tmp_path / "d.h5", dask=True, scheduler="tcp://x:1",
                        progress=False, log=lambda m: None)
    assert not (tmp_path / "d.h5").exists()


def test_a_failing_cell_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    from cgdbench import compressors
    entry = compressors.REGISTRY["rand-k"]
    real = entry.traits["sketch"]

    def broken(params, d, block_ptr, L_diag):  # a bug (not bad input) in one cell's build
        if params == "7":
            raise RuntimeError("the rand-k:7 sketch is broken")
        return real(params, d, block_ptr, L_diag)
    monkeypatch.setitem(entry.traits, "sketch", broken)
    out = tmp_path / "f.h5"
    grid = {"compressor": ["rand-1", "rand-k:7"], "iters": 20}
    counts = sweep.run_sweep(sweep.expand(grid), out, progress=False, log=lambda m: None)
    assert counts["failed"] == 1 and counts["ran"] == 2
    status = {store.read_run(out, i)["status"] for i in store.list_runs(out)}
    assert status == {"completed", "failed"}
    failed = next(store.read_run(out, i) for i in store.list_runs(out) if store.read_run(out, i)["status"] == "failed")
    assert "rand-k:7 sketch is broken" in failed["meta"]["error"]
    # a failed cell is not done: the next sweep tries it again (and replaces it)
    again = sweep.run_sweep(sweep.expand(grid), out, progress=False, log=lambda m: None)
    assert (again["ran"], again["skipped"]) == (1, 1) and len(store.list_runs(out)) == 2


def test_cli_compare_with_a_toml_grid(tmp_path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('algorithm = ["det-cgd1", "gd"]\ncompressor = ["rand-1", "identity"]\nstepsize = "scalar"\n'
                   'iters = 20\n[compare]\ntarget = 0.5\n')
    out = tmp_path / "c.h5"
    r = cli("compare", "--config", str(cfg), "--out", str(out), "--json")
    # gd takes only identity: that cell fails at RunConfig time, before anything runs
    assert r.returncode == 2 and "does not compress" in r.stderr and not out.exists()
    cfg.write_text('algorithm = ["det-cgd1", "det-cgd2"]\ncompressor = "rand-1"\niters = 20\nseed = [0, 1]\n'
                   '[compare]\ntarget = 0.5\n')
    r = cli("compare", "--config", str(cfg), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["counts"]["ran"] == 4 and doc["target"] == 0.5 and len(doc["rows"]) == 2
    r = cli("compare", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 0 and "4 already completed" in r.stderr and "0 cells run" in r.stdout
    r = cli("compare", "--suite", "nope", "--out", str(out))
    assert r.returncode == 2 and "unknown suite 'nope'" in r.stderr
    r = cli("compare", "--config", str(cfg), "--out", str(tmp_path / "no" / "x.h5"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_sigkill_mid_sweep_loses_no_finished_cell(tmp_path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('clients = 10\niters = 3000\nlog_every = 1\nseed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n')
    out = tmp_path / "k.h5"
    # the kernels in Numba's disk cache first, so the subprocess below loads rather than compiles them
    sweep.run_sweep(sweep.expand({"clients": 10, "iters": 5}), tmp_path / "warm.h5", progress=False,
                    log=lambda m: None)
    p = subprocess.Popen([sys.executable, "-m", "cgdbench.cli", "compare", "--config", str(cfg), "--out", str(out),
                          "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        done = set()
        while time.time() < deadline and len(done) < 3:
            time.sleep(0.2)
            try:
                done = store.completed_ids(out)
            except Exception:  # noqa: BLE001 — the file is being written
                pass
        assert len(done) >= 3, "the sweep did not finish three cells in time"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    kept = store.completed_ids(out)
    assert kept and len(kept) < 12
    counts = sweep.run_sweep(sweep.load_toml(cfg), out, progress=False, log=lambda m: None)
    assert counts["skipped"] == len(kept) and counts["ran"] == 12 - len(kept)
    assert len(store.completed_ids(out)) == 12 and len(store.list_runs(out)) == 12


def test_process_pool_workers(tmp_path):
    out = tmp_path / "w.h5"
    counts = sweep.run_sweep(sweep.expand(GRID), out, workers=2, progress=False, log=lambda m: None)
    assert (counts["ran"], counts["failed"]) == (4, 0)
    ref = tmp_path / "ref.h5"
    sweep.run_sweep(sweep.expand(GRID), ref, progress=False, log=lambda m: None)
    for i in store.list_runs(ref):
        np.testing.assert_array_equal(store.read_run(out, i)["loss"], store.read_run(ref, i)["loss"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_process_pool_workers_exits_cleanly(tmp_path, sig):
    """Ctrl-C (or SIGTERM) of `compare --workers 2` mid-cell: exit 130 with the one-line message, soon, no
    traceback (the pool's process table was read after shutdown had dropped it: AttributeError, exit 1)."""
    grid = tmp_path / "g.toml"
    grid.write_text('algorithm = "det-cgd1"\niters = 3000000\nlog_every = 100000\nseed = [0, 1, 2]\n')
    p = subprocess.Popen([sys.executable, "-m", "cgdbench", "compare", "--config", str(grid), "--out",
                          str(tmp_path / "w.h5"), "--workers", "2", "--quiet"], stderr=subprocess.PIPE, text=True)
    first = p.stderr.readline()  # "g: 3 cells, ... 3 to run": the pool starts next
    assert "3 to run" in first, first
    time.sleep(8)  # the spawned workers import, compile and start their cells (a cell takes minutes)
    assert p.poll() is None
    p.send_signal(sig)
    # a hang (the exit waiting on a worker that outlived SIGTERM) fails here as TimeoutExpired, not as a timing
    _, err = p.communicate(timeout=120)
    err = first + err
    assert p.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_scheduler_and_two_workers_on_loopback(tmp_path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads",
                                           "1", "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        from dask.distributed import Client
        deadline = time.time() + 60
        while True:
            try:
                with Client(addr, timeout=2) as c:
                    if len(c.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "the Dask cluster did not come up"
            time.sleep(0.5)
        out = tmp_path / "d.h5"
        r = cli("compare", "--config", _grid_file(tmp_path), "--out", str(out), "--scheduler", addr, "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["counts"]["ran"] == 4
        assert len(store.completed_ids(out)) == 4
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _grid_file(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text('algorithm = ["det-cgd1", "det-cgd2"]\ncompressor = "rand-1"\nclients = 3\niters = 30\n'
                 'seed = [0, 1]\n')
    return str(f)


def test_unreachable_scheduler_is_a_quick_clear_error(tmp_path):
    t = time.time()
    r = cli("compare", "--config", _grid_file(tmp_path), "--out", str(tmp_path / "u.h5"), "--scheduler",
            f"tcp://127.0.0.1:{_free_port()}")
    assert r.returncode == 2 and "no Dask scheduler answered" in r.stderr and "Traceback" not in r.stderr
    assert time.time() - t < 30
    with pytest.raises(CgdbenchError):
        sweep.connect(f"tcp://127.0.0.1:{_free_port()}", 1, timeout=1)


def test_results_of_another_schema_or_a_foreign_file_are_refused_untouched(tmp_path):
    import h5py
    other = tmp_path / "old.h5"
    with h5py.File(other, "w") as f:
        f.attrs["schema"] = 7
        f.create_group("runs")
    with pytest.raises(cgdbench.StoreError, match="schema version 7; this cgdbench reads and writes schema 1"):
        sweep.run_sweep(sweep.expand(GRID), other, progress=False, log=lambda m: None)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("runs", data=[1, 2, 3])
    before = foreign.read_bytes()
    with pytest.raises(cgdbench.StoreError, match="its /runs is a Dataset"):
        cgdbench.run(cgdbench.RunConfig(iters=5), out=foreign)
    assert foreign.read_bytes() == before


def test_diverged_cells_are_done_and_counted(tmp_path):
    out = tmp_path / "dv.h5"
    grid = {"problem": "least-squares", "algorithm": "dcgd", "stepsize": "scalar:1e3", "iters": 400, "seed": [0, 1]}
    c = sweep.run_sweep(sweep.expand(grid), out, progress=False, log=lambda m: None)
    assert c["ran"] == 2 and {store.read_run(out, i)["status"] for i in store.list_runs(out)} == {"diverged"}
    again = sweep.run_sweep(sweep.expand(grid), out, progress=False, log=lambda m: None)
    assert (again["ran"], again["skipped"]) == (0, 2)  # deterministic: not run again
    rows = sweep.summary_rows(out, 1e-2)
    assert rows[0]["seeds"] == 2 and rows[0]["diverged"] == 2
    assert "2 (2 diverged)" in sweep.format_summary(rows, 1e-2)


def test_a_failing_rerun_keeps_the_completed_run(tmp_path, monkeypatch):
    out = tmp_path / "kr.h5"
    sw = sweep.expand({"iters": 20})
    sweep.run_sweep(sw, out, progress=False, log=lambda m: None)
    monkeypatch.setattr(sweep._InProcess, "run", lambda self, cell: (_ for _ in ()).throw(RuntimeError("boom")))
    c = sweep.run_sweep(sw, out, rerun=True, progress=False, log=lambda m: None)
    assert c["failed"] == 1
    base = sw.cells[0].id
    assert store.read_run(out, base)["status"] == "completed"
    assert store.read_run(out, base + ".r2")["status"] == "failed"


def test_json_summary_is_valid_json(tmp_path):
    r = cli("compare", "--config", _grid_file(tmp_path), "--out", str(tmp_path / "j.h5"), "--json", "--target", "1e-9")
    assert r.returncode == 0 and "NaN" not in r.stdout
    assert json.loads(r.stdout)["rows"][0]["iters_to_target"] == [None, None, None]


def test_dask_local_cluster(tmp_path):
    """--dask --workers 2: a LocalCluster of two processes started and closed by the command."""
    out = tmp_path / "lc.h5"
    r = cli("compare", "--config", _grid_file(tmp_path), "--out", str(out), "--dask", "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["counts"]["ran"] == 4 and len(store.completed_ids(out)) == 4


def test_a_suite_says_which_cells_its_dataset_does_not_reach():
    """smoke's saddle cells generate their data: --dataset reaches only the finite-sum cells, and the sweep says so."""
    sw = suites.make("smoke", dataset="synthetic-a1a")
    own = [c for c in sw.cells if c.config.dataset is None]
    assert own and sw.notes == [f"--dataset synthetic-a1a applies to {len(sw.cells) - len(own)} of the "
                                f"{len(sw.cells)} cells; the other {len(own)} (saddle-quartic) run on their own data"]
    assert suites.make("smoke").notes == []
