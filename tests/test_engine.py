"""The jitted det-CGD loop against the Python/NumPy loop, bits, divergence (thread counts: test_parallel)."""
import numpy as np
import pytest

import cgdbench
from cgdbench import RunConfig, algorithms, engine
from cgdbench.errors import ConfigError

from cgdbench import reference as naive

CASES = [
    ("logreg-nonconvex", "gd", "identity", "scalar", 1),
    ("logreg-nonconvex", "gd", "identity", "l-inv", 3),
    ("logreg-nonconvex", "det-cgd1", "rand-1", "diag-inv", 1),
    ("logreg-nonconvex", "det-cgd1", "rand-k:3", "l-inv", 4),
    ("logreg-nonconvex", "det-cgd1", "bern-q:0.5", "identity-w", 3),
    ("logreg-nonconvex", "det-cgd1", "importance-rand-1", "l-inv-sqrt", 2),
    ("logreg-nonconvex", "det-cgd2", "rand-1", "optimal", 1),
    ("logreg-nonconvex", "det-cgd2", "block-rand-k:1", "l-inv", 5),
    ("logreg-nonconvex", "det-cgd2", "bern-q:0.3,0.9", "optimal", 3),
    ("logreg-nonconvex", "dcgd", "rand-k:2", "scalar", 6),
    ("least-squares", "det-cgd1", "rand-k:3", "optimal", 3),
    ("least-squares", "det-cgd2", "bern-q:0.5", "l-inv", 2),
]


@pytest.fixture
def weighted_dataset(small_dataset):
    """The small dataset's pattern with values that are not all 1 (the kernels' non-binary path)."""
    from cgdbench.data import Dataset
    A = small_dataset.A.copy()
    A.data = np.random.default_rng(7).uniform(0.25, 1.75, A.nnz)
    return Dataset("tiny-weighted", A, small_dataset.b, "generated", None)


def built_for(small_dataset, **kw):
    cfg = RunConfig(**{"lam": 0.1, "seed": 3, "iters": 15, **kw})
    from cgdbench import compressors, problems, stepsizes
    p = problems.get(cfg.problem)(small_dataset, lam=cfg.lam, clients=cfg.clients, blocks=cfg.blocks)
    L = p.smoothness()
    sk = compressors.make(cfg.compressor, p.d, p.block_ptr, np.diag(L))
    D, info = stepsizes.build(cfg.stepsize, algorithms.get(cfg.algorithm).condition, sk, L, p.block_ptr)
    return cfg, engine.Built(cfg, p, sk, D, L, info, p.x0(cfg.x0))


