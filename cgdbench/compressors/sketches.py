"""Unbiased diagonal sketches of det-CGD (Li, Karagulyan & Richtárik, Sections 2-4).

Every sketch here is a random *diagonal* PSD matrix ``S = Diag(s)`` with
``E[S] = I``.  A sample is never a d×d matrix: the kernel writes the positions
it keeps (``idx``) and their scales (``s[idx]``).  Because S is diagonal,

    E[S M S]_{ab} = E[s_a s_b] M_{ab},   i.e.   E[S M S] = P ∘ M,

so each sketch only has to give its *moment matrix* ``P = E[s sᵀ]`` in closed
form; :meth:`Sketch.second_moment` is the same Hadamard product for all of them.

Kernels are selected by an integer ``kind`` inside one jitted function
(:func:`sample_sketch`) rather than by passing jitted functions around: the
engine kernel is then compiled once and cached on disk, whatever the sketch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._jit import njit, njit_inline
from ..errors import ConfigError
from ..rng import randint, stream_key, uniform

IDENTITY, RAND_K, IMPORTANCE, BLOCK_RAND_K, BERN_Q = 0, 1, 2, 3, 4

INDEX_MODES = ("explicit", "shared-seed")


@njit_inline
def _floyd(key, draw, lo, n, kk, scale, mark, idx_out, scale_out, pos):
    """Write ``kk`` distinct uniform positions of ``[lo, lo+n)`` (Floyd's algorithm).

    O(kk) work; ``mark`` (all zero on entry and on exit) flags chosen positions.
    """
    if kk == 1:  # rand-1: one draw, no bookkeeping
        idx_out[pos] = lo + randint(key, draw, n)
        scale_out[pos] = scale
        return pos + 1, draw + 1
    start = pos
    for j in range(n - kk, n):
        t = randint(key, draw, j + 1)
        draw += 1
        if mark[lo + t]:
            t = j
        mark[lo + t] = 1
        idx_out[pos] = lo + t
        scale_out[pos] = scale
        pos += 1
    for p in range(start, pos):
        mark[idx_out[p]] = 0
    return pos, draw


@njit_inline
def sample_sketch(kind, d, k, block_ptr, block_k, block_q, cdf, inv_p,
                  seed, client, iteration, mark, idx_out, scale_out):
    """Draw ``S`` for ``(seed, client, iteration)``; return its number of non-zeros.

    ``idx_out[:nnz]`` are the kept coordinates, ``scale_out[:nnz]`` the diagonal
    entries ``s_j`` there (all other ``s_j`` are 0).
    """
    key = stream_key(seed, client, iteration)
    nnz = 0
    draw = 0
    if kind == IDENTITY:
        for j in range(d):
            idx_out[j] = j
            scale_out[j] = 1.0
        nnz = d
    elif kind == RAND_K:
        nnz, draw = _floyd(key, draw, 0, d, k, d / k, mark, idx_out, scale_out, 0)
    elif kind == IMPORTANCE:
        u = uniform(key, draw)
        # first j with cdf[j] > u; cdf[-1] == 1.0 exactly
        lo, hi = 0, d - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[mid] > u:
                hi = mid
            else:
                lo = mid + 1
        idx_out[0] = lo
        scale_out[0] = inv_p[lo]
        nnz = 1
    elif kind == BLOCK_RAND_K:
        for b in range(block_ptr.shape[0] - 1):
            lo = block_ptr[b]
            n = block_ptr[b + 1] - lo
            kb = block_k[b]
            nnz, draw = _floyd(key, draw, lo, n, kb, n / kb, mark, idx_out, scale_out, nnz)
    else:  # BERN_Q
        for b in range(block_ptr.shape[0] - 1):
            q = block_q[b]
            if uniform(key, draw) < q:
                s = 1.0 / q
                for j in range(block_ptr[b], block_ptr[b + 1]):
                    idx_out[nnz] = j
                    scale_out[nnz] = s
                    nnz += 1
            draw += 1
    return nnz


@njit
def sketch_messages(kind, d, k, block_ptr, block_k, block_q, cdf, inv_p, seed, g, iterations, mark,
                    idx_buf, scale_buf, out):
    """Sum of ``S^k g`` over ``k < iterations`` into ``out``; returns the total nnz.

    The sampling-plus-gather work one client does per round; benchmarks time it.
    """
    total = 0
    for t in range(out.shape[0]):
        out[t] = 0.0
    for it in range(iterations):
        nnz = sample_sketch(kind, d, k, block_ptr, block_k, block_q, cdf, inv_p, seed, 0, it,
                            mark, idx_buf, scale_buf)
        for p in range(nnz):
            out[idx_buf[p]] += scale_buf[p] * g[idx_buf[p]]
        total += nnz
    return total


def _ceil_log2(n: int) -> int:
    return 0 if n <= 1 else int(math.ceil(math.log2(n)))


def _rand_k_moment(n: int, kk: int) -> np.ndarray:
    """E[s sᵀ] of rand-k on n coordinates: d/k on the diagonal, d(k-1)/(k(d-1)) off it."""
    P = np.empty((n, n))
    P.fill(0.0 if n == 1 else n * (kk - 1) / (kk * (n - 1)))
    np.fill_diagonal(P, n / kk)
    return P


@dataclass(frozen=True, eq=False)
class Sketch:
    """A random diagonal sketch ``S = Diag(s)``, ``E[S] = I``, on ``d`` coordinates."""

    d: int
    block_ptr: np.ndarray = field(repr=False)

    name = "sketch"
    kind = -1

    @property
    def n_blocks(self) -> int:
        return len(self.block_ptr) - 1

    @property
    def block_sizes(self) -> np.ndarray:
        return np.diff(self.block_ptr)

    def moment_matrix(self) -> np.ndarray:
        """``P = E[s sᵀ]`` (d×d), closed form."""
        raise NotImplementedError

    def second_moment(self, M: np.ndarray) -> np.ndarray:
        """``E[S M S] = P ∘ M`` for a d×d matrix ``M``."""
        M = np.asarray(M, dtype=float)
        if M.shape != (self.d, self.d):
            raise ConfigError(f"second_moment needs a {self.d}x{self.d} matrix, got shape {M.shape}")
        return self.moment_matrix() * M

    def expected_nnz(self) -> float:
        """Expected number of coordinates a message carries."""
        raise NotImplementedError

    def index_bits(self, index_mode: str) -> int:
        """Bits per message that say *which* coordinates are sent (docs/bits.md)."""
        if index_mode not in INDEX_MODES:
            raise ConfigError(f"unknown index mode {index_mode!r}; choose one of: {', '.join(INDEX_MODES)}")
        return 0 if index_mode == "shared-seed" else self._explicit_index_bits()

    def _explicit_index_bits(self) -> int:
        raise NotImplementedError

    def spec(self) -> str:
        return self.name

    # --- kernel interface -------------------------------------------------
    def kernel_args(self):
        """Arguments of :func:`sample_sketch` after ``kind`` (fixed dtypes)."""
        return (self.kind, self.d, self._k(), self.block_ptr.astype(np.int64),
                self._block_k(), self._block_q(), self._cdf(), self._inv_p())

    def _k(self) -> int:
        return 1

    def _block_k(self):
        return np.ones(self.n_blocks, dtype=np.int64)

    def _block_q(self):
        return np.ones(self.n_blocks)

    def _cdf(self):
        return np.ones(1)

    def _inv_p(self):
        return np.ones(1)

    def sample(self, seed: int, client: int = 0, iteration: int = 0):
        """One draw as ``(idx, scale)`` arrays (Python convenience; the engine calls the kernel)."""
        mark = np.zeros(self.d, dtype=np.int8)
        idx = np.empty(self.d, dtype=np.int64)
        scale = np.empty(self.d)
        kind, *rest = self.kernel_args()
        nnz = sample_sketch(kind, *rest, seed, client, iteration, mark, idx, scale)
        return idx[:nnz].copy(), scale[:nnz].copy()

    def messages(self, g, seed: int, iterations: int):
        """``(Σ_k S^k g, total nnz)`` over ``iterations`` draws of client 0 (one jitted loop)."""
        g = np.ascontiguousarray(g, dtype=float)
        out = np.empty(self.d)
        kind, *rest = self.kernel_args()
        nnz = sketch_messages(kind, *rest, seed, g, iterations, np.zeros(self.d, np.int8),
                              np.empty(self.d, np.int64), np.empty(self.d), out)
        return out, nnz

    def sample_diag(self, seed: int, client: int = 0, iteration: int = 0) -> np.ndarray:
        """The diagonal ``s`` of one draw, as a dense vector (tests and small d only)."""
        idx, scale = self.sample(seed, client, iteration)
        s = np.zeros(self.d)
        s[idx] = scale
        return s


@dataclass(frozen=True, eq=False)
class Identity(Sketch):
    """``S = I``: no compression (GD, uncompressed det-CGD)."""

    name = "identity"
    kind = IDENTITY

    def moment_matrix(self):
        return np.ones((self.d, self.d))

    def expected_nnz(self):
        return float(self.d)

    def _explicit_index_bits(self):
        return 0  # a dense message: positions are implicit


@dataclass(frozen=True, eq=False)
class RandK(Sketch):
    """rand-k: ``S = (d/k) Σ_{j∈J} e_j e_jᵀ``, J a uniform k-subset of [d]."""

    k: int = 1
    name = "rand-k"
    kind = RAND_K

    def __post_init__(self):
        if not 1 <= self.k <= self.d:
            raise ConfigError(f"rand-k: k = {self.k} is out of range; need 1 <= k <= d = {self.d}")

    def moment_matrix(self):
        return _rand_k_moment(self.d, self.k)

    def expected_nnz(self):
        return float(self.k)

    def _explicit_index_bits(self):
        return 0 if self.k >= self.d else self.k * _ceil_log2(self.d)  # k = d: every position, none to name

    def _k(self):
        return self.k

    def spec(self):
        return f"rand-k:{self.k}"


@dataclass(frozen=True, eq=False)
class ImportanceRand1(Sketch):
    """Importance-sampled rand-1: ``S = e_j e_jᵀ / p_j`` with ``P(j) = p_j``."""

    p: np.ndarray = field(default=None, repr=False)
    name = "importance-rand-1"
    kind = IMPORTANCE

    def __post_init__(self):
        p = np.asarray(self.p, dtype=float).ravel()
        if p.shape != (self.d,):
            raise ConfigError(f"importance-rand-1: need {self.d} probabilities, got {p.size}")
        if not np.all(np.isfinite(p)):
            raise ConfigError("importance-rand-1: probabilities must be finite")
        if np.any(p < 0):
            j = int(np.argmin(p))
            raise ConfigError(f"importance-rand-1: probability p[{j}] = {p[j]:g} is negative; "
                              "probabilities must be > 0 and sum to 1")
        if abs(p.sum() - 1.0) > 1e-9:
            raise ConfigError(f"importance-rand-1: probabilities sum to {p.sum():.12g}, not 1")
        if np.any(p == 0):
            j = int(np.argmin(p))
            raise ConfigError(f"importance-rand-1: p[{j}] = 0; every probability must be > 0 "
                              "for E[S] = I")
        object.__setattr__(self, "p", p)

    def moment_matrix(self):
        return np.diag(1.0 / self.p)

    def expected_nnz(self):
        return 1.0

    def _explicit_index_bits(self):
        return _ceil_log2(self.d)

    def _cdf(self):
        cdf = np.cumsum(self.p)
        cdf[-1] = 1.0  # so that every u in [0, 1) finds a coordinate
        return cdf

    def _inv_p(self):
        return 1.0 / self.p


@dataclass(frozen=True, eq=False)
class BlockRandK(Sketch):
    """rand-k_i in each block (Table 1 row 8): k_i uniform coordinates of block i, scaled d_i/k_i."""

    ks: tuple = (1,)
    name = "block-rand-k"
    kind = BLOCK_RAND_K

    def __post_init__(self):
        ks = tuple(int(k) for k in self.ks)
        if len(ks) == 1:
            ks = ks * self.n_blocks
        if len(ks) != self.n_blocks:
            raise ConfigError(f"block-rand-k: got {len(ks)} values of k for {self.n_blocks} blocks")
        for b, (k, n) in enumerate(zip(ks, self.block_sizes)):
            if not 1 <= k <= n:
                raise ConfigError(f"block-rand-k: k = {k} is out of range for block {b} of size {n}; "
                                  f"need 1 <= k <= {n}")
        object.__setattr__(self, "ks", ks)

    def moment_matrix(self):
        P = np.ones((self.d, self.d))
        for b, k in enumerate(self.ks):
            lo, hi = self.block_ptr[b], self.block_ptr[b + 1]
            P[lo:hi, lo:hi] = _rand_k_moment(hi - lo, k)
        return P

    def expected_nnz(self):
        return float(sum(self.ks))

    def _explicit_index_bits(self):
        return sum(k * _ceil_log2(n) for k, n in zip(self.ks, self.block_sizes) if k < n)  # k = n: the whole block

    def _block_k(self):
        return np.asarray(self.ks, dtype=np.int64)

    def spec(self):
        return "block-rand-k:" + ",".join(map(str, self.ks))


@dataclass(frozen=True, eq=False)
class BernQ(Sketch):
    """Bernoulli block sampling (eq. 17): ``T_i = (η_i/q_i) I_{d_i}``, ``η_i ~ Bernoulli(q_i)``."""

    qs: tuple = (1.0,)
    name = "bern-q"
    kind = BERN_Q

    def __post_init__(self):
        qs = tuple(float(q) for q in self.qs)
        if len(qs) == 1:
            qs = qs * self.n_blocks
        if len(qs) != self.n_blocks:
            raise ConfigError(f"bern-q: got {len(qs)} values of q for {self.n_blocks} blocks")
        for b, q in enumerate(qs):
            if not (0.0 < q <= 1.0):
                raise ConfigError(f"bern-q: q = {q:g} (block {b}) is out of range; need 0 < q <= 1")
        object.__setattr__(self, "qs", qs)

    def moment_matrix(self):
        P = np.ones((self.d, self.d))
        for b, q in enumerate(self.qs):
            lo, hi = self.block_ptr[b], self.block_ptr[b + 1]
            P[lo:hi, lo:hi] = 1.0 / q
        return P

    def expected_nnz(self):
        return float(np.dot(self.qs, self.block_sizes))

    def _explicit_index_bits(self):
        return sum(q < 1.0 for q in self.qs)  # one mask bit per block that may be left out (q = 1: always sent)

    def _block_q(self):
        return np.asarray(self.qs, dtype=float)

    def spec(self):
        return "bern-q:" + ",".join(f"{q:g}" for q in self.qs)
