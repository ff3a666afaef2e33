"""The saddle paper's Figure 1: the MLP classifier, the one-class-per-worker split, test accuracy, its suite."""
import json
import math

import numpy as np
import pytest

from cgdbench import RunConfig, data, engine, store, suites
from cgdbench import reference as naive
from cgdbench.cli import main
from cgdbench.errors import ConfigError, DataError
from cgdbench.problems import LogRegNonconvex, MLPClassifier
from cgdbench.problems.saddles import TEST_FRACTION, load_labelled
from cgdbench.second_order import lambda_min


@pytest.fixture(scope="module")
def cls():
    return MLPClassifier.create(hidden="7,4", lam=0.01)


def test_loss_and_gradient_match_the_numpy_backpropagation(cls, rng):
    y = cls.G.argmax(axis=1)
    for rows in (rng.choice(cls.m, 45, replace=False), np.arange(cls.m)):  # 45: a partial block of 32
        x = cls.x0("random", seed=3) + 0.3 * rng.standard_normal(cls.d)
        f, g = cls.batch_f_and_grad(x, rows)
        f_ref, g_ref = naive.mlp_classifier_loss_grad_ref(cls.widths, x, cls.F[rows], y[rows], wd=0.01)
        assert f == pytest.approx(f_ref, rel=1e-12)
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-14)


def test_gradient_matches_finite_differences(cls, rng):
    x = cls.x0("random", seed=1)
    rows = rng.choice(cls.m, 40, replace=False)
    _, g = cls.batch_f_and_grad(x, rows)
    for _ in range(3):
        v = rng.standard_normal(cls.d)
        h = 1e-6
        fd = (cls.batch_f_and_grad(x + h * v, rows)[0] - cls.batch_f_and_grad(x - h * v, rows)[0]) / (2 * h)
        assert fd == pytest.approx(g @ v, rel=1e-6)


def test_logits_far_apart_do_not_overflow():
    p = MLPClassifier.create(hidden="3")
    x = p.x0("random", seed=0) * 400.0   # logits in the thousands: exp would overflow without the max shift
    f, g = p.f_and_grad(x)
    assert math.isfinite(f) and np.all(np.isfinite(g)) and f > 10


def test_accuracy_matches_numpy_argmax(cls):
    for seed in range(3):
        x = cls.x0("random", seed=seed)
        want = np.mean(naive.mlp_predict_ref(cls.widths, x, cls.X_test) == cls.y_test)
        assert cls.accuracy(x) == want
    X = cls.F[:50]
    assert cls.accuracy(x, X, cls.G[:50].argmax(axis=1)) == np.mean(
        naive.mlp_predict_ref(cls.widths, x, X) == cls.G[:50].argmax(axis=1))


def test_saddle_is_a_strict_saddle():
    p = MLPClassifier.create(hidden="7")
    g = p.grad(p.saddle())
    assert np.all(g[:p.d - p.widths[-1]] == 0) and np.abs(g).max() < 1e-14   # weights exactly, biases to rounding
    lam, how = lambda_min(p, p.saddle())
    assert how == "dense" and lam < -0.1


def test_test_set_is_a_fixed_stratified_holdout():
    a, b = load_labelled(None), load_labelled("digits")
    np.testing.assert_array_equal(a["y_test"], b["y_test"])
    np.testing.assert_array_equal(a["X_test"], b["X_test"])
    from sklearn.datasets import load_digits
    y = load_digits().target
    assert a["y"].size + a["y_test"].size == y.size
    for c in range(10):
        n = np.sum(y == c)
        assert np.sum(a["y_test"] == c) == round(TEST_FRACTION * n)
    # train and test rows are different images (no row of the test set is in the training set)
    train = {r.tobytes() for r in a["X"]}
    dup_all = len({r.tobytes() for r in load_digits().data / 16.0}) < y.size  # digits has exact duplicates
    overlap = sum(r.tobytes() in train for r in a["X_test"])
    assert overlap == 0 or dup_all


