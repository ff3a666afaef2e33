"""Stepsize rules: conditions (7)/(8) checked independently by exact enumeration."""
import numpy as np
import pytest

from cgdbench import compressors, stepsizes
from cgdbench.errors import ConfigError
from cgdbench.stepsizes import StepsizeMatrix

from cgdbench import reference as naive

D = 6
PTR = np.array([0, 2, 6])
SKETCHES = ["identity", "rand-1", "rand-k:3", "importance-rand-1", "block-rand-k:1", "bern-q:0.5"]
RULES = ["scalar", "identity-w", "diag-inv", "l-inv", "l-inv-sqrt"]


def random_L(rng, block_diagonal):
    B = rng.normal(size=(D, D))
    L = B @ B.T / D + 0.1 * np.eye(D)
    if block_diagonal:
        mask = np.zeros((D, D), bool)
        for lo, hi in zip(PTR[:-1], PTR[1:]):
            mask[lo:hi, lo:hi] = True
        L = np.where(mask, L, 0.0)
    return L


def exact_condition_gap(D_mat, family, sk, L):
    """λ_min(D - E[...]) from the enumerated sketch distribution (>= 0 iff (7)/(8) holds)."""
    C = np.zeros((D, D))
    for p, s in naive.enumerate_sketch(sk):
        S = np.diag(s)
        C += p * (S @ D_mat @ L @ D_mat @ S if family == "det-cgd1" else D_mat @ S @ L @ S @ D_mat)
    return np.linalg.eigvalsh(D_mat - C)[0]


@pytest.mark.parametrize("family", ["det-cgd1", "det-cgd2"])
@pytest.mark.parametrize("sketch", SKETCHES)
@pytest.mark.parametrize("rule", RULES + ["optimal", "optimal-diag"])
@pytest.mark.parametrize("blocks", [False, True])
def test_every_rule_satisfies_its_condition(family, sketch, rule, blocks, rng, tmp_path, monkeypatch):
    monkeypatch.setenv("CGDBENCH_CACHE", str(tmp_path))
    L = random_L(rng, block_diagonal=blocks)
    ptr = PTR if blocks else np.array([0, D])
    sk = compressors.make(sketch, D, PTR, np.diag(L))
    Dm, info = stepsizes.build(rule, family, sk, L, ptr)
    scale = np.abs(Dm.dense()).max()
    assert exact_condition_gap(Dm.dense(), family, sk, L) >= -1e-10 * scale
    assert info["condition_lambda"] <= 1 + 1e-9
    # and it is the largest multiple of its shape: 1.01 D violates the condition
    if not rule.startswith("optimal") and not (blocks and rule != "scalar"):
        assert exact_condition_gap(1.01 * Dm.dense(), family, sk, L) < 0


def test_theorem2_per_block_gammas_match_the_formula(rng):
    """γ_i = 1/λ_max(E[W_i^{-1/2} S_i W_i L_i W_i S_i W_i^{-1/2}]) on a block-diagonal L."""
    L = random_L(rng, block_diagonal=True)
    sk = compressors.make("block-rand-k:1", D, PTR)
    Dm, info = stepsizes.build("l-inv", "det-cgd1", sk, L, PTR)
    for b, (lo, hi) in enumerate(zip(PTR[:-1], PTR[1:])):
        Li = L[lo:hi, lo:hi]
        Wi = np.linalg.inv(Li)
        w, V = np.linalg.eigh(Wi)
        Wmh = (V / np.sqrt(w)) @ V.T
        sub = compressors.make("rand-1", hi - lo)
        E = np.zeros_like(Li)
        for p, s in naive.enumerate_sketch(sub):
            S = np.diag(s)
            E += p * Wmh @ S @ Wi @ Li @ Wi @ S @ Wmh
        assert info["theorem2_gammas"][b] == pytest.approx(1 / np.linalg.eigvalsh(E)[-1], rel=1e-10)
        np.testing.assert_allclose(Dm.dense()[lo:hi, lo:hi], info["theorem2_gammas"][b] * Wi, rtol=1e-10)
    assert not info["warnings"]


