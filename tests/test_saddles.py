"""Saddle problems: gradients vs finite differences and NumPy twins, known saddles and minima, data."""
import gzip

import numpy as np
import pytest

from cgdbench.errors import ConfigError, DataError
from cgdbench.problems import LinearAutoencoder, MLPAutoencoder, SaddleQuartic
from cgdbench.problems.saddles import read_idx_images
from cgdbench.second_order import lambda_min

PROBLEMS = {
    "quartic": lambda: SaddleQuartic.create(dim=12, samples=40),
    "linear": lambda: LinearAutoencoder.create(hidden="3"),
    "mlp": lambda: MLPAutoencoder.create(hidden="7,3,7"),
    "mlp-wd": lambda: MLPAutoencoder.create(hidden="5", lam=0.03),
    "linear-wd": lambda: LinearAutoencoder.create(hidden="2", lam=0.05, clients=3),
}


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem(request):
    return PROBLEMS[request.param]()


def test_gradient_matches_finite_differences(problem, rng):
    x = problem.x0("random", seed=1) + 0.05 * rng.standard_normal(problem.d)
    for rows in (rng.choice(problem.m, 37, replace=False), np.arange(problem.m)):
        f, g = problem.batch_f_and_grad(x, rows)
        for _ in range(3):
            v = rng.standard_normal(problem.d)
            h = 1e-6
            fd = (problem.batch_f_and_grad(x + h * v, rows)[0] - problem.batch_f_and_grad(x - h * v, rows)[0]) / (2 * h)
            assert fd == pytest.approx(g @ v, rel=1e-6, abs=1e-9)
    # the full-data path (Σ-based for the linear autoencoder) equals the per-row mean
    f_full, g_full = problem.f_and_grad(x)
    f_rows, g_rows = problem.batch_f_and_grad(x, np.arange(problem.m))
    assert f_full == pytest.approx(f_rows, rel=1e-12)
    np.testing.assert_allclose(g_full, g_rows, rtol=1e-10, atol=1e-12)