@pytest.mark.parametrize("problem,algorithm,compressor,stepsize,clients", CASES)
def test_engine_matches_numpy_loop(small_dataset, problem, algorithm, compressor, stepsize, clients):
    cfg, b = built_for(small_dataset, problem=problem, algorithm=algorithm, compressor=compressor,
                       stepsize=stepsize, clients=clients, blocks="4,8" if "block" in compressor or "bern" in compressor else None)
    tr = engine.run(cfg, built=b)
    ref, x_ref = naive.det_cgd(b.problem, b.sketch, b.D, algorithms.get(cfg.algorithm).condition, cfg.iters, cfg.seed, b.x0)
    assert tr.status == "completed" and tr.iterations == cfg.iters
    np.testing.assert_array_equal(tr.iteration, np.arange(cfg.iters + 1))
    np.testing.assert_allclose(tr.loss, ref["loss"], rtol=1e-12)
    np.testing.assert_allclose(tr.grad_norm_sq, ref["gns"], rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(tr.grad_norm_sq_D, ref["gnsD"], rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(tr.x_final, x_ref, rtol=1e-11, atol=1e-13)
    assert tr.G_KD == pytest.approx(ref["gnsD"][:-1].mean(), rel=1e-10)
    # bits: exact, cumulative, counted before each step
    w, ib, n, d = cfg.value_bits, b.sketch.index_bits(cfg.index_mode), clients, b.problem.d
    expected_up = np.concatenate([[0], np.cumsum(w * ref["nnz"] + n * ib)])
    np.testing.assert_array_equal(tr.bits_up, expected_up)
    np.testing.assert_array_equal(tr.bits_down, np.arange(cfg.iters + 1) * n * d * w)


@pytest.mark.parametrize("values", ["binary", "weighted", "empty-rows"])
@pytest.mark.parametrize("algorithm,compressor,stepsize,clients", [
    ("det-cgd1", "rand-1", "diag-inv", 60),        # one row per client: coordinates marked
    ("det-cgd1", "rand-1", "diag-inv", 2),         # 120 non-zeros per client: coordinates searched
    ("det-cgd1", "rand-k:3", "l-inv", 7),
    ("det-cgd1", "identity", "diag-inv", 5),       # every coordinate kept
    ("det-cgd2", "rand-1", "diag-inv", 60),        # diagonal D: the sparse message path
    ("det-cgd2", "rand-k:2", "scalar", 9),
    ("det-cgd2", "block-rand-k:1", "l-inv", 4),    # block D: the full client gradient
    ("dcgd", "importance-rand-1", "scalar", 12),
])
def test_sparse_message_paths_match_numpy_loop(small_dataset, weighted_dataset, values, algorithm, compressor,
                                               stepsize, clients):
    """det-CGD's messages from the kept coordinates only (binary and weighted values, one row per client,
    clients whose rows miss most columns) against the NumPy loop, which forms every client's gradient."""
    ds = small_dataset if values == "binary" else weighted_dataset
    if values == "empty-rows":  # rows 0-9 without features: clients (or parts of them) with no non-zeros
        from cgdbench.data import Dataset
        A = weighted_dataset.A.tolil()
        A[:10] = 0
        A = A.tocsr()
        A.eliminate_zeros()
        ds = Dataset("tiny-empty-rows", A, weighted_dataset.b, "generated", None)
    cfg, b = built_for(ds, algorithm=algorithm, compressor=compressor, stepsize=stepsize, clients=clients,
                       blocks="4,8" if "block" in compressor or stepsize == "l-inv" else None, iters=25)
    assert b.problem.pack().binary == (values == "binary")
    assert b.problem.indices.dtype == np.int32
    tr = engine.run(cfg, built=b)
    ref, x_ref = naive.det_cgd(b.problem, b.sketch, b.D, algorithms.get(cfg.algorithm).condition, cfg.iters, cfg.seed, b.x0)
    assert tr.status == "completed"
    np.testing.assert_allclose(tr.loss, ref["loss"], rtol=1e-12)
    np.testing.assert_allclose(tr.grad_norm_sq, ref["gns"], rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(tr.grad_norm_sq_D, ref["gnsD"], rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(tr.x_final, x_ref, rtol=1e-11, atol=1e-13)
    w, ib = cfg.value_bits, b.sketch.index_bits(cfg.index_mode)
    np.testing.assert_array_equal(tr.bits_up, np.concatenate([[0], np.cumsum(w * ref["nnz"] + clients * ib)]))


@pytest.mark.parametrize("values", ["binary", "weighted"])
@pytest.mark.parametrize("algorithm,compressor,stepsize", [("det-cgd1", "rand-1", "diag-inv"),
                                                            ("det-cgd1", "rand-k:4", "diag-inv"),
                                                            ("det-cgd2", "bern-q:0.5", "diag-inv")])
def test_column_search_and_marking_give_the_same_bits(small_dataset, weighted_dataset, monkeypatch, values,
                                                      algorithm, compressor, stepsize):
    """The two ways a message's coordinates are found (binary search in the client's columns, or marking
    and one pass over its non-zeros) sum the same products in the same order: bit-identical runs."""
    from cgdbench.algorithms.det_cgd import DetCgdJob
    ds = small_dataset if values == "binary" else weighted_dataset
    out = []
    for search_max, search_ratio in ((0, 32), (DetCgdJob.search_max, DetCgdJob.search_ratio), (10**9, 0)):
        monkeypatch.setattr(DetCgdJob, "search_max", search_max)
        monkeypatch.setattr(DetCgdJob, "search_ratio", search_ratio)
        for metrics in ("every", "logged"):
            cfg, b = built_for(ds, algorithm=algorithm, compressor=compressor, stepsize=stepsize, clients=9,
                               blocks="4,8" if "bern" in compressor else None, iters=30, log_every=4, metrics=metrics)
            tr = engine.run(cfg, built=b)
            out.append(np.concatenate([tr.x_final, tr.loss, tr.grad_norm_sq, tr.grad_norm_sq_D]).tobytes())
    # the logged rows (and x, the loss) are the same in both metric modes
    assert len(set(out)) == 1


@pytest.mark.parametrize("values", ["binary", "weighted"])
@pytest.mark.parametrize("compressor", ["rand-1", "rand-k:4"])
def test_lazy_iterations_with_several_clients_per_range_give_the_same_bits(small_dataset, weighted_dataset, values,
                                                                           compressor):
    """30 clients of 2 rows in 16 ranges: a lazy client (margins of its kept columns' rows only) next to one whose
    margins came in a block computed ahead, and clients that give up being lazy (their kept columns hold as many
    rows as they have) after writing some links: the same bits as computing every margin."""
    out = []
    for metrics in ("every", "logged"):
        cfg, b = built_for(small_dataset if values == "binary" else weighted_dataset, algorithm="det-cgd1",
                           compressor=compressor, stepsize="diag-inv", clients=30, iters=40, log_every=7,
                           metrics=metrics)
        tr = engine.run(cfg, built=b)
        out.append(np.concatenate([tr.x_final, tr.loss, tr.grad_norm_sq, tr.bits_up]).tobytes())
    assert out[0] == out[1]


@pytest.mark.parametrize("values", ["binary", "weighted"])
def test_logged_metrics_mode_agrees_with_every_iteration(small_dataset, weighted_dataset, values, tmp_path):
    """--metrics logged: with every iteration logged it is the exact mode bit for bit; thinned, its rows are
    the exact mode's rows, and its G_{K,D} is the mean of the logged iterations' ‖∇f‖²_D̃ (said in the run)."""
    import h5py
    runs = {}
    for metrics, log_every in (("every", 1), ("logged", 1), ("every", 5), ("logged", 5)):
        cfg, b = built_for(small_dataset if values == "binary" else weighted_dataset, algorithm="det-cgd1",
                           compressor="rand-k:2", stepsize="diag-inv", clients=7, iters=23, log_every=log_every,
                           metrics=metrics)
        runs[metrics, log_every] = engine.run(cfg, built=b, out=tmp_path / f"{metrics}{log_every}.h5")
    a, b1 = runs["every", 1], runs["logged", 1]
    for name in ("iteration", "loss", "grad_norm_sq", "grad_norm_sq_D", "bits_up", "x_final"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b1, name))
    assert a.G_KD == b1.G_KD
    e5, l5 = runs["every", 5], runs["logged", 5]
    for name in ("iteration", "loss", "grad_norm_sq", "grad_norm_sq_D", "bits_up", "x_final"):
        np.testing.assert_array_equal(getattr(e5, name), getattr(l5, name))
    np.testing.assert_array_equal(l5.iteration, [0, 5, 10, 15, 20, 23])
    assert l5.G_KD == pytest.approx(l5.grad_norm_sq_D[:-1].mean(), rel=1e-14)
    assert e5.G_KD == pytest.approx(a.G_KD, rel=1e-14) and l5.G_KD != pytest.approx(e5.G_KD, rel=1e-3)
    assert "estimated from the 5 logged iterations" in l5.summary()
    assert "estimated" not in e5.summary()
    with h5py.File(tmp_path / "logged5.h5") as f:
        (run,) = f["runs"].values()
        assert '"metrics": "logged"' in run.attrs["config"] and '"metrics": "logged"' in run.attrs["meta"]


def test_bits_conventions(small_dataset):
    for kw, up, down in [
        (dict(compressor="rand-k:3"), 15 * 2 * (3 * 32 + 3 * 4), 15 * 2 * 12 * 32),
        (dict(compressor="rand-k:3", index_mode="shared-seed", value_bits=64, downlink="once"),
         15 * 2 * 3 * 64, 15 * 12 * 64),
        (dict(compressor="identity", downlink="none"), 15 * 2 * 12 * 32, 0),
    ]:
        cfg, b = built_for(small_dataset, algorithm="det-cgd1", stepsize="scalar", clients=2, **kw)
        tr = engine.run(cfg, built=b)
        assert (tr.bits_up[-1], tr.bits_down[-1]) == (up, down), kw


def test_log_every_thins_rows_and_keeps_the_last(small_dataset):
    cfg, b = built_for(small_dataset, compressor="rand-1", log_every=4, iters=10)
    tr = engine.run(cfg, built=b)
    np.testing.assert_array_equal(tr.iteration, [0, 4, 8, 10])
    cfg1, b1 = built_for(small_dataset, compressor="rand-1", iters=10)
    full = engine.run(cfg1, built=b1)
    np.testing.assert_array_equal(tr.loss, full.loss[[0, 4, 8, 10]])
    assert tr.G_KD == full.G_KD  # G_{K,D} uses every iteration, not only logged ones
    assert np.all(np.diff(tr.wall_time) >= 0)


def test_divergence_is_reported_with_the_trace_so_far(small_dataset):
    # logistic loss and the regularizer have bounded gradients, so only an absurd γ
    # overflows x to inf (and the margins to NaN)
    cfg, b = built_for(small_dataset, algorithm="gd", compressor="identity", stepsize="scalar:1e308",
                       lam=0.5, iters=500, x0="zeros")
    tr = engine.run(cfg, built=b)
    assert tr.status == "diverged"
    assert 0 < tr.iterations < 500
    assert np.all(np.isfinite(tr.loss)) and tr.iteration[-1] <= tr.iterations
    assert any("diverged" in w for w in tr.meta["warnings"])


def test_logged_metrics_mode_stops_a_divergence_at_once(small_dataset):
    """--metrics logged checks every step for non-finite values: a run whose iterates overflow stops
    within a few iterations, not at the next logged row (here 100).  (The exact mode stops one or two
    iterations earlier still: there ‖∇f‖² overflows before the step does.)"""
    runs = {}
    for metrics in ("every", "logged"):
        cfg, b = built_for(small_dataset, problem="least-squares", algorithm="gd", compressor="identity",
                           stepsize="scalar:1e300", iters=500, log_every=100, metrics=metrics)
        runs[metrics] = engine.run(cfg, built=b)
    every, logged = runs["every"], runs["logged"]
    assert every.status == logged.status == "diverged"
    assert every.iterations <= logged.iterations < 5
    assert np.all(np.isfinite(logged.loss))


def test_a1a_distributed_run(data_dir):
    """The papers' distributed setting: a1a, λ = 0.1, 100 clients, rand-1, diag⁻¹(L) stepsize."""
    cfg = RunConfig(dataset="a1a", lam=0.1, clients=100, algorithm="det-cgd1", compressor="rand-1",
                    stepsize="diag-inv", iters=300)
    tr = cgdbench.run(cfg, data_dir=data_dir)
    assert tr.status == "completed"
    assert tr.loss[-1] < tr.loss[0]
    assert tr.grad_norm_sq[-1] < 0.2 * tr.grad_norm_sq[0]
    assert tr.bits_up[-1] == 300 * 100 * (32 + 7)


def test_bad_configs():
    for kw, msg in [
        (dict(algorithm="sgd2"), "unknown algorithm 'sgd2'.*det-cgd1"),
        (dict(problem="nope"), "unknown problem"),
        (dict(compressor="top-q:3"), "unknown compressor"),
        (dict(compressor="top-k:3"), "needs an unbiased diagonal sketch"),
        (dict(stepsize="newton"), "unknown stepsize"),
        (dict(iters=0), "iters 0"),
        (dict(clients=0), "clients 0"),
        (dict(lam=-0.1), "λ must be"),
        (dict(log_every=0), "log-every"),
        (dict(value_bits=16), "value width"),
        (dict(algorithm="gd", compressor="rand-1"), "does not compress"),
        (dict(algorithm="dcgd", stepsize="diag-inv"), "scalar stepsize"),
        (dict(split="random"), "unknown split"),
        (dict(x0="ones"), "unknown --x0/--init"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            RunConfig(**kw)
    with pytest.raises(ConfigError, match="more clients than rows"):
        cgdbench.run(RunConfig(clients=5000, iters=1))


def test_the_second_path_is_compiled_by_a_helper_only_when_neither_path_is_cached(monkeypatch):
    """engine._compile: the helper gets the serial path's signature when no path is cached, and is
    not started when one is cached or CGDBENCH_COMPILE_HELPER=0; after a failed helper the path is
    compiled (here: loaded) in this process all the same."""
    from cgdbench import _jit, algorithms, engine, precompile
    cfg = RunConfig(clients=4, algorithm="det-cgd1", compressor="rand-1", iters=30, log_every=5)
    b = engine.build(cfg)
    started = []

    def fake_start(ok):
        def start(items):
            (kernel, path, sig), = items
            started.append((kernel, path, sig))
            key = precompile.item_key(kernel, path, sig)
            helper = precompile.Helper(None, [key], "/nonexistent")
            helper.claim = lambda k: (ok if k == key else None)
            helper.kill = lambda: precompile._active.remove(helper)
            precompile._active.append(helper)
            return helper
        return start

    paths = ("parallel", "serial")
    monkeypatch.setattr(precompile, "usable_cores", lambda: 2)
    for cached, env, ok, expect in ((False, "1", True, ["serial"]), (False, "1", False, None),
                                    (True, "1", True, None), (False, "0", True, None)):
        monkeypatch.setattr(_jit.TwoPath, "cached", lambda self, p, s, c=cached: c)
        monkeypatch.setattr(precompile, "start", fake_start(ok))
        monkeypatch.setenv(precompile.ENV, env)
        started.clear()
        job = algorithms.get(cfg.algorithm).factory(b)
        assert engine._compile(job, paths) == expect
        if env == "0" or cached:
            assert not started
        else:
            (kernel, path, sig), = started
            assert kernel is job.kernel and path == "serial"
            assert sig == job.signature("serial")
        assert not precompile._active  # the run's own helper is gone after it
        assert set(job.__dict__["_compiled"]) == set(paths)  # both paths ready
    monkeypatch.setattr(precompile, "usable_cores", lambda: 1)
    monkeypatch.setenv(precompile.ENV, "1")
    assert not precompile.enabled()


def test_a_sweep_plans_its_kernels_compiles_in_reverse_and_reuses_the_builds(monkeypatch, tmp_path):
    """run_sweep builds the first cell of each kernel ahead, hands a helper the uncached paths in the
    reverse of the order the runs need them (a 20-d saddle with 2 workers: serial only), and those cells
    run on the Built made ahead (one build each)."""
    from cgdbench import _jit, engine, precompile, sweep
    monkeypatch.setattr(precompile, "usable_cores", lambda: 2)
    monkeypatch.setenv(precompile.ENV, "1")
    monkeypatch.setattr(_jit.TwoPath, "cached", lambda self, p, s: False)
    started, builds = [], []
    monkeypatch.setattr(precompile, "start", lambda items: started.append(list(items)))
    real_build = engine.build
    monkeypatch.setattr(engine, "build", lambda cfg, **kw: builds.append(cfg) or real_build(cfg, **kw))
    cells = [sweep.Cell(RunConfig(clients=4, algorithm="det-cgd1", compressor="rand-1", iters=20, seed=s))
             for s in (0, 1)]
    cells.append(sweep.Cell(RunConfig(problem="saddle-quartic", dim=20, algorithm="ef-sgd", compressor="identity",
                                      clients=2, batch_size=16, iters=20, x0="saddle")))
    counts = sweep.run_sweep(sweep.Sweep("t", cells), tmp_path / "s.h5", progress=False, log=lambda m: None)
    assert counts["ran"] == 3 and counts["failed"] == 0
    got = [(k.__qualname__, path) for k, path, sig in started[0]]  # (no helper ran: the det run asked for its own)
    # run order: the saddle cell first (its build key sorts first), then det-CGD's two paths
    assert got == [("det_cgd_chunk", "serial"), ("det_cgd_chunk", "parallel"), ("ef_sgd_chunk", "serial")]
    assert len(builds) == 2  # the det-CGD cells share one Built, the saddle's was built ahead


def test_the_helper_protocol_claims_each_item_once(tmp_path, monkeypatch):
    """precompile: an item the run claims first is the run's (the helper skips it); one the helper has done
    is the helper's; one it started and failed, or whose helper exited, is the run's again."""
    import pickle
    import sys
    import types
    from cgdbench import precompile

    compiled = []
    fake = types.ModuleType("fake_kernels")

    class Kernel:
        def path(self, name):
            return types.SimpleNamespace(compile=lambda sig: compiled.append((name, sig)) if sig != "bad"
                                         else 1 / 0)
    fake.k = Kernel()
    monkeypatch.setitem(sys.modules, "fake_kernels", fake)
    specs = [{"module": "fake_kernels", "name": "k", "path": p, "sig": s}
             for p, s in (("serial", "a"), ("parallel", "b"), ("serial", "bad"), ("parallel", "c"))]
    (tmp_path / "items.pkl").write_bytes(pickle.dumps({"sys_path": list(sys.path), "items": specs}))
    monkeypatch.setattr(precompile, "_die_with_parent", lambda: None)  # in-process here: not for pytest
    keys = [("fake_kernels", "k", s["path"], s["sig"]) for s in specs]

    class Done:  # a helper process that has exited
        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0
    helper = precompile.Helper(Done(), keys, str(tmp_path))
    assert helper.claim(keys[1]) is False  # claimed before the helper reached it: the run compiles it
    assert precompile.main([str(tmp_path)]) == 1  # one item failed
    assert compiled == [("serial", "a"), ("parallel", "c")]  # item 1 skipped, item 2 failed
    assert helper.claim(keys[0]) is True and helper.claim(keys[3]) is True
    assert helper.claim(keys[2]) is False  # failed: the run compiles it
    assert helper.claim(("fake_kernels", "k", "serial", "zzz")) is None  # not this helper's
    # drain (before a run is timed): what no helper started is compiled here, then the helpers are let go
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    compiled.clear()
    items = [(fake.k, "serial", "a"), (fake.k, "parallel", "b")]
    h2 = precompile.Helper(Done(), [precompile.item_key(*it) for it in items], str(fresh), items)
    (fresh / "0.claim").touch()
    (fresh / "0.done").touch()  # the helper did the first
    monkeypatch.setattr(precompile, "_active", [h2])
    precompile.drain()
    assert compiled == [("parallel", "b")] and precompile._active == [] and not fresh.exists()
