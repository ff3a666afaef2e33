"""Vector compressors of compressed SGD: NumPy twins, unbiasedness, contraction, bits, bad input."""

import numpy as np
import pytest

from cgdbench import compressors
from cgdbench.compressors import RandK
from cgdbench.compressors.vector import SHARED_COMPRESSOR, measure
from cgdbench.errors import ConfigError

from cgdbench import reference as naive

D = 50
ALL = ["identity", "rand-k:5", "rand-1", "rand-k-unscaled:5", "top-k:5", "sign", "qsgd:4", "natural",
       "sketch-top-k:3"]


def key(seed, t):
    return naive.stream_key(seed, int(SHARED_COMPRESSOR), t)


@pytest.mark.parametrize("v", ["gauss", "zeros", "ties", "one-hot", "tiny"])
@pytest.mark.parametrize("seed,t", [(0, 0), (7, 13)])
def test_against_numpy_twins(v, seed, t, rng):
    x = {"gauss": rng.standard_normal(D), "zeros": np.zeros(D), "ties": np.ones(D) * np.repeat([1, -1], D // 2),
         "one-hot": np.eye(D)[3] * -2.5, "tiny": rng.standard_normal(D) * 1e-310}[v]
    C = lambda spec: compressors.make_vector(spec, D)(x, seed=seed, iteration=t)  # noqa: E731
    np.testing.assert_array_equal(C("identity"), x)
    for k in (1, 5, D):
        np.testing.assert_array_equal(C(f"top-k:{k}"), naive.top_k(x, k))
    np.testing.assert_allclose(C("sign"), naive.scaled_sign(x), rtol=1e-14, atol=0)
    for s in (1, 4, 255):
        np.testing.assert_allclose(C(f"qsgd:{s}"), naive.qsgd(x, s, key(seed, t)), rtol=1e-13, atol=0)
    np.testing.assert_array_equal(C("natural"), naive.natural(x, key(seed, t)))
    # rand-k: the coordinates of the det-CGD rand-k sketch drawn from the shared stream
    for k in (1, 5, D):
        J = RandK(D, np.array([0, D]), k).sample(seed, int(SHARED_COMPRESSOR), t)[0]
        want = np.zeros(D)
        want[J] = x[J]
        np.testing.assert_array_equal(C(f"rand-k-unscaled:{k}"), want)
        np.testing.assert_allclose(C(f"rand-k:{k}"), want * D / k, rtol=1e-15)


def test_top_k_ties_and_large_d(rng):
    x = np.zeros(1000)
    x[[10, 500, 999, 3]] = [2.0, -2.0, 2.0, 2.0]
    out = compressors.make_vector("top-k:2", 1000)(x)
    assert np.flatnonzero(out).tolist() == [3, 10]          # ties go to the lowest indices
    # the sampled threshold must not change the answer, whatever the distribution
    for v in (rng.standard_normal(200_000), rng.standard_t(1, 200_000), np.abs(rng.standard_normal(200_000)),
              np.round(rng.standard_normal(200_000), 1)):
        for k in (1, 7, 32, 33, 200, 20_000, 199_999):
            np.testing.assert_array_equal(compressors.make_vector(f"top-k:{k}", v.size)(v), naive.top_k(v, k))


def test_sketch_top_k_recovers_heavy_hitters(rng):
    d, k = 2000, 10
    x = rng.standard_normal(d) * 1e-3
    J = np.sort(rng.choice(d, k, replace=False))
    x[J] = rng.choice([-1, 1], k) * (5 + rng.random(k))
    for seed in range(5):
        out = compressors.make_vector(f"sketch-top-k:{k}", d)(x, seed=seed)
        assert np.flatnonzero(out).tolist() == J.tolist()
        np.testing.assert_array_equal(out[J], x[J])          # second round sends exact values


@pytest.mark.parametrize("spec", ["rand-k:5", "rand-1", "qsgd:2", "natural", "identity"])
def test_unbiased(spec):
    r = measure(compressors.make_vector(spec, D), samples=4000, seed=1)
    # n‖mean − x‖²/E‖C − x‖² ≈ χ²_d/d·(...) ≈ 1 for an unbiased compressor
    assert r["bias_ratio"] < 1.6 or spec == "identity"
    assert r["omega_measured"] <= r["omega_theory"] * 1.05 + 1e-12


@pytest.mark.parametrize("spec", ["rand-k-unscaled:5", "top-k:5", "sign", "sketch-top-k:3"])
def test_biased_ones_are_detected(spec):
    assert measure(compressors.make_vector(spec, D), samples=400, seed=1)["bias_ratio"] > 20


def test_contraction(rng):
    k = 5
    r = measure(compressors.make_vector(f"rand-k-unscaled:{k}", D), samples=4000, seed=2)
    assert abs(r["mu_measured"] - k / D) < 4 * r["mu_stderr"]          # μ = k/d exactly in expectation
    for _ in range(50):                                                # deterministic ones, per vector
        x = rng.standard_normal(D) * rng.exponential(1, D)
        top = compressors.make_vector(f"top-k:{k}", D)(x)
        assert np.sum((x - top) ** 2) <= (1 - k / D) * np.sum(x**2) + 1e-12
        sg = compressors.make_vector("sign", D)(x)
        mu = np.abs(x).sum() ** 2 / (D * np.sum(x**2))
        assert np.sum((x - sg) ** 2) == pytest.approx((1 - mu) * np.sum(x**2), rel=1e-12)
        assert mu >= 1 / D
    # error feedback's form of an unbiased compressor is a 1/(1+ω)-compressor
    for spec in ("rand-k:5", "qsgd:3", "natural"):
        c = compressors.make_vector(spec, D).contractive()
        r = measure(c, samples=2000, seed=3)
        assert r["mu_measured"] >= c.mu - 4 * r["mu_stderr"]
    x = rng.standard_normal(D)
    np.testing.assert_allclose(compressors.make_vector("rand-k:5", D).contractive()(x, seed=4, iteration=9),
                               compressors.make_vector("rand-k-unscaled:5", D)(x, seed=4, iteration=9), rtol=1e-15)


def test_bits():
    d, ib = 1000, 10
    b = lambda spec, vb=32, mode="explicit": compressors.make_vector(spec, d).bits_up(vb, mode)  # noqa: E731
    assert b("identity") == 32 * d and b("identity", 64) == 64 * d
    assert b("top-k:7") == 7 * (32 + ib) and b("top-k:7", mode="shared-seed") == 7 * (32 + ib)
    assert b("rand-k:7") == 7 * (32 + ib) and b("rand-k:7", mode="shared-seed") == 7 * 32
    assert b("rand-k-unscaled:0.01", 64) == 10 * (64 + ib)
    # k = d keeps every coordinate: a dense message, charged as the identity (Figure 1's "100%" column)
    assert b("rand-k:1.0") == b("rand-k:1000") == b("top-k:1000") == b("identity") == 32 * d
    assert b("sign") == d + 32
    assert b("qsgd:1") == 32 + d * 2 and b("qsgd:4") == 32 + d * 4 and b("qsgd:7") == 32 + d * 4
    assert b("natural") == 9 * d and b("natural", 64) == 12 * d
    c = compressors.make_vector("sketch-top-k:5,3,40", d)
    assert c.bits_up(32) == (3 * 40 + 10) * 32 and c.bits_down_extra() == 10 * ib


@pytest.mark.parametrize("spec,msg", [
    ("top-k:0", "out of range"), ("top-k:51", "out of range"), ("top-k:1.5", "fraction 1.5"),
    ("rand-k:0.0", "fraction"), ("top-k:-3", "out of range"), ("qsgd:0", "levels"), ("qsgd:2.5", "levels"),
    ("sketch-top-k:10,5,12", "cannot recover k = 10"), ("sketch-top-k:2,5,80", "exceed d"),
    ("top-k:abc", "not a number"), ("bern-q:0.5", "vector compressor"), ("sign:3", "takes no parameter"),
    # one value too many was read as the first alone (top-k:3,4 ran as top-k:3)
    ("top-k:3,4", r"takes K \(1 value\), got 2"), ("qsgd:4,9", "takes S"), ("rand-k:3,7", "1 value"),
    ("rand-k-unscaled:1,1", "got 2"), ("sketch-top-k:2,5,40,3", "1 to 3 values"),
])
def test_bad_input(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        compressors.make_vector(spec, D)


def test_fractions_and_registry():
    assert compressors.make_vector("top-k:0.1", D).k == 5
    assert compressors.make_vector("top-k:1.0", D).k == D
    assert compressors.make_vector("top-k:1", D).k == 1
    assert compressors.make_vector("randomk:0.001", 10**4).spec() == "rand-k-unscaled:10"
    with pytest.raises(ConfigError, match="'top-k' is a vector compressor, not a diagonal sketch; the sketch "
                                          "methods take: identity, rand-k"):
        compressors.make("top-k:3", D)


@pytest.mark.parametrize("d", [1, 7, 63, 64, 65, 131, 1000])
def test_dense_compressors_every_length(d, rng):
    """The sign/qsgd/natural kernels work in words of 64 and pairs of coordinates: every tail length."""
    x = rng.standard_normal(d)
    x[::5] *= -1e-3
    C = lambda spec: compressors.make_vector(spec, d)(x, seed=3, iteration=2)  # noqa: E731
    np.testing.assert_allclose(C("sign"), naive.scaled_sign(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(C("qsgd:3"), naive.qsgd(x, 3, key(3, 2)), rtol=1e-13, atol=0)
    np.testing.assert_array_equal(C("natural"), naive.natural(x, key(3, 2)))
