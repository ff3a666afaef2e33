"""Issue 18: the saddle problems' defaults reach an ε-SOSP from the saddle, noise schedules, blow-ups."""
import math

import numpy as np
import pytest

from cgdbench import RunConfig, engine
from cgdbench.algorithms._common import blowup_level, loss_warnings
from cgdbench.algorithms.ef_sgd import noise_schedule
from cgdbench.errors import ConfigError

COMPRESSORS = ("identity", "top-k:0.01", "rand-k:0.01")


def _sosp_run(problem, compressor, seed, noise=0.01, **kw):
    cfg = RunConfig(problem=problem, algorithm="ef-sgd", compressor=compressor, x0="saddle", noise=noise, seed=seed,
                    **kw)
    return engine.run(cfg)


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_quartic_defaults_reach_sosp_from_the_saddle(compressor):
    for seed in (0, 1, 2):
        tr = _sosp_run("saddle-quartic", compressor, seed)
        v = tr.meta["sosp"]
        assert tr.status == "completed" and v["is_sosp"], (seed, v)
        assert v["lambda_min"] > 1.0        # a minimum (λ_min = 1.5 there), not the saddle (−1)
        assert not tr.meta["flagged"], tr.meta["warnings"]


def test_without_noise_the_quartic_run_stays_at_the_saddle_and_says_why():
    tr = _sosp_run("saddle-quartic", "identity", 0, noise=0.0)
    v = tr.meta["sosp"]
    assert not v["is_sosp"] and v["first_order"] and not v["second_order"]
    assert v["lambda_min"] == pytest.approx(-1.0, abs=1e-6)
    assert any("below −√(ρε)" in f for f in v["fails"])
    assert "not ε-SOSP" in tr.summary()


def test_default_lr_and_reset_follow_the_compressor_and_are_recorded():
    tr = _sosp_run("saddle-quartic", "rand-k:0.01", 0, iters=10)
    st = tr.meta["stepsize"]
    # rand-k:0.01 of d = 20 keeps one coordinate: μ = 1/20, L = 3 at the minima
    assert st["gamma"] == pytest.approx(0.05 / 3.0)
    assert st["reset_iters"] == math.ceil(1.0 / (st["gamma"] * math.sqrt(1e-3)))
    assert "μ/L" in st["lr_rule"]
    assert _sosp_run("saddle-quartic", "top-k:0.01", 0, iters=10).meta["stepsize"]["gamma"] == 0.03
    explicit = _sosp_run("saddle-quartic", "rand-k:0.01", 0, iters=10, lr=0.01, reset_iters=7).meta["stepsize"]
    assert (explicit["gamma"], explicit["reset_iters"]) == (0.01, 7)


def test_noise_schedule_parsing_and_bad_input():
    assert noise_schedule("constant", 100) == (math.inf, 1.0)
    assert noise_schedule("step:40", 100) == (40.0, 0.0)
    assert noise_schedule("step:0.5:0.1", 300) == (150.0, 0.1)
    for bad, words in (("step:200", "beyond --iters 100"), ("ramp:3", "constant, step:T"),
                       ("step:x", "numbers"), ("step:10:-1", "F must"), ("step:0", "iteration >= 1")):
        with pytest.raises(ConfigError, match=words):
            RunConfig(problem="saddle-quartic", algorithm="ef-sgd", iters=100, noise=0.01, noise_schedule=bad)
    with pytest.raises(ConfigError, match="noise-schedule"):  # a det-CGD method reads no noise
        RunConfig(noise_schedule="step:10")


def test_noise_switched_off_after_T_is_plain_ef_sgd():
    base = dict(problem="saddle-quartic", algorithm="ef-sgd", x0="saddle", iters=60, log_every=1, lr=0.05, seed=3)
    on = engine.run(RunConfig(noise=0.01, noise_schedule="step:30", **base))
    const = engine.run(RunConfig(noise=0.01, noise_schedule="constant", **base))
    default = engine.run(RunConfig(noise=0.01, **base))  # the quartic's default: step:0.5:0, T = 30 here
    np.testing.assert_array_equal(default.loss, on.loss)
    np.testing.assert_array_equal(on.loss[:31], const.loss[:31])   # same stream until T
    assert not np.array_equal(on.loss[31:], const.loss[31:])
    half = engine.run(RunConfig(noise=0.01, noise_schedule="step:30:0.5", **base))
    np.testing.assert_array_equal(half.loss[:31], const.loss[:31])
    assert not np.array_equal(half.loss[31:], on.loss[31:])


def test_blowup_rule_and_its_warning():
    assert blowup_level(2.0) == pytest.approx(20.0)
    assert blowup_level(0.0) == pytest.approx(9.0)      # near-zero starts: an absolute rise of 9
    it = np.arange(5)
    meta, w = loss_warnings(np.array([1.0, 0.9, 0.8, 0.7, 0.6]), it, float("nan"), 0)
    assert not meta["flagged"] and w == [] and meta["loss_max"] == 1.0
    meta, w = loss_warnings(np.array([1.0, 50.0, 0.8, 0.7, 0.6]), it, float("nan"), 0)
    assert meta["flagged"] and meta["loss_max_iter"] == 1 and "blow-up" in w[0]
    meta, w = loss_warnings(np.array([1.0, 0.9, 0.8]), it[:3], 1e6, 2)   # only a reset test saw it
    assert meta["flagged"] and meta["loss_max"] == 1e6 and any("rescued" in x for x in w)
    meta, w = loss_warnings(np.array([1.0, 1.2, 1.1]), it[:3], float("nan"), 0, condition_lambda=3.0)
    assert meta["flagged"] and "violates its condition" in w[0]
    meta, w = loss_warnings(np.array([1.0, 1.2, 1.1]), it[:3], float("nan"), 0, condition_lambda=0.5)
    assert not meta["flagged"]


