"""The one place that decides how kernels are compiled.

Fastmath: only flags that keep NaN/inf semantics (divergence must stay detectable)
and do not reassociate sums (reassociation lets the vectorizer change summation
order, and the same seed must give bit-identical results everywhere).
"""
import numba

FASTMATH = frozenset({"nsz", "arcp", "contract"})

#: serial kernels
njit = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True)
#: small kernels called inside hot loops: inlined at Numba-IR level, which also
#: removes the per-call reference counting of every array argument (~50 ns a call
#: for a kernel taking eight arrays, measured).  Not for large kernels: inlining
#: the logistic gradient into the prange body made the engine 25% slower.
njit_inline = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True, inline="always")
#: kernels with ``prange``; the work split never depends on the thread count
njit_parallel = numba.njit(cache=True, fastmath=set(FASTMATH), parallel=True, nogil=True)
prange = numba.prange
