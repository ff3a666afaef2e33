"""Optimal stepsizes: det-CGD1 convex program (13) and the diagonal restriction."""
import numpy as np
import pytest

from cgdbench import compressors, stepsizes
from cgdbench.errors import ConfigError
from cgdbench.stepsizes import optimal

from . import naive

D = 10


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGDBENCH_CACHE", str(tmp_path / "cache"))


def random_L(seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(D, D))
    return B @ B.T / D + 0.1 * np.eye(D)


def exact_gap(Dm, sk, L, family="det-cgd1"):
    C = np.zeros((D, D))
    for p, s in naive.enumerate_sketch(sk):
        S = np.diag(s)
        C += p * (S @ Dm @ L @ Dm @ S if family == "det-cgd1" else Dm @ S @ L @ S @ Dm)
    return np.linalg.eigvalsh(Dm - C)[0]


@pytest.mark.parametrize("spec", ["rand-1", "rand-k:3", "importance-rand-1", "bern-q:0.4"])
def test_det_cgd1_optimal_is_feasible_and_beats_every_closed_form(spec):
    L = random_L(1)
    sk = compressors.make(spec, D, None, np.diag(L))
    Dopt, info = stepsizes.build("optimal", "det-cgd1", sk, L)
    assert info["solver"]["solver"] in optimal.SOLVERS
    assert exact_gap(Dopt.dense(), sk, L) >= -1e-9 * np.abs(Dopt.dense()).max()
    assert info["condition_lambda"] <= 1 + 1e-9
    for rule in ("scalar", "identity-w", "diag-inv", "l-inv", "l-inv-sqrt", "optimal-diag"):
        other, _ = stepsizes.build(rule, "det-cgd1", sk, L)
        assert Dopt.logdet() >= other.logdet() - 1e-5, rule


def test_bern_q_one_block_optimum_is_q_L_inverse():
    L = random_L(2)
    sk = compressors.make("bern-q:0.4", D)
    Dopt, _ = stepsizes.build("optimal", "det-cgd1", sk, L)
    np.testing.assert_allclose(Dopt.dense(), 0.4 * np.linalg.inv(L), rtol=1e-4, atol=1e-6)


def test_optimal_diag_against_cvxpy():
    import cvxpy as cp
    L = random_L(3)
    sk = compressors.make("rand-k:3", D)
    A = sk.second_moment(L)
    delta = optimal.optimal_diag(A)
    w, V = np.linalg.eigh(A)
    Ah = (V * np.sqrt(w)) @ V.T
    x = cp.Variable(D)
    prob = cp.Problem(cp.Maximize(cp.sum(cp.log(x))), [np.eye(D) - Ah @ cp.diag(x) @ Ah >> 0])
    prob.solve(solver="CLARABEL")
    assert np.sum(np.log(delta)) == pytest.approx(prob.value, abs=1e-5)
    np.testing.assert_allclose(delta, x.value, rtol=1e-3)
    # feasible for both families, and at least as good as diag-inv
    for family in ("det-cgd1", "det-cgd2"):
        Dd, info = stepsizes.build("optimal-diag", family, sk, L)
        assert exact_gap(Dd.dense(), sk, L, family) >= -1e-12
        assert Dd.logdet() >= stepsizes.build("diag-inv", family, sk, L)[0].logdet() - 1e-9


def test_optimal_diag_is_fast_at_w8a_size():
    """d = 300 in well under a second (no timing asserted; runs as a smoke test)."""
    rng = np.random.default_rng(0)
    B = rng.normal(size=(300, 300))
    L = B @ B.T / 300 + 0.1 * np.eye(300)
    D_, info = stepsizes.build("optimal-diag", "det-cgd1", compressors.make("rand-1", 300), L)
    assert info["condition_lambda"] <= 1 + 1e-9


def test_cache_is_used(tmp_path):
    L = random_L(4)
    sk = compressors.make("rand-1", D)
    D1, info1 = optimal.optimal_det_cgd1(sk, L)
    D2, info2 = optimal.optimal_det_cgd1(sk, L)
    assert info1["status"] != "cached" and info2["status"] == "cached"
    np.testing.assert_array_equal(D1, D2)


def test_limits_and_unsupported_sketches():
    big = compressors.make("rand-1", 70)
    with pytest.raises(ConfigError, match="dense SDP limit d <= 64"):
        optimal.optimal_det_cgd1(big, np.eye(70))
    blocks = compressors.make("bern-q:0.5", D, [0, 4, 10])
    with pytest.raises(ConfigError, match="optimal-diag"):
        stepsizes.build("optimal", "det-cgd1", blocks, random_L(5), [0, 4, 10])


def test_solver_failure_falls_back_to_theorem2(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("solver exploded")
    monkeypatch.setattr(optimal, "_solve_cvxpy", boom)
    L = random_L(6)
    sk = compressors.make("rand-1", D)
    with pytest.warns(UserWarning, match="every solver failed"):
        Dm, info = stepsizes.build("optimal", "det-cgd1", sk, L)
    ref, _ = stepsizes.build("l-inv", "det-cgd1", sk, L)
    np.testing.assert_array_equal(Dm.dense(), ref.dense())
