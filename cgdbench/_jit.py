"""The one place that decides how kernels are compiled.

Fastmath: only flags that keep NaN/inf semantics (divergence must stay detectable)
and do not reassociate sums (reassociation lets the vectorizer change summation
order, and the same seed must give bit-identical results everywhere).
"""
import numba

FASTMATH = frozenset({"nsz", "arcp", "contract"})

#: serial kernels
njit = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True)
#: kernels with ``prange``; the work split never depends on the thread count
njit_parallel = numba.njit(cache=True, fastmath=set(FASTMATH), parallel=True, nogil=True)
prange = numba.prange