def test_hvp_matches_finite_differences(problem, rng):
    x = problem.x0("random", seed=2)
    v = rng.standard_normal(problem.d)
    h = 1e-6
    fd = (problem.grad(x + h * v) - problem.grad(x - h * v)) / (2 * h)
    np.testing.assert_allclose(problem.hvp(x, v), fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def mlp_numpy(problem, x, X):
    """Plain NumPy forward pass of the MLP autoencoder (the kernel's twin for the loss)."""
    a, po, widths = X.T, 0, problem.widths
    for l, (nin, nout) in enumerate(zip(widths[:-1], widths[1:])):
        W = x[po:po + nout * nin].reshape(nout, nin)
        b = x[po + nout * nin:po + nout * nin + nout]
        z = W @ a + b[:, None]
        a = np.tanh(z) if l < len(widths) - 2 else z
        po += nout * nin + nout
    return 0.5 * np.mean(np.sum((a - X.T) ** 2, axis=0)) + 0.5 * problem.V[0] * np.sum(x * x)


def test_mlp_loss_against_numpy(rng):
    for p in (PROBLEMS["mlp"](), PROBLEMS["mlp-wd"]()):
        x = p.x0("random", seed=3)
        rows = rng.choice(p.m, 70, replace=False)
        assert p.batch_f_and_grad(x, rows)[0] == pytest.approx(mlp_numpy(p, x, p.F[rows]), rel=1e-12)


def test_quartic_saddle_and_minimum():
    p = SaddleQuartic.create(dim=9, lam=2.0)
    assert np.all(p.grad(p.saddle()) == 0)
    assert lambda_min(p, p.saddle())[0] == pytest.approx(-1.0, abs=1e-3)   # H + Diag(mean a_j): mean a_j ≈ 0
    x = p.minimizer()
    assert p.f(x) == pytest.approx(p.f_star, rel=1e-9) and p.f_star == -1 / 8
    assert np.linalg.norm(p.grad(x)) < 1e-9
    assert lambda_min(p, x)[0] > 0.4


def test_linear_autoencoder_saddle_and_pca_minimum():
    p = LinearAutoencoder.create(hidden="4")
    x0 = p.saddle()
    assert np.all(p.grad(x0) == 0)
    lam1 = np.linalg.eigvalsh(p.G)[-1]
    lam, how = lambda_min(p, x0)
    assert how == "dense" and lam == pytest.approx(-lam1, rel=1e-8)
    # PCA: W1 = U_hᵀ, W2 = U_h attains f* = ½ Σ_{i>h} λ_i(Σ), a stationary point
    w, U = np.linalg.eigh(p.G)
    Uh = U[:, ::-1][:, :4]
    x = np.concatenate([Uh.T.ravel(), Uh.ravel()])
    assert p.f(x) == pytest.approx(p.f_star, rel=1e-10)
    assert np.linalg.norm(p.grad(x)) < 1e-10
    assert lambda_min(p, x)[0] > -1e-8        # flat directions (W1 → AW1, W2 → W2A⁻¹), no descent


def test_mlp_saddle_is_stationary():
    p = MLPAutoencoder.create(hidden="32,8,32")
    g = p.grad(p.saddle())
    assert np.all(g[:p.d - p.widths[-1]] == 0)           # every weight gradient is exactly 0
    assert np.abs(g).max() < 1e-12
    assert p.d == 64 * 32 + 32 + 32 * 8 + 8 + 8 * 32 + 32 + 32 * 64 + 64
    assert p.block_ptr.tolist()[-1] == p.d and len(p.block_ptr) == 5


def test_lanczos_matches_dense(rng):
    p = MLPAutoencoder.create(hidden="30")   # d = 64·30·2 + 30 + 64 = 3934 > dense limit
    x = p.x0("random", seed=0)
    lam, how = lambda_min(p, x)
    assert how == "lanczos"
    small = MLPAutoencoder.create(hidden="6")
    xs = small.x0("random", seed=0)
    from cgdbench import second_order
    lam_d, _ = lambda_min(small, xs)
    old = second_order.DENSE_LIMIT
    second_order.DENSE_LIMIT = 10
    try:
        lam_l, how_l = lambda_min(small, xs)
    finally:
        second_order.DENSE_LIMIT = old
    assert how_l == "lanczos" and lam_l == pytest.approx(lam_d, rel=1e-5, abs=1e-7)


def test_second_order_needs_hvp(small_dataset):
    from cgdbench.problems import LogRegNonconvex
    with pytest.raises(ConfigError, match="no Hessian-vector product"):
        lambda_min(LogRegNonconvex(small_dataset), np.zeros(12))


def test_idx_reader(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 3, 4)) + imgs.tobytes()
    (tmp_path / "t-images-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "t-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw)
    for name in ("t-images-idx3-ubyte", "t-images-idx3-ubyte.gz"):
        X = read_idx_images(tmp_path / name)
        np.testing.assert_array_equal(X, imgs.reshape(2, 12) / 255.0)
    p = MLPAutoencoder.create(dataset=str(tmp_path / "t-images-idx3-ubyte"), hidden="3")
    assert p.m == 2 and p.widths == (12, 3, 12)
    (tmp_path / "bad-idx3").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx_images(tmp_path / "bad-idx3")
    (tmp_path / "labels-idx3").write_bytes((2049).to_bytes(4, "big") + raw[4:])
    with pytest.raises(DataError, match="magic number 2051"):
        read_idx_images(tmp_path / "labels-idx3")


def test_libsvm_features_as_autoencoder_data(data_dir):
    p = LinearAutoencoder.create(dataset="a1a", data_dir=data_dir, hidden="5")
    assert p.F.shape == (1605, 123) and p.d == 2 * 5 * 123


@pytest.mark.parametrize("make,msg", [
    (lambda: LinearAutoencoder.create(hidden="100"), "wider than the data"),
    (lambda: LinearAutoencoder.create(hidden="3,2"), "one hidden width"),
    (lambda: MLPAutoencoder.create(hidden="32,x"), "integers"),
    (lambda: MLPAutoencoder.create(hidden="0"), ">= 1"),
    (lambda: SaddleQuartic.create(dim=1), "d >= 2"),
    (lambda: SaddleQuartic.create(lam=0.0), "λ > 0"),
    (lambda: SaddleQuartic.create(clients=100), "more workers than samples"),
])
def test_bad_problem_options(make, msg):
    with pytest.raises(ConfigError, match=msg):
        make()
