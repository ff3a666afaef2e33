"""EF21, DIANA, MARINA and det-MARINA: NumPy twins, exact bits, special cases, theory, bad input."""
import math

import numpy as np
import pytest

from cgdbench import RunConfig, algorithms, compressors, engine, problems
from cgdbench.data import load
from cgdbench.errors import ConfigError
from cgdbench.stepsizes import baselines

from cgdbench import reference as naive

K = 50


def _run(data_dir, **kw):
    cfg = RunConfig(**{"dataset": "a1a", "iters": K, "seed": 7, **kw})
    return cfg, engine.run(cfg, data_dir=data_dir)


def _twin(b, cfg):
    """The NumPy twin of the run ``b`` was built for."""
    a, p, comp, D = cfg.algorithm, b.problem, b.sketch, b.D
    if a == "ef21":
        return naive.ef21(p, comp, D.gamma, cfg.iters, cfg.seed, b.x0, init=cfg.ef21_init)
    if a == "diana":
        return naive.diana(p, comp, D.gamma, b.stepsize_info["alpha"], cfg.iters, cfg.seed, b.x0)
    if a == "marina":
        return naive.marina(p, comp, D.gamma, b.stepsize_info["p"], cfg.iters, cfg.seed, b.x0)
    return naive.marina(p, None, None, b.stepsize_info["p"], cfg.iters, cfg.seed, b.x0, sketch=comp, D=D)


CASES = [
    dict(algorithm="ef21", compressor="top-k:5"),
    dict(algorithm="ef21", compressor="rand-k:5", ef21_init="compressed"),   # applied as C/(1+ω)
    dict(algorithm="ef21", compressor="sign"),
    dict(algorithm="diana", compressor="rand-k:10", stepsize="scalar:0.05"),
    dict(algorithm="diana", compressor="qsgd:4", stepsize="scalar:0.05"),
    dict(algorithm="marina", compressor="rand-k:10", marina_p=0.3),
    dict(algorithm="marina", compressor="natural", marina_p=0.2),
    dict(algorithm="det-marina", compressor="rand-1", marina_p=0.3),
    dict(algorithm="det-marina", compressor="bern-q:0.3", blocks="3", marina_p=0.3, stepsize="det-marina:l-inv"),
]