def test_by_label_puts_exactly_one_class_on_each_worker():
    p = MLPClassifier.create(hidden="5", clients=10, split="by-label")
    y = p.G.argmax(axis=1)
    classes = []
    for i in range(p.n):
        lab = np.unique(y[p.worker_ptr[i]:p.worker_ptr[i + 1]])
        assert lab.size == 1
        classes.append(int(lab[0]))
    assert classes == list(range(10)) == p.dataset_info["worker_classes"]
    assert p.worker_ptr[-1] == p.m
    # the training rows are the same set as with the contiguous split, reordered
    q = MLPClassifier.create(hidden="5")
    assert sorted(map(bytes, p.F)) == sorted(map(bytes, q.F))


def test_by_label_on_logistic_regression(small_dataset):
    p = LogRegNonconvex(small_dataset, clients=2, split="by-label")
    for i in range(2):
        assert np.unique(p.b[p.client_ptr[i]:p.client_ptr[i + 1]]).size == 1


@pytest.mark.parametrize("kw,match", [
    (dict(problem="mlp-classifier", clients=4), r"--clients must be 10 \(the classes 0, 1, .*\), got 4"),
    (dict(problem="saddle-quartic"), "saddle-quartic has no class labels"),
    (dict(problem="linear-autoencoder"), "linear-autoencoder has no class labels"),
    (dict(problem="mlp-autoencoder"), "mlp-autoencoder has no class labels"),
])
def test_by_label_bad_input(kw, match):
    with pytest.raises(ConfigError, match=match):
        engine.build(RunConfig(algorithm="ef-sgd", split="by-label", **kw))


