"""Counter-based random streams keyed by ``(seed, client, iteration)``.

Every random number a kernel draws is a pure function of
``(seed, client, iteration, draw)``: no state is carried between iterations or
shared between threads, so the result does not depend on how clients are
scheduled on threads.  The mixing function is SplitMix64's finalizer (Steele,
Lea & Flood 2014), applied to the key and to a Weyl sequence in the draw index.
"""
import numpy as np

from ._jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit
def mix64(z):
    """SplitMix64 finalizer: a bijection of uint64 with good avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit
def client_key(seed, client):
    """The part of :func:`stream_key` that does not change with the iteration (a kernel can keep it)."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    return mix64(h ^ (np.uint64(client) * _GOLDEN + _M1))


@njit
def iteration_key(ckey, iteration):
    """:func:`stream_key` from a client's :func:`client_key`."""
    return mix64(ckey ^ (np.uint64(iteration) * _M2 + _GOLDEN))


@njit
def stream_key(seed, client, iteration):
    """Key of the stream for one client at one iteration."""
    return iteration_key(client_key(seed, client), iteration)


@njit
def client_keys(seed, n):
    """:func:`client_key` of clients ``0 <= i < n``."""
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = client_key(seed, i)
    return out


@njit
def bits64(key, draw):
    """Draw number ``draw`` of stream ``key``: 64 random bits."""
    return mix64(np.uint64(key) + (np.uint64(draw) + np.uint64(1)) * _GOLDEN)


@njit
def uniform(key, draw):
    """Draw number ``draw`` of stream ``key``: a double in [0, 1) with 53 random bits."""
    return np.float64(bits64(key, draw) >> _S11) * _INV53


@njit
def randint(key, draw, n):
    """An integer in ``[0, n)``; the deviation from uniform is at most n * 2**-53."""
    j = np.int64(uniform(key, draw) * n)
    return j if j < n else n - 1