@pytest.mark.parametrize("family", ["det-cgd1", "det-cgd2"])
def test_non_block_diagonal_L_with_blocks_is_scaled_and_warned(family):
    L = np.ones((D, D)) + 0.1 * np.eye(D)  # strongly coupled blocks: Theorem 2 does not apply
    sk = compressors.make("bern-q:0.5", D, PTR)
    Dm, info = stepsizes.build("identity-w", family, sk, L, PTR)
    assert any("not block diagonal" in w for w in info["warnings"])
    assert info["condition_lambda"] == pytest.approx(1.0, abs=1e-9)
    assert exact_condition_gap(Dm.dense(), family, sk, L) >= -1e-12


def test_optimal_det_cgd2_is_inverse_of_ETLT(rng):
    L = random_L(rng, block_diagonal=False)
    sk = compressors.make("bern-q:0.4,0.7", D, PTR)
    Dm, _ = stepsizes.build("optimal", "det-cgd2", sk, L, PTR)
    _, ETLT = naive.exact_moments(sk, L)
    np.testing.assert_allclose(Dm.dense(), np.linalg.inv(ETLT), rtol=1e-10)
    # (8) holds with equality
    np.testing.assert_allclose(Dm.dense() @ ETLT @ Dm.dense(), Dm.dense(), rtol=1e-9, atol=1e-12)


def test_scalar_default_is_one_over_lambda_max(rng):
    L = random_L(rng, False)
    Dm, _ = stepsizes.build("scalar", "det-cgd1", compressors.make("identity", D), L)
    assert Dm.gamma == pytest.approx(1 / np.linalg.eigvalsh(L)[-1], rel=1e-12)
    Dm, _ = stepsizes.build("scalar", "det-cgd1", compressors.make("rand-1", D), L)
    assert Dm.gamma == pytest.approx(1 / (D * np.diag(L).max()), rel=1e-12)  # Table 1 row 4


def test_explicit_gamma_violation_is_reported(rng):
    L = random_L(rng, False)
    Dm, info = stepsizes.build("scalar:100", "det-cgd1", compressors.make("identity", D), L)
    assert Dm.gamma == 100 and info["condition_lambda"] > 1 and "violates" in info["warnings"][0]


def test_typed_matrices_apply_and_logdet(rng):
    v = rng.normal(size=D)
    A = random_L(rng, True) + np.eye(D)
    for M in (StepsizeMatrix.scalar(0.3, D), StepsizeMatrix.diagonal(np.arange(1, D + 1.0)),
              StepsizeMatrix.blocks(A, PTR), StepsizeMatrix.blocks(A, [0, D])):
        np.testing.assert_allclose(M.apply(v), M.dense() @ v, rtol=1e-13)
        assert M.logdet() == pytest.approx(np.linalg.slogdet(M.dense())[1], rel=1e-12)
    big = StepsizeMatrix.scalar(1e-5, 3000)  # det underflows, its log does not
    assert big.det_root() == pytest.approx(1e-5)


def test_rules_that_invert_L_need_it_positive_definite():
    L = np.diag([1.0, 0.0, 2.0, 1, 1, 1])
    sk = compressors.make("rand-1", D)
    with pytest.raises(ConfigError, match="λ_min"):
        stepsizes.build("l-inv", "det-cgd1", sk, L)
    with pytest.raises(ConfigError, match=r"L\[1,1\]"):
        stepsizes.build("diag-inv", "det-cgd1", sk, L)
    with pytest.raises(ConfigError, match="unknown stepsize"):
        stepsizes.parse("newton")
    with pytest.raises(ConfigError, match="γ must be"):
        stepsizes.parse("scalar:-1")