@pytest.mark.parametrize("clients", [1, 10])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: f"{kw['algorithm']}-{kw['compressor']}")
def test_matches_numpy_twin_on_a1a(data_dir, kw, clients):
    cfg = RunConfig(**{"dataset": "a1a", "iters": K, "seed": 7, "clients": clients, **kw})
    b = engine.build(cfg, data_dir=data_dir)
    tr = engine.run(cfg, built=b)
    ref, x_ref = _twin(b, cfg)
    assert tr.status == "completed" and tr.iterations == K
    np.testing.assert_allclose(tr.loss, ref["loss"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tr.grad_norm_sq, ref["gns"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tr.grad_norm_sq_D, ref["gnsD"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tr.x_final, x_ref, rtol=0, atol=1e-12)
    assert np.array_equal(tr.bits_up, ref["bits_up"].astype(np.int64))       # bits: exact
    G = np.mean(ref["gnsD"][:K])
    assert tr.G_KD == pytest.approx(G, rel=1e-10)


def test_bits_of_a_round(data_dir):
    """Up: a full round is d·32 bits per client, a compressed one the compressor's message; down: d·32 per client."""
    cfg, tr = _run(data_dir, algorithm="marina", compressor="rand-k:5", clients=4, marina_p=0.5)
    d = tr.x_final.size
    steps = np.diff(tr.bits_up)
    msg = compressors.make_vector("rand-k:5", d).bits_up(32)
    assert steps[0] == 4 * d * 32 and set(steps[1:]) <= {4 * d * 32, 4 * msg} and 4 * msg in steps
    assert np.all(np.diff(tr.bits_down) == 4 * d * 32)


@pytest.mark.parametrize("dataset", ["a1a", "phishing"])  # binary values, and values that are not all 1
@pytest.mark.parametrize("algorithm,kw", [("ef21", dict(compressor="identity")),
                                          ("marina", dict(compressor="rand-k:3", marina_p=1.0))])
def test_reduces_to_gd_exactly(data_dir, algorithm, kw, dataset):
    """Up to 16 clients (one client per range: gd's metric adds a range's rows in the order EF21 adds its
    clients' gradients; with more, the metric's sums are grouped differently and agree to rounding)."""
    for clients in (1, 10, 16):
        _, gd = _run(data_dir, algorithm="gd", compressor="identity", stepsize="scalar:0.7", clients=clients,
                     dataset=dataset)
        _, tr = _run(data_dir, algorithm=algorithm, stepsize="scalar:0.7", clients=clients, dataset=dataset, **kw)
        for name in ("loss", "grad_norm_sq", "grad_norm_sq_D", "x_final"):
            assert np.array_equal(getattr(tr, name), getattr(gd, name)), name
    _, gd = _run(data_dir, algorithm="gd", compressor="identity", stepsize="scalar:0.7", clients=37, dataset=dataset)
    _, tr = _run(data_dir, algorithm=algorithm, stepsize="scalar:0.7", clients=37, dataset=dataset, **kw)
    np.testing.assert_allclose(tr.grad_norm_sq, gd.grad_norm_sq, rtol=1e-12)
    np.testing.assert_allclose(tr.x_final, gd.x_final, rtol=1e-12)


@pytest.mark.parametrize("kw,iters", [
    (dict(algorithm="ef21", compressor="top-k:0.25"), 3000),
    (dict(algorithm="diana", compressor="natural"), 3000),
    (dict(algorithm="marina", compressor="rand-k:0.25"), 3000),
    (dict(algorithm="det-marina", compressor="rand-k:0.25"), 3000),
], ids=["ef21", "diana", "marina", "det-marina"])
def test_theory_stepsize_reaches_1e4_on_least_squares(data_dir, kw, iters):
    cfg = RunConfig(problem="least-squares", dataset="a1a", clients=10, iters=iters, log_every=50, **kw)
    tr = engine.run(cfg, data_dir=data_dir)
    assert tr.status == "completed" and not tr.meta["warnings"]
    assert tr.grad_norm_sq.min() <= 1e-4, tr.grad_norm_sq[-5:]


# --- theory ----------------------------------------------------------------------------
def test_ef21_gamma_formula():
    for alpha in (1e-3, 0.05, 0.5, 0.99):
        theta = 1 - math.sqrt(1 - alpha)
        beta = (1 - alpha) / (1 - math.sqrt(1 - alpha))
        assert baselines.ef21_gamma(alpha, 2.0, 3.0) == pytest.approx(1 / (2.0 + 3.0 * math.sqrt(beta / theta)))
        # √(β/θ) <= 2/α − 1 (EF21, Lemma): the stepsize is at least 1/(L + L̃(2/α − 1))
        assert baselines.ef21_gamma(alpha, 2.0, 3.0) >= 1 / (2.0 + 3.0 * (2 / alpha - 1)) * (1 - 1e-12)
    assert baselines.ef21_gamma(1.0, 2.0, 3.0) == 0.5


def test_marina_gamma_satisfies_its_quadratic_condition():
    """γ = 1/(L̃(1 + √a)) satisfies 1 − γL − γ²L̃²a >= 0 (a = (1−p)ω/(pn)), the condition in MARINA's proof."""
    for omega, p, n in ((10.0, 0.1, 5), (0.125, 0.5, 1), (122.0, 0.01, 100)):
        Lf, Lt = 1.3, 1.7
        g = baselines.marina_gamma(omega, p, n, Lt)
        a = (1 - p) * omega / (p * n)
        assert 1 - g * Lf - g * g * Lt * Lt * a >= -1e-12


def _small(small_dataset, clients=3):
    return problems.LeastSquares(small_dataset, lam=0.1, clients=clients)


def test_det_marina_condition_for_scalar_rand_k_is_marinas(small_dataset):
    """For D = γI and rand-k, λ <= 1 exactly when 1 − γL_f − γ²ωL̃²(1−p)/(pn) >= 0."""
    p_ = _small(small_dataset)
    L = p_.smoothness()
    c = baselines.smoothness_constants(p_, L)
    sk = compressors.make("rand-k:3", p_.d)
    omega = p_.d / 3 - 1
    p, n = 0.3, p_.n
    a = (1 - p) / (p * n)
    for gamma in np.linspace(0.01, 2.0, 40):
        lam = baselines.det_marina_lambda(gamma * np.eye(p_.d), sk, L, c["L_tilde"], p, n)
        quad = 1 - gamma * c["L_f"] - gamma**2 * omega * c["L_tilde"] ** 2 * a
        assert (lam <= 1 + 1e-12) == (quad >= -1e-12)


def test_det_marina_beta_is_the_largest(small_dataset):
    p_ = _small(small_dataset)
    L = p_.smoothness()
    Lt = baselines.smoothness_constants(p_, L)["L_tilde"]
    sk = compressors.make("rand-k:2", p_.d)
    W = np.diag(1 / np.diag(L))
    beta = baselines.det_marina_beta(W, sk, L, Lt, 0.2, p_.n)
    assert baselines.det_marina_lambda(beta * W, sk, L, Lt, 0.2, p_.n) == pytest.approx(1.0, abs=1e-9)
    assert baselines.det_marina_lambda(1.001 * beta * W, sk, L, Lt, 0.2, p_.n) > 1.0


def test_sketch_noise_in_the_D_norm_is_C_hadamard_D(small_dataset, rng):
    """E‖(S − I)v‖²_D = vᵀ(C∘D)v, the identity the det-MARINA condition rests on (exact enumeration)."""
    d = 5
    for spec in ("rand-k:2", "bern-q:0.4"):
        sk = compressors.make(spec, d)
        M = rng.standard_normal((d, d))
        D = M @ M.T + np.eye(d)
        v = rng.standard_normal(d)
        lhs = sum(pr * (s - 1) * v @ D @ ((s - 1) * v) for pr, s in naive.enumerate_sketch(sk))
        C = sk.moment_matrix() - 1.0
        assert lhs == pytest.approx(v @ (C * D) @ v, rel=1e-12)


def test_det_marina_bound_holds_on_least_squares(data_dir):
    """Mean G_{K,D} over seeds stays below 2(f(x⁰) − f*)/(det(D)^{1/d} K), f* exact (a quadratic)."""
    Gs = []
    for seed in range(6):
        cfg = RunConfig(problem="least-squares", dataset="a1a", clients=5, algorithm="det-marina",
                        compressor="rand-k:10", marina_p=0.2, iters=200, seed=seed)
        tr = engine.run(cfg, data_dir=data_dir)
        Gs.append(tr.G_KD)
    bound = 2 * (tr.loss[0] - tr.meta["f_lower"]) / (tr.meta["det_root"] * 200)
    assert tr.meta["stepsize"]["condition_lambda"] <= 1 + 1e-9
    assert np.mean(Gs) <= bound


# --- bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    (dict(algorithm="diana", compressor="top-k:3"), "needs an unbiased compressor.*identity, rand-k"),
    (dict(algorithm="marina", compressor="sign"), "needs an unbiased compressor"),
    (dict(algorithm="ef21", compressor="bern-q:0.5"), "needs a contractive compressor"),
    (dict(algorithm="det-marina", compressor="top-k:2"), "needs an unbiased diagonal sketch"),
    (dict(algorithm="marina", marina_p=0.0), "--marina-p"),
    (dict(algorithm="marina", marina_p=1.5), r"--marina-p 1.5: a probability must be in \(0, 1\]"),
    (dict(algorithm="marina", marina_p=float("nan")), "--marina-p"),
    (dict(algorithm="diana", marina_p=0.5), "--marina-p does not apply to algorithm 'diana'; only to marina"),
    (dict(algorithm="det-cgd1", diana_alpha=0.5), "--diana-alpha does not apply to algorithm 'det-cgd1'"),
    (dict(algorithm="ef21", ef21_init="zeros"), "--ef21-init"),
    (dict(algorithm="ef21", stepsize="scalar"), "scalar:GAMMA"),
    (dict(algorithm="ef21", stepsize="diag-inv"), "takes the stepsize rules ef21, scalar:GAMMA"),
    (dict(algorithm="det-cgd1", stepsize="marina"), "takes the stepsize rules"),
    (dict(algorithm="diana", problem="saddle-quartic"), "not defined for algorithm 'diana'"),
])
def test_bad_input(kw, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**kw)


def test_warnings_for_settings_outside_the_theory(data_dir):
    _, tr = _run(data_dir, algorithm="diana", compressor="rand-k:10", diana_alpha=0.5, iters=5)
    assert any("--diana-alpha 0.5 is above the theory's range" in w for w in tr.meta["warnings"])
    _, tr = _run(data_dir, algorithm="ef21", compressor="top-k:5", stepsize="scalar:5", iters=5)
    assert any("of EF21's theory" in w for w in tr.meta["warnings"])
    _, tr = _run(data_dir, algorithm="det-marina", stepsize="scalar:5", iters=5)
    assert any("violates det-MARINA's stepsize condition" in w for w in tr.meta["warnings"])


def test_ef21_states_the_contraction_of_an_unbiased_compressor(data_dir):
    _, tr = _run(data_dir, algorithm="ef21", compressor="rand-k:5", iters=3)
    assert "applied as C/(1+ω)" in tr.summary() and tr.meta["stepsize"]["alpha"] == pytest.approx(5 / 123)


def test_options_left_at_default_keep_old_run_ids():
    """A config that does not use the baselines' options serialises as before they existed."""
    d = RunConfig().to_dict()
    assert not {"marina_p", "diana_alpha", "ef21_init"} & set(d)
    assert RunConfig.from_dict(d) == RunConfig()
    assert "marina_p" in RunConfig(algorithm="marina", marina_p=0.5).to_dict()


def test_registry_declares_every_algorithm():
    assert {"ef21", "diana", "marina", "det-marina"} <= set(algorithms.REGISTRY)
    for e in algorithms.REGISTRY.values():
        assert e.oracle in algorithms.ORACLES and e.contract in algorithms.CONTRACTS
        RunConfig(algorithm=e.name, **({"problem": "saddle-quartic"} if e.oracle == "minibatch" else {}))


def test_registration_mistakes_are_named(monkeypatch):
    """Adding an algorithm: a wrong trait, a default the registry does not know, a name taken, a `reads` typo
    each fail at import with the bad value and the allowed ones (not at a user's first run)."""
    from cgdbench import config
    from cgdbench.algorithms.det_cgd import DetCgdJob
    monkeypatch.setattr(algorithms.REGISTRY, "entries", dict(algorithms.REGISTRY.entries))
    kw = dict(doc="test", oracle="full", contract="sketch", default_compressor="identity", default_stepsize="scalar")
    with pytest.raises(ValueError, match="contract 'sketches'; choose one of: sketch, unbiased, contractive, vector"):
        algorithms.register("new-a", **{**kw, "contract": "sketches"})
    with pytest.raises(ValueError, match="oracle 'ful'; choose one of: full, minibatch"):
        algorithms.register("new-a", **{**kw, "oracle": "ful"})
    with pytest.raises(ValueError, match="default stepsize 'diag-invv'.*unknown stepsize 'diag-invv'; choose one of"):
        algorithms.register("new-a", **{**kw, "default_stepsize": "diag-invv"})(DetCgdJob)
    # a default outside the algorithm's own contract, a misspelt trait
    with pytest.raises(ValueError, match="needs an unbiased diagonal sketch S; 'top-k' is not one"):
        algorithms.register("new-a", **{**kw, "default_compressor": "top-k:1"})(DetCgdJob)
    with pytest.raises(ValueError, match=r"unknown trait\(s\) \['identiy_only'\]; the engine reads: code, "):
        algorithms.register("new-a", identiy_only=True, **kw)
    assert "new-a" not in algorithms.REGISTRY  # a refused registration leaves nothing behind
    with pytest.raises(ValueError, match=r"'gd': name or alias already registered: \['gd'\] "
                                         r"\(by cgdbench.algorithms.det_cgd\)"):
        algorithms.register("gd", **kw)(DetCgdJob)
    with pytest.raises(ValueError, match=r"'new-a' declares reads=\['metric'\], which are not RunConfig fields"):
        algorithms.register("new-a", reads=("metric",), **kw)(DetCgdJob)
    assert config._check_reads() is None  # the registered ones are fine


def test_summary_and_store(tmp_path, data_dir):
    from cgdbench import store
    cfg = RunConfig(dataset="a1a", algorithm="marina", compressor="rand-k:5", clients=3, iters=20)
    tr = engine.run(cfg, out=tmp_path / "r.h5", data_dir=data_dir)
    text = tr.summary()
    assert "MARINA Theorem 2.1" in text and "p = " in text
    rec = store.read_run(tmp_path / "r.h5", tr.run_id)
    assert rec["status"] == "completed" and np.array_equal(rec["bits_up"], tr.bits_up)
    assert np.array_equal(rec["D"], tr.D.gamma * np.eye(tr.x_final.size))  # stored like det-CGD's D
    ds = load("a1a", data_dir=data_dir)
    assert tr.meta["dataset"]["rows"] == ds.A.shape[0]


def test_contract_and_blocks_checks():
    """EF21 refuses a compressor without a stated contraction; --blocks only for the sketch methods."""
    with pytest.raises(ConfigError, match="needs a contractive compressor C.x. with a stated contraction"):
        RunConfig(algorithm="ef21", compressor="sketch-top-k:3")
    with pytest.raises(ConfigError, match="--blocks does not apply to algorithm 'diana'; only to the sketch"):
        RunConfig(algorithm="diana", blocks="3")
    RunConfig(algorithm="det-marina", blocks="3")


def test_where_matches_a_default_that_is_not_stored(tmp_path, data_dir):
    from cgdbench.plot import load_groups
    out = tmp_path / "r.h5"
    engine.run(RunConfig(dataset="a1a", algorithm="ef21", compressor="top-k:3", iters=3), out=out, data_dir=data_dir)
    engine.run(RunConfig(dataset="a1a", algorithm="ef21", compressor="top-k:3", iters=3, ef21_init="compressed"),
               out=out, data_dir=data_dir)
    assert len(load_groups(out, ("loss",), where={"ef21_init": ["gradient"]})) == 1
    assert len(load_groups(out, ("loss",), where={"ef21_init": ["compressed"]})) == 1


def test_registry_refuses_a_name_taken_by_an_alias():
    from cgdbench._registry import Registry
    reg = Registry("thing")
    reg.register("a", aliases=("b",))(None)
    for name, aliases in (("b", ()), ("c", ("a",)), ("d", ("b",)), ("e", ("x", "x"))):
        with pytest.raises(ValueError, match="already registered"):
            reg.register(name, aliases=aliases)(None)
