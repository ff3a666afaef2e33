"""logreg-nonconvex and least-squares: oracle vs NumPy twin, finite differences, smoothness matrices."""
import numpy as np
import pytest

from cgdbench.errors import ConfigError
from cgdbench.problems import LeastSquares, LogRegNonconvex, parse_blocks

from cgdbench import reference as naive


@pytest.fixture(params=[(LogRegNonconvex, 1, "contiguous"), (LogRegNonconvex, 5, "contiguous"),
                        (LogRegNonconvex, 7, "shuffled"), (LeastSquares, 1, "contiguous"),
                        (LeastSquares, 7, "shuffled")], ids=lambda p: f"{p[0].name}-n{p[1]}-{p[2]}")
def problem(request, small_dataset):
    cls, n, split = request.param
    return cls(small_dataset, lam=0.2, clients=n, split=split, split_seed=4)


def test_f_and_grad_match_numpy(problem, rng):
    for _ in range(3):
        x = rng.normal(size=problem.d) * 2
        f, g = problem.f_and_grad(x)
        f0, g0 = naive.objective(problem, x)
        assert f == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-14)


def test_client_gradients_average_to_the_gradient(problem, rng):
    x = rng.normal(size=problem.d)
    fs, gs = zip(*(problem.client_f_and_grad(i, x) for i in range(problem.n)))
    assert np.mean(fs) == pytest.approx(problem.f(x), rel=1e-12)
    np.testing.assert_allclose(np.mean(gs, axis=0), problem.grad(x), rtol=1e-10, atol=1e-15)


def test_gradient_against_finite_differences(problem, rng):
    x = rng.normal(size=problem.d)
    g = problem.grad(x)
    h = 1e-6
    fd = np.array([(problem.f(x + h * e) - problem.f(x - h * e)) / (2 * h) for e in np.eye(problem.d)])
    np.testing.assert_allclose(g, fd, atol=1e-8)


def test_extreme_margins_are_finite(small_dataset):
    p = LogRegNonconvex(small_dataset, lam=0.1)
    for scale in (1e3, -1e3):
        f, g = p.f_and_grad(np.full(p.d, scale))
        f0, g0 = naive.objective(p, np.full(p.d, scale))
        assert np.isfinite(f) and np.all(np.isfinite(g))
        assert f == pytest.approx(f0, rel=1e-12)


def test_smoothness_matrix(problem, rng):
    L = problem.smoothness()
    np.testing.assert_allclose(L, naive.smoothness(problem), rtol=1e-12, atol=1e-15)
    Ls = np.mean([problem.client_smoothness(i) for i in range(problem.n)], axis=0)
    np.testing.assert_allclose(L, Ls, rtol=1e-12, atol=1e-15)
    # (4): f(x) <= f(y) + <∇f(y), x-y> + ½ (x-y)ᵀ L (x-y)
    for _ in range(20):
        y = rng.normal(size=problem.d) * 3
        x = y + rng.normal(size=problem.d) * rng.choice([0.01, 1.0, 5.0])
        fy, gy = problem.f_and_grad(y)
        assert problem.f(x) <= fy + gy @ (x - y) + 0.5 * (x - y) @ L @ (x - y) + 1e-12


def test_block_partitions():
    np.testing.assert_array_equal(parse_blocks(None, 10), [0, 10])
    np.testing.assert_array_equal(parse_blocks("3", 10), [0, 4, 7, 10])
    np.testing.assert_array_equal(parse_blocks("2,8", 10), [0, 2, 10])
    for bad in ("0", "11", "2,7", "a,b", "0,10"):
        with pytest.raises(ConfigError, match="blocks"):
            parse_blocks(bad, 10)


def test_bad_problem_options(small_dataset):
    with pytest.raises(ConfigError, match="λ must be"):
        LogRegNonconvex(small_dataset, lam=-1.0)
    with pytest.raises(ConfigError, match="more clients than rows"):
        LogRegNonconvex(small_dataset, clients=61)
    with pytest.raises(ConfigError, match="at least 1 client"):
        LogRegNonconvex(small_dataset, clients=0)
    with pytest.raises(ConfigError, match="unknown split"):
        LogRegNonconvex(small_dataset, split="random")


def test_client_with_one_row(small_dataset):
    p = LogRegNonconvex(small_dataset, lam=0.1, clients=60)
    x = np.linspace(-1, 1, p.d)
    f, g = p.f_and_grad(x)
    f0, g0 = naive.objective(p, x)
    assert f == pytest.approx(f0, rel=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("lam", [0.2, 0.0])
def test_least_squares_minimum_is_exact(small_dataset, lam):
    """x* solves the normal equations; f* = f(x*) is below f along random directions and at GD iterates."""
    p = LeastSquares(small_dataset, lam=lam, clients=3)
    xs, fs = p.minimizer, p.f_lower
    assert np.linalg.norm(p.grad(xs)) < 1e-12
    L = p.smoothness()
    rng = np.random.default_rng(0)
    for _ in range(10):  # a quadratic with Hessian L: f(x* + v) − f* = ½ vᵀLv exactly
        v = rng.normal(size=p.d)
        assert p.f(xs + v) - fs == pytest.approx(0.5 * v @ L @ v, rel=1e-9, abs=1e-13)
    x = np.zeros(p.d)
    step = 1 / np.linalg.eigvalsh(L)[-1]
    for _ in range(2000):
        x = x - step * p.grad(x)
    assert fs <= p.f(x) <= fs + 1e-10


def test_logistic_loss_from_one_log_per_client_is_exact_to_rounding():
    """The kernels multiply the rows' loss factors 1 + e^{-|t|} and take one log per client, folding the
    product into its log before it can overflow: a client of 3,000 rows at x = 0 (each factor 2: 2^3000
    overflows without the fold) has loss log 2 exactly to rounding, and at random points the loss
    matches the sum of log1p's in extended precision to within a few ulp of the row count."""
    from cgdbench.data import Dataset, _canonical_csr, synthetic_a1a
    A, b = synthetic_a1a(seed=5, m=3000, d=20, groups=5)
    A = _canonical_csr(A)
    p = LogRegNonconvex(Dataset("tall", A, b, "generated", None), lam=0.0)
    assert p.f(np.zeros(p.d)) == pytest.approx(np.log(2.0), rel=4e-16)
    rng = np.random.default_rng(0)
    Ad = A.toarray()
    for scale in (0.1, 1.0, 30.0):
        x = rng.normal(size=p.d) * scale
        t = (b * (Ad @ x)).astype(np.longdouble)
        exact = float(np.mean(np.log1p(np.exp(-np.abs(t))) + np.maximum(-t, 0)))
        assert p.f(x) == pytest.approx(exact, rel=1e-14, abs=1e-300)
