"""Optimal stepsizes: det-CGD1 convex program (13) and the diagonal restriction."""
import numpy as np
import pytest

from cgdbench import compressors, stepsizes
from cgdbench.errors import ConfigError
from cgdbench.stepsizes import optimal

from cgdbench import reference as naive

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


def test_limits():
    big = compressors.make("rand-1", optimal.MAX_BARRIER_D + 1)
    with pytest.raises(ConfigError, match=f"dense limit d <= {optimal.MAX_BARRIER_D}.*optimal-diag"):
        optimal.optimal_det_cgd1(big, np.eye(optimal.MAX_BARRIER_D + 1))
    with pytest.raises(ConfigError, match="λ_min"):
        optimal.optimal_det_cgd1(compressors.make("rand-1", D), np.diag(np.arange(D) - 1.0))


@pytest.mark.parametrize("spec", ["rand-k:3", "importance-rand-1", "rand-1"])
def test_barrier_matches_clarabel(spec):
    """The barrier Newton-CG and the cvxpy q-relaxed LMI reach the same optimum."""
    L = random_L(7)
    sk = compressors.make(spec, D, None, np.diag(L))
    Db, status = optimal._solve_barrier(sk.moment_matrix(), L, 60.0)
    Dc, _ = optimal._solve_cvxpy(L, *optimal._moment_form(sk), "CLARABEL", 60.0)
    lam_c = stepsizes.condition_lambda(stepsizes.StepsizeMatrix.blocks(Dc, [0, D]), "det-cgd1", sk, L)
    ld_b = np.linalg.slogdet(Db)[1]
    ld_c = np.linalg.slogdet(Dc)[1] - D * np.log(max(lam_c, 1.0))   # Clarabel's D made exactly feasible
    assert exact_gap(Db, sk, L) >= -1e-9 * np.abs(Db).max()
    assert abs(ld_b - ld_c) <= 1e-5 * D, (ld_b, ld_c, status)


@pytest.mark.parametrize("spec,ptr", [("bern-q:0.3,0.8", [0, 4, 10]), ("block-rand-k:1,2", [0, 3, 10])])
def test_multi_block_optimum(spec, ptr):
    """Several blocks (E[SMS] = P∘M with a block-structured P): feasible, and at least every closed form."""
    L = random_L(8)
    sk = compressors.make(spec, D, ptr)
    Dopt, info = stepsizes.build("optimal", "det-cgd1", sk, L, ptr)
    assert info["solver"]["solver"] == "barrier-newton-cg"
    assert exact_gap(Dopt.dense(), sk, L) >= -1e-9 * np.abs(Dopt.dense()).max()
    for rule in ("identity-w", "diag-inv", "l-inv", "l-inv-sqrt", "optimal-diag"):
        other, _ = stepsizes.build(rule, "det-cgd1", sk, L, ptr)
        assert Dopt.logdet() >= other.logdet() - 1e-5, rule


def test_barrier_time_out_falls_back_to_clarabel(monkeypatch):
    solve = optimal._solve_barrier
    monkeypatch.setattr(optimal, "_solve_barrier", lambda P, L, limit: solve(P, L, 0.0))
    L = random_L(9)
    sk = compressors.make("rand-k:2", D)
    _, info = optimal.optimal_det_cgd1(sk, L)
    assert info["solver"] == "CLARABEL"
    assert "barrier-newton-cg: time limit 0 s reached" in info["errors"][0]


def test_barrier_time_limit_returns_the_last_centre(monkeypatch):
    """Past the first centre, a time-out keeps the solve's work: the last centre, feasible, not cached."""
    class Clock:                                   # one "second" per reading: a limit of N s is N Newton steps
        now = 0.0

        def perf_counter(self):
            self.now += 1.0
            return self.now
    L = random_L(9)
    sk = compressors.make("rand-k:2", D)
    full, _ = optimal._solve_barrier(sk.moment_matrix(), L, 600.0)
    monkeypatch.setattr(optimal, "time", Clock())
    cut, status = optimal._solve_barrier(sk.moment_matrix(), L, 40.0)
    assert status.startswith("time limit 40 s reached: the centre at t = "), status
    t = float(status.split("t = ")[1].split(",")[0])
    assert 1.0 <= t < 1e6
    assert exact_gap(cut, sk, L) >= 0.0
    gap = np.linalg.slogdet(full)[1] - np.linalg.slogdet(cut)[1]
    assert 0.0 < gap <= 1.2 * D / t, (gap, t)
    with pytest.raises(RuntimeError, match="before the first centre"):
        optimal._solve_barrier(sk.moment_matrix(), L, 2.0)
    # through build: used with a warning, and not cached (a later run with more time does better)
    monkeypatch.setattr(optimal, "_solve_barrier", lambda P, L, limit, solve=optimal._solve_barrier: solve(P, L, 40.0))
    Dm, info = stepsizes.build("optimal", "det-cgd1", sk, L)
    np.testing.assert_array_equal(Dm.dense(), cut)
    assert info["solver"]["time_limited"] and "cache" not in info["solver"]
    assert any("time limit 40 s reached" in w for w in info["warnings"])


def test_solver_failure_falls_back_to_theorem2(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("solver exploded")
    monkeypatch.setattr(optimal, "_solve_cvxpy", boom)
    monkeypatch.setattr(optimal, "_solve_barrier", boom)
    L = random_L(6)
    sk = compressors.make("rand-1", D)
    with pytest.warns(UserWarning, match="every solver failed"):
        Dm, info = stepsizes.build("optimal", "det-cgd1", sk, L)
    ref, _ = stepsizes.build("l-inv", "det-cgd1", sk, L)
    np.testing.assert_array_equal(Dm.dense(), ref.dense())