def test_cli_by_label_error_is_one_line(capsys):
    assert main(["run", "--problem", "saddle-quartic", "--algorithm", "ef-sgd", "--split", "by-label"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "by-label" in err[0]


def test_images_without_labels_are_refused(tmp_path):
    imgs = np.zeros((3, 2, 2), dtype=np.uint8)
    raw = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (3, 2, 2)) + imgs.tobytes()
    (tmp_path / "x-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(DataError, match="no labels file beside"):
        MLPClassifier.create(dataset=str(tmp_path / "x-images-idx3-ubyte"))
    lab = (2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([4, 4, 4])
    (tmp_path / "x-labels-idx1-ubyte").write_bytes(lab)
    with pytest.raises(DataError, match="at least 2 classes"):
        MLPClassifier.create(dataset=str(tmp_path / "x-images-idx3-ubyte"))


def test_mnist_from_the_shared_idx_files(data_dir):
    p = MLPClassifier.create(dataset="mnist", data_dir=data_dir, clients=10, split="by-label")
    assert p.widths == (784, 32, 10) and p.m + p.X_test.shape[0] == 10000
    assert p.dataset_info["name"] == "mnist-t10k" and p.dataset_info["worker_classes"] == list(range(10))


def test_engine_matches_the_numpy_loop_and_logs_accuracy():
    cfg = RunConfig(problem="mlp-classifier", hidden="6", algorithm="ef-sgd", compressor="rand-k:0.1", clients=10,
                    split="by-label", noise=0.01, iters=30, lr=0.1, batch_size=5, reset_iters=7, log_every=3, seed=4)
    b = engine.build(cfg)
    tr = engine.run(cfg, built=b)
    x, losses, resets = naive.ef_sgd(b.problem, b.sketch, b.x0, cfg.iters, cfg.seed, cfg.lr, cfg.batch_size,
                                     cfg.noise, use_ef=True, use_reset=True, reset_iters=7)
    np.testing.assert_allclose(tr.x_final, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.loss, losses[::3], rtol=1e-9, atol=1e-12)
    acc = tr.extras["test_accuracy"]
    assert acc.size == tr.loss.size and acc[-1] == b.problem.accuracy(tr.x_final)
    assert np.all((0 <= acc) & (acc <= 1))
    assert "test accuracy" in tr.summary()


def test_accuracy_is_stored_only_for_classifiers(tmp_path):
    out = tmp_path / "r.h5"
    for problem in ("mlp-classifier", "mlp-autoencoder"):
        engine.run(RunConfig(problem=problem, hidden="4", algorithm="sgd", iters=20, batch_size=8, log_every=5),
                   out=out)
    runs = [store.read_run(out, r) for r in store.list_runs(out)]
    has = {r["config"]["problem"]: "test_accuracy" in r for r in runs}
    assert has == {"mlp-classifier": True, "mlp-autoencoder": False}


def test_defaults_learn_the_digits():
    """η = 0.1 from a random start: over 95% of the held-out digits after the default 3,000 iterations."""
    tr = engine.run(RunConfig(problem="mlp-classifier", algorithm="ef-sgd", compressor="rand-k:0.01", clients=10,
                              split="by-label", batch_size=8))
    assert tr.status == "completed" and tr.extras["test_accuracy"][-1] > 0.95
    assert tr.extras["test_accuracy"][0] < 0.3 and not tr.meta["flagged"]


def test_suite_cells():
    sw = suites.make("saddle-randomk-classes")
    cfgs = [c.config for c in sw.cells]
    assert len(cfgs) == 12 and {c.compressor for c in cfgs} == {"rand-k:1.0", "rand-k:0.1", "rand-k:0.01",
                                                                  "rand-k:0.001"}
    assert all(c.split == "by-label" and c.clients == 10 and c.problem == "mlp-classifier" and c.lr == 0.1
               and c.batch_size == 8 for c in cfgs)
    assert sw.figure["x"] == ("iteration", "bits_up") and sw.figure["ys"] == ("loss", "test_accuracy")


def test_compare_suite_with_plot(tmp_path, capsys):
    import matplotlib.image as mpimg
    out, png = tmp_path / "f1.h5", tmp_path / "f1.png"
    rc = main(["compare", "--suite", "figure1", "--seeds", "1", "--iters", "60", "--out", str(out), "--plot",
               str(png), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "rand-k:0.001" in text and f"figure: {png}" in text
    assert mpimg.imread(png).shape[1] > 1000      # two columns: against iterations and against bits
    runs = [store.read_run(out, r) for r in store.list_runs(out)]
    assert len(runs) == 4 and all(r["test_accuracy"].size == 4 for r in runs)   # t = 0, 25, 50, 60


def test_compare_plot_path_checked_before_any_run(tmp_path, capsys):
    out = tmp_path / "f1.h5"
    rc = main(["compare", "--suite", "figure1", "--out", str(out), "--plot", str(tmp_path / "no" / "f.png")])
    assert rc == 2 and not out.exists()
    assert "does not exist" in capsys.readouterr().err
    rc = main(["compare", "--suite", "figure1", "--out", str(out), "--plot", str(tmp_path / "f.xyz")])
    assert rc == 2 and not out.exists()


def test_plot_several_x_axes_drops_zero_on_log_axes(tmp_path):
    from cgdbench import plot
    out = tmp_path / "r.h5"
    engine.run(RunConfig(problem="mlp-classifier", hidden="4", algorithm="ef-sgd", compressor="rand-k:0.1",
                         iters=40, batch_size=8, log_every=10), out=out)
    fig = plot.plot_file(out, tmp_path / "a.png", x="iteration,bits_up", ys=("loss", "test_accuracy"), log_x=True)
    axes = fig["axes"]
    assert axes.shape == (2, 2)
    assert axes[0, 0].get_xscale() == "linear" and axes[0, 1].get_xscale() == "log"
    assert axes[1, 0].get_ylabel().startswith("test accuracy")
    xs = axes[0, 1].lines[0].get_xdata()
    assert xs.size == 4 and xs.min() > 0          # the t = 0 row (no bits yet) is not drawn on the log axis
    assert axes[0, 0].lines[0].get_xdata().size == 5
    with pytest.raises(ConfigError, match="--x 'bits'"):
        plot.plot_file(out, tmp_path / "b.png", x="iteration,bits", ys=("loss",))
    assert json.loads(json.dumps(fig["groups"])) == 1


def test_summary_says_which_class_each_worker_holds(data_dir):
    tr = engine.run(RunConfig(problem="mlp-classifier", hidden="3", algorithm="sgd", clients=10, split="by-label",
                              iters=5, batch_size=4))
    assert "split by-label: client i holds class 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in tr.summary()
    lr = engine.run(RunConfig(dataset="a1a", clients=2, split="by-label", iters=3), data_dir=data_dir)
    assert "split by-label: client i holds class" not in lr.summary() and "split by-label" in lr.summary()
    rows = dict(data.status())
    assert "mnist" in rows and "digits, digits28" in rows
