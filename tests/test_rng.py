import numpy as np

from cgdbench import rng as R

from cgdbench import reference as naive


def test_jitted_streams_match_numpy_twin():
    for seed, client, it in [(0, 0, 0), (1, 2, 3), (2**40 + 7, 999, 123456), (2**63 - 1, 0, 5)]:
        key = np.uint64(R.stream_key(seed, client, it))
        assert int(key) == int(naive.stream_key(seed, client, it))
        for draw in (0, 1, 17):
            assert R.uniform(key, draw) == naive.uniform(key, draw)


def test_streams_are_distinct_and_uniform():
    keys = {int(R.stream_key(7, c, k)) for c in range(50) for k in range(50)}
    assert len(keys) == 2500
    u = np.array([R.uniform(np.uint64(R.stream_key(7, 0, k)), j) for k in range(200) for j in range(50)])
    assert u.min() >= 0 and u.max() < 1
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    expected = u.size / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30  # 9 dof: p ~ 4e-4


def test_randint_range():
    key = np.uint64(R.stream_key(1, 2, 3))
    vals = {R.randint(key, j, 5) for j in range(500)}
    assert vals == {0, 1, 2, 3, 4}