def test_a_violating_stepsize_that_blows_up_is_flagged(data_dir):
    tr = engine.run(RunConfig(dataset="a1a", algorithm="dcgd", stepsize="scalar:1000", iters=100, log_every=10),
                    data_dir=data_dir)
    assert tr.status == "unstable" and tr.meta["flagged"] and tr.meta["unstable"]   # λ > 1 and the loss rose
    assert tr.meta["loss_max"] > 100 * tr.meta["loss_start"]
    ok = engine.run(RunConfig(dataset="a1a", iters=100, log_every=10), data_dir=data_dir)
    assert not ok.meta["flagged"] and ok.meta["loss_max"] == pytest.approx(ok.loss[0])


def test_a_reset_that_rescues_a_blowup_is_a_warning_and_stored(tmp_path):
    from cgdbench import store
    out = tmp_path / "r.h5"
    tr = engine.run(RunConfig(problem="linear-autoencoder", algorithm="ef-sgd", compressor="rand-k:0.01", lr=0.1,
                              noise=0.01, iters=400, reset_iters=100, x0="saddle", log_every=50), out=out)
    assert tr.meta["flagged"] and any("rescued" in w for w in tr.meta["warnings"])
    rec = store.read_run(out, tr.run_id)
    assert rec["meta"]["flagged"] and rec["meta"]["loss_max"] > blowup_level(rec["meta"]["loss_start"])


@pytest.mark.slow
@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_linear_autoencoder_defaults_reach_sosp(compressor):
    for seed in range(5):
        v = _sosp_run("linear-autoencoder", compressor, seed).meta["sosp"]
        assert v["is_sosp"], (seed, v)


# --- the saddle paper's convolutional autoencoder as a registry problem -----------------------------
SMALL_CONV = "2:3:2:1,3:7:1:0"       # 28 -> 14 -> 8: small enough for a twin run


def test_conv_autoencoder_engine_matches_the_numpy_loop():
    cfg = RunConfig(problem="conv-autoencoder", hidden=SMALL_CONV, algorithm="ef-sgd", compressor="top-k:0.05",
                    clients=2, noise=0.01, iters=6, lr=0.05, batch_size=5, seed=2, reset_iters=2, log_every=1)
    b = engine.build(cfg)
    tr = engine.run(cfg, built=b)
    from cgdbench import reference as naive
    x, losses, resets = naive.ef_sgd(b.problem, b.sketch, b.x0, cfg.iters, cfg.seed, 0.05, 5, 0.01, use_ef=True,
                                     use_reset=True, reset_iters=2)
    np.testing.assert_allclose(tr.x_final, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.loss, losses, rtol=1e-9, atol=1e-12)
    assert int(tr.extras["resets"][-1]) == resets


def test_conv_autoencoder_full_loss_is_the_mean_of_the_numpy_reference():
    from cgdbench import problems, reference as naive
    p = problems.get("conv-autoencoder").create(hidden=SMALL_CONV)
    x = p.x0("random", seed=1)
    rows = np.arange(0, 40, 3)
    f, g = p.batch_f_and_grad(x, rows)
    f_ref, g_ref = naive.conv_ae_loss_grad_ref(p.arch, x, p.F[rows])
    assert f == pytest.approx(f_ref, rel=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-13)
    assert p.d == p.arch.d and p.block_ptr[-1] == p.d and p.block_ptr.size == 5   # one block per layer


def test_conv_autoencoder_default_and_bad_input(tmp_path):
    from cgdbench import problems
    from cgdbench.errors import DataError
    p = problems.get("conv-autoencoder").create()
    assert p.d == 210369 and p.dataset_info["name"] == "digits28" and p.F.shape == (1797, 784)
    g = p.grad(p.saddle())
    assert np.all(g[:p.block_ptr[-2]] == 0.0)      # every weight and hidden bias: exactly 0 at the saddle
    with pytest.raises(ConfigError, match="encoder layer"):
        problems.get("conv-autoencoder").create(hidden="16:3:2:1,32:3:2:1,64:9:1:0")
    bad = tmp_path / "x-images-idx3-ubyte"
    bad.write_bytes((2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        problems.get("conv-autoencoder").create(dataset=str(bad))
    bad.write_bytes(b"not an idx file at all")
    with pytest.raises(DataError, match="not an IDX"):
        problems.get("conv-autoencoder").create(dataset=str(bad))


def test_mnist_by_name_and_its_labels_beside_it(data_dir):
    from cgdbench.problems.saddles import load_images
    d = load_images("mnist", data_dir=data_dir, labels=True)
    assert d["X"].shape == (10000, 784) and d["y"].shape == (10000,) and set(d["y"]) == set(range(10))
