"""Sketches: sampling kernel vs exact distributions, E[S] = I, E[SMS] closed forms, bits."""
from collections import Counter

import numpy as np
import pytest

from cgdbench import compressors
from cgdbench.errors import ConfigError

from cgdbench import reference as naive

D = 6
PTR = np.array([0, 2, 6])  # two blocks of sizes 2 and 4

SPECS = ["identity", "rand-1", "rand-k:3", "rand-k:6", "importance-rand-1", "block-rand-k:1",
         "block-rand-k:2,3", "bern-q:0.5", "bern-q:0.3,0.8"]


def make(spec, d=D, ptr=PTR):
    L_diag = np.arange(1, d + 1, dtype=float)
    return compressors.make(spec, d, ptr, L_diag)


@pytest.mark.parametrize("spec", SPECS)
def test_exact_unbiased_and_second_moment(spec, rng):
    sk = make(spec)
    M = rng.normal(size=(D, D))
    M = M @ M.T
    ES, ESMS = naive.exact_moments(sk, M)
    np.testing.assert_allclose(ES, np.eye(D), atol=1e-12)
    np.testing.assert_allclose(sk.second_moment(M), ESMS, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_sampler_matches_the_exact_distribution(spec):
    """Frequencies of the jitted sampler's outcomes against the enumerated probabilities."""
    sk = make(spec)
    outcomes = {tuple(s): p for p, s in naive.enumerate_sketch(sk)}
    N = 20000
    counts = Counter(tuple(sk.sample_diag(seed=5, client=c, iteration=k))
                     for c in range(20) for k in range(N // 20))
    assert set(counts) <= set(outcomes), "sampler produced an impossible outcome"
    chi2 = sum((counts.get(o, 0) - N * p) ** 2 / (N * p) for o, p in outcomes.items())
    dof = max(len(outcomes) - 1, 1)
    assert chi2 < dof + 6 * np.sqrt(2 * dof) + 10


@pytest.mark.parametrize("spec", ["rand-k:3", "importance-rand-1", "block-rand-k:2,3", "bern-q:0.3,0.8"])
def test_monte_carlo_moments_converge(spec, rng):
    sk = make(spec)
    M = rng.normal(size=(D, D))
    N = 40000
    acc_s = np.zeros(D)
    acc_m = np.zeros((D, D))
    for k in range(N):
        s = sk.sample_diag(seed=11, client=0, iteration=k)
        acc_s += s
        acc_m += np.outer(s, s) * M
    np.testing.assert_allclose(acc_s / N, np.ones(D), atol=0.1)
    np.testing.assert_allclose(acc_m / N, sk.second_moment(M), atol=0.15 * np.abs(sk.second_moment(M)).max())


def test_indices_are_distinct_and_counts_right():
    sk = make("rand-k:4", d=50, ptr=np.array([0, 50]))
    for k in range(200):
        idx, scale = sk.sample(seed=1, iteration=k)
        assert idx.size == 4 and np.unique(idx).size == 4
        assert np.all(scale == 50 / 4)
    sk = make("block-rand-k:2,3")
    idx, _ = sk.sample(seed=3)
    assert np.sum(idx < 2) == 2 and np.sum(idx >= 2) == 3


def test_same_seed_same_sample_different_client_different_stream():
    sk = make("rand-k:2", d=40, ptr=np.array([0, 40]))
    a = [tuple(sk.sample(9, c, 0)[0]) for c in range(30)]
    b = [tuple(sk.sample(9, c, 0)[0]) for c in range(30)]
    assert a == b
    assert len(set(a)) > 20


@pytest.mark.parametrize("spec,explicit,nnz", [
    ("identity", 0, 6), ("rand-1", 3, 1), ("rand-k:3", 9, 3), ("importance-rand-1", 3, 1),
    ("block-rand-k:1", 1 * 1 + 1 * 2, 2), ("bern-q:0.5", 2, 3.0),
    # every position of the vector, or of a block, is implied: no index bits for it
    ("rand-k:6", 0, 6), ("block-rand-k:2,3", 0 + 3 * 2, 5), ("block-rand-k:2,4", 0, 6),
    ("bern-q:1", 0, 6), ("bern-q:1,0.5", 1, 2 + 2.0),  # a block with q = 1 is always sent: no mask bit
])
def test_bits_per_message(spec, explicit, nnz):
    sk = make(spec)
    assert sk.index_bits("explicit") == explicit  # ceil(log2 6) = 3; blocks: ceil(log2 2)=1, ceil(log2 4)=2
    assert sk.index_bits("shared-seed") == 0
    assert sk.expected_nnz() == nnz


@pytest.mark.parametrize("spec,msg", [
    ("rand-k:0", "out of range"), ("rand-k:7", "out of range"), ("rand-k:1.5", "integer"),
    ("bern-q:0", "out of range"), ("bern-q:1.2", "out of range"), ("bern-q:0.5,0.5,0.5", "3 values"),
    ("block-rand-k:3", "block 0 of size 2"), ("nope", "unknown compressor"), ("rand-k", "needs a parameter"),
    ("identity:3", "takes no parameter"), ("rand-k:abc", "not a number"),
])
def test_bad_specs(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        make(spec)


def test_bad_probabilities(tmp_path):
    p = tmp_path / "p.txt"
    for vals, msg in [([0.5, 0.6, -0.1, 0, 0, 0], "negative"), ([0.2] * 6, "sum to 1.2"),
                      ([0.5, 0.5, 0, 0, 0, 0], "must be > 0"), ([0.5, 0.5], "need 6 probabilities")]:
        np.savetxt(p, vals)
        with pytest.raises(ConfigError, match=msg):
            make(f"importance-rand-1:{p}")
    np.save(tmp_path / "p.npy", np.full(6, 1 / 6))
    sk = make(f"importance-rand-1:{tmp_path / 'p.npy'}")
    np.testing.assert_allclose(sk.p, 1 / 6)


def test_rand_k_closed_form_matches_paper_formula(rng):
    """E[SMS] = (d/k)[((k-1)/(d-1)) M + ((d-k)/(d-1)) Diag(diag M)] (det-CGD, rand-k)."""
    d, k = 9, 4
    sk = compressors.make(f"rand-k:{k}", d)
    M = rng.normal(size=(d, d))
    paper = (d / k) * (((k - 1) / (d - 1)) * M + ((d - k) / (d - 1)) * np.diag(np.diag(M)))
    np.testing.assert_allclose(sk.second_moment(M), paper, rtol=1e-13)


@pytest.mark.parametrize("spec", SPECS)
def test_batch_message_kernel_matches_single_samples(spec, rng):
    sk = make(spec)
    g = rng.normal(size=D)
    out, nnz = sk.messages(g, seed=4, iterations=50)
    ref = np.zeros(D)
    ref_nnz = 0
    for k in range(50):
        idx, scale = sk.sample(4, 0, k)
        ref[idx] += scale * g[idx]
        ref_nnz += idx.size
    np.testing.assert_allclose(out, ref, rtol=1e-14)
    assert nnz == ref_nnz
