"""Vector compressors C(x) for compressed SGD (Avdiukhin & Yaroslavtsev, Section 2).

A *μ-compressor* satisfies E‖x − C(x)‖² ≤ (1 − μ)‖x‖² (Definition 2.1); an
*unbiased* compressor satisfies E[C(x)] = x and E‖C(x) − x‖² ≤ ω‖x‖².  An
unbiased compressor becomes a 1/(1+ω)-compressor when scaled by 1/(1+ω)
(e.g. rand-k scaled by d/k turns into the unscaled RandomK of the paper, μ = k/d),
which is how error feedback uses it (:meth:`Compressor.contractive`).

Each compressor writes its *message* — what a worker would send — and a second
kernel decodes a message into ``out += α C(x)``:

=================  ==========================================  =======================
kind               message                                     decoded C(x)
=================  ==========================================  =======================
identity           ``val[:d]``                                 x
rand-k             ``idx[:k]``, ``val[:k]`` (uniform, Floyd)   scale · x_J
top-k              ``idx[:k]``, ``val[:k]`` (O(d) selection)   x_J, J the k largest |x_j|
sign               packed sign bits, one scale                 (‖x‖₁/d) sign(x)
qsgd               one norm, signed levels in [−s, s]          ‖x‖ sign(x_j) ℓ_j / s
natural            sign and exponent per coordinate            ±2^⌊log₂|x_j|⌋ or ±2^⌈…⌉
sketch-top-k       count sketch (r×c), then 2k exact values    x_J, J from the sketch
=================  ==========================================  =======================

Randomness comes from one key per ``(seed, iteration)`` that all workers share
(θ̃ in Algorithm 1 "can be shared between machines"): rand-k then picks the same
coordinates on every worker, so the averaged message is still k-sparse.
Stochastic rounding (qsgd, natural) resolves probabilities to 2⁻³²: two 32-bit
uniforms come out of each 64-bit draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .._jit import njit, njit_inline
from ..errors import ConfigError
from ..rng import bits64, stream_key
from .sketches import _floyd

C_IDENTITY, C_RAND_K, C_TOP_K, C_SIGN, C_QSGD, C_NATURAL, C_SKETCH_TOP_K = range(7)

_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S52 = np.uint64(52)
_S63 = np.uint64(63)
_S20 = np.uint64(20)
_INV32 = 2.0 ** -32
_BYTE = np.uint64(0xFF)
_EXP_FIELD = np.uint64(0x7FF << 52)
#: sample size of the threshold estimate in :func:`top_k_select`
TOP_K_SAMPLE = 4096
#: up to this k, :func:`top_k_select` keeps the k best in one pass (no sort, no allocation)
TOP_K_SMALL = 32


@njit_inline
def _top_k_small(v, k, idx, work):
    """One pass keeping the k best ``(|v_i|, i)`` in ``work[:k]``/``idx[:k]``, ordered by value down, index up.

    Coordinates come in index order and enter only when strictly larger than the worst
    kept, so ties go to the smaller index, as in the general path.  O(d + insertions·k).
    """
    worst = 0.0
    for i in range(v.shape[0]):
        a = abs(v[i])
        if i < k:  # the first k, ordered as they come
            p = i
        elif a > worst:  # the common case fails this one compare against a register
            p = k - 1
        else:
            continue
        while p > 0 and work[p - 1] < a:
            work[p] = work[p - 1]
            idx[p] = idx[p - 1]
            p -= 1
        work[p] = a
        idx[p] = i
        if i >= k - 1:
            worst = work[k - 1]
    for q in range(1, k):  # indices in increasing order
        j = idx[q]
        p = q - 1
        while p >= 0 and idx[p] > j:
            idx[p + 1] = idx[p]
            p -= 1
        idx[p + 1] = j
    return k


@njit
def top_k_select(v, k, idx, work):
    """Indices of the ``k`` largest ``|v_j|`` into ``idx[:k]`` (increasing order); returns k.

    Ties at the threshold go to the smallest indices, so the result is a function
    of ``v`` alone.  O(d): a strided sample of ``|v|`` gives a threshold that
    about ``k + 3√k`` coordinates pass (Floyd–Rivest style); one pass collects
    them into ``idx``/``work``; a selection among those candidates finds the
    k-th largest value.  If the sample underestimates (fewer than ``k``
    candidates), every coordinate is a candidate — slower, still exact.
    """
    d = v.shape[0]
    if k >= d:
        for i in range(d):
            idx[i] = i
        return d
    if k <= TOP_K_SMALL:
        return _top_k_small(v, k, idx, work)
    ns = min(d, TOP_K_SAMPLE)
    samp = np.empty(ns)
    for j in range(ns):
        samp[j] = abs(v[(j * d) // ns])
    samp.sort()
    expect = ns * k / d
    above = int(expect + 3.0 * math.sqrt(expect) + 2.0)
    t = 0.0 if above >= ns else samp[ns - 1 - above]
    c = 0
    for i in range(d):
        a = abs(v[i])
        if a >= t:
            idx[c] = i
            work[c] = a
            c += 1
    if c < k:
        c = 0
        for i in range(d):
            idx[c] = i
            work[c] = abs(v[i])
            c += 1
    thr = np.partition(work[:c], c - k)[c - k]
    n_gt = 0
    for p in range(c):
        if work[p] > thr:
            n_gt += 1
    ties = k - n_gt
    out = 0
    for p in range(c):
        a = work[p]
        if a > thr:
            idx[out] = idx[p]
            out += 1
        elif a == thr and ties > 0:
            ties -= 1
            idx[out] = idx[p]
            out += 1
    return out


@njit_inline
def _median_small(buf, r):
    """Median of ``buf[:r]`` (insertion sort; r is a handful of sketch rows)."""
    for i in range(1, r):
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x
    if r % 2 == 1:
        return buf[r // 2]
    return 0.5 * (buf[r // 2 - 1] + buf[r // 2])


@njit_inline
def _cs_hash(key, row, i, c):
    """Bucket in [0, c) and sign ±1 of coordinate ``i`` in count-sketch row ``row``."""
    z = bits64(np.uint64(key) ^ (np.uint64(row + 1) * np.uint64(0xD6E8FEB86659FD93)), i)
    b = np.int64(((z & _LOW32) * np.uint64(c)) >> _S32)
    s = 1.0 if (z >> _S63) == 0 else -1.0
    return b, s


@njit_inline
def _sum_sq8(v, d):
    """Σ v_i² in eight lanes (lane i mod 8), lanes added pairwise: a fixed order."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    nb = d // 8
    for b in range(nb):
        p = 8 * b
        a0 += v[p] * v[p]
        a1 += v[p + 1] * v[p + 1]
        a2 += v[p + 2] * v[p + 2]
        a3 += v[p + 3] * v[p + 3]
        a4 += v[p + 4] * v[p + 4]
        a5 += v[p + 5] * v[p + 5]
        a6 += v[p + 6] * v[p + 6]
        a7 += v[p + 7] * v[p + 7]
    acc = np.array([a0, a1, a2, a3, a4, a5, a6, a7])
    for i in range(8 * nb, d):
        acc[i & 7] += v[i] * v[i]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


@njit_inline
def _qsgd_level(x, f, u):
    """Signed level ⌊|x| f + u 2⁻³²⌋ of one coordinate (u: 32 random bits)."""
    lev = np.int32(abs(x) * f + np.float64(u) * _INV32)
    return -lev if x < 0.0 else lev


@njit_inline
def _natural_code(b, u):
    """Sign bit and rounded exponent (12 bits) of the double with bit pattern ``b``.

    Adding ``u·2²⁰`` to the 52-bit mantissa carries into the exponent exactly
    when ``u ≥ 2³² − mant/2²⁰``: with probability ⌊mant/2²⁰⌋/2³², i.e. the
    mantissa fraction to 2⁻³² — stochastic rounding up to the next power of two.
    Zero and subnormal inputs are sent as 0.
    """
    c = np.int32((b + (u << _S20)) >> _S52)
    return c if (b & _EXP_FIELD) != 0 else np.int32(0)


@njit
def encode(kind, d, k, s, r, c, scale, key, v, idx, val, code, bits, table, work, mark):
    """Write the message of ``C(v)``; returns ``(nnz, msg_scale)``.

    ``msg_scale`` is the one real number a dense message carries (sign: ‖v‖₁/d
    times ``scale``; qsgd: ‖v‖/s times ``scale``; natural: ``scale``).
    """
    if kind == C_IDENTITY:
        for i in range(d):
            val[i] = v[i]
        return d, 1.0
    if kind == C_RAND_K:
        nnz, _ = _floyd(key, 0, 0, d, k, scale, mark, idx, val, 0)
        for p in range(nnz):
            val[p] = scale * v[idx[p]]
        return nnz, scale
    if kind == C_TOP_K:
        nnz = top_k_select(v, k, idx, work)
        for p in range(nnz):
            val[p] = scale * v[idx[p]]
        return nnz, scale
    if kind == C_SIGN:
        # eight accumulators (lane i mod 8: a fixed summation order, no serial
        # dependency chain); sign bits packed 64 at a time, little-endian, so
        # byte b holds coordinates 8b..8b+7 with coordinate 8b+j in bit j
        vb = v.view(np.uint64)
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        nw = d // 64
        for w in range(nw):
            o = 64 * w
            word = np.uint64(0)
            for j in range(64):
                word |= (vb[o + j] >> _S63) << np.uint64(j)
            for q in range(8):
                bits[8 * w + q] = np.uint8((word >> np.uint64(8 * q)) & _BYTE)
            for q in range(8):
                p = o + 8 * q
                a0 += abs(v[p])
                a1 += abs(v[p + 1])
                a2 += abs(v[p + 2])
                a3 += abs(v[p + 3])
                a4 += abs(v[p + 4])
                a5 += abs(v[p + 5])
                a6 += abs(v[p + 6])
                a7 += abs(v[p + 7])
        acc = np.array([a0, a1, a2, a3, a4, a5, a6, a7])
        for b in range(8 * nw, (d + 7) // 8):
            byte = 0
            for i in range(8 * b, min(8 * b + 8, d)):
                acc[i & 7] += abs(v[i])
                byte |= (1 if v[i] < 0.0 else 0) << (i & 7)
            bits[b] = byte
        return d, scale * acc.sum() / d
    if kind == C_QSGD:
        norm = math.sqrt(_sum_sq8(v, d))
        if norm == 0.0:
            for i in range(d):
                code[i] = 0
            return d, 0.0
        # level = ⌊a + u 2⁻³²⌋ with a = |v_i| s/‖v‖ and u a 32-bit uniform: it
        # rounds up with probability frac(a) (to 2⁻³²); coordinates 2p and 2p+1
        # share draw p.  Written pairwise so that the loop vectorizes.
        f = s / norm
        for p in range(d // 2):
            z = bits64(key, p)
            code[2 * p] = _qsgd_level(v[2 * p], f, z & _LOW32)
            code[2 * p + 1] = _qsgd_level(v[2 * p + 1], f, z >> _S32)
        if d & 1:
            code[d - 1] = _qsgd_level(v[d - 1], f, bits64(key, d >> 1) & _LOW32)
        return d, scale * norm / s
    if kind == C_NATURAL:
        vb = v.view(np.uint64)
        for p in range(d // 2):
            z = bits64(key, p)
            code[2 * p] = _natural_code(vb[2 * p], z & _LOW32)
            code[2 * p + 1] = _natural_code(vb[2 * p + 1], z >> _S32)
        if d & 1:
            code[d - 1] = _natural_code(vb[d - 1], bits64(key, d >> 1) & _LOW32)
        return d, scale
    # C_SKETCH_TOP_K: a count sketch of v (r rows × c columns), heavy hitters
    # estimated from it, then the exact values of the k recovered coordinates
    for p in range(r * c):
        table[p] = 0.0
    for row in range(r):
        for i in range(d):
            bkt, sg = _cs_hash(key, row, i, c)
            table[row * c + bkt] += sg * v[i]
    est = np.empty(r)
    for i in range(d):
        for row in range(r):
            bkt, sg = _cs_hash(key, row, i, c)
            est[row] = sg * table[row * c + bkt]
        work[i] = abs(_median_small(est, r))
    # second round: the 2k best-estimated coordinates are fetched exactly, the k
    # largest of those are kept (false positives of the sketch drop out here)
    nc = top_k_select(work[:d], min(2 * k, d), idx, val)
    for p in range(nc):
        work[p] = abs(v[idx[p]])
    pos = np.empty(nc, dtype=np.int64)
    nnz = top_k_select(work[:nc], min(k, nc), pos, val)
    for p in range(nnz):
        idx[p] = idx[pos[p]]          # pos is increasing and pos[p] >= p: in-place compaction is safe
        val[p] = scale * v[idx[p]]
    return nnz, scale


@njit
def decode_add(kind, d, nnz, msg_scale, alpha, idx, val, code, bits, out):
    """``out += alpha · C(v)`` from the message :func:`encode` wrote."""
    if kind == C_IDENTITY:
        for i in range(d):
            out[i] += alpha * val[i]
    elif kind == C_RAND_K or kind == C_TOP_K or kind == C_SKETCH_TOP_K:
        for p in range(nnz):
            out[idx[p]] += alpha * val[p]
    elif kind == C_SIGN:
        a = alpha * msg_scale
        for i in range(d):
            neg = (bits[i >> 3] >> (i & 7)) & 1
            out[i] += -a if neg else a
    elif kind == C_QSGD:
        a = alpha * msg_scale
        for i in range(d):
            out[i] += a * code[i]
    else:  # C_NATURAL
        a = alpha * msg_scale
        for i in range(d):
            cd = code[i]
            e = cd & 0x7FF
            if e == 0:
                continue
            x = math.ldexp(1.0, e - 1023)
            out[i] += -a * x if (cd >> 11) & 1 else a * x


@njit
def compress_dense(kind, d, k, s, r, c, scale, seed, iteration, v, out, idx, val, code, bits, table, work,
                   mark):
    """``out = C(v)`` for the stream ``(seed, iteration)``; returns nnz (tests, measurements)."""
    key = stream_key(seed, SHARED_COMPRESSOR, iteration)
    nnz, ms = encode(kind, d, k, s, r, c, scale, key, v, idx, val, code, bits, table, work, mark)
    for i in range(d):
        out[i] = 0.0
    decode_add(kind, d, nnz, ms, 1.0, idx, val, code, bits, out)
    return nnz


@njit
def encode_loop(kind, d, k, s, r, c, scale, seed, v, repeats, idx, val, code, bits, table, work, mark):
    """Encode ``v`` ``repeats`` times (iterations 0..repeats-1); the throughput benchmark's unit."""
    total = 0.0
    for t in range(repeats):
        key = stream_key(seed, SHARED_COMPRESSOR, t)
        nnz, ms = encode(kind, d, k, s, r, c, scale, key, v, idx, val, code, bits, table, work, mark)
        total += nnz + ms
    return total


#: stream "client" ids reserved for randomness shared by all workers
SHARED_COMPRESSOR = np.uint64(2**62 + 1)
SHARED_NOISE = np.uint64(2**62 + 2)


def _ceil_log2(n: int) -> int:
    return 0 if n <= 1 else int(math.ceil(math.log2(n)))


@dataclass(frozen=True)
class Compressor:
    """A compressor bound to dimension ``d``; ``scale`` multiplies every decoded value."""

    name: str
    kind: int
    d: int
    k: int = 0
    s: int = 0
    r: int = 0
    c: int = 0
    scale: float = 1.0
    unbiased: bool = False
    omega: float | None = None        # variance bound of an unbiased compressor
    mu: float | None = None           # contraction guaranteed by theory (None: none / data dependent)
    note: str = ""

    # --- bits (docs/bits.md) -------------------------------------------------
    def bits_up(self, value_bits: int = 32, index_mode: str = "explicit") -> int:
        """Uplink bits of one message (both rounds for sketch-top-k)."""
        d, ib = self.d, _ceil_log2(self.d)
        if self.kind in (C_RAND_K, C_TOP_K) and self.k >= d:  # every coordinate: a dense message, no positions
            return d * value_bits
        if self.kind == C_IDENTITY:
            return d * value_bits
        if self.kind == C_RAND_K:
            return self.k * value_bits + (0 if index_mode == "shared-seed" else self.k * ib)
        if self.kind == C_TOP_K:
            return self.k * (value_bits + ib)        # data-dependent positions: always explicit
        if self.kind == C_SIGN:
            return d + value_bits
        if self.kind == C_QSGD:
            return value_bits + d * (1 + _ceil_log2(self.s + 1))
        if self.kind == C_NATURAL:
            return d * (1 + (8 if value_bits == 32 else 11))
        return (self.r * self.c + self._candidates()) * value_bits

    def _candidates(self) -> int:
        return min(2 * self.k, self.d)

    def bits_down_extra(self) -> int:
        """Downlink bits one worker receives besides the model (sketch-top-k: the 2k requested indices)."""
        return self._candidates() * _ceil_log2(self.d) if self.kind == C_SKETCH_TOP_K else 0

    @property
    def mu_relation(self) -> str:
        """How μ relates to :attr:`mu`: ``=`` (exact in expectation) or ``>=`` (a worst-case bound)."""
        return "=" if self.kind == C_IDENTITY or (self.kind == C_RAND_K and not self.unbiased) else ">="

    def spec(self) -> str:
        if self.kind in (C_RAND_K, C_TOP_K):
            return f"{self.name}:{self.k}"
        if self.kind == C_QSGD:
            return f"qsgd:{self.s}"
        if self.kind == C_SKETCH_TOP_K:
            return f"sketch-top-k:{self.k},{self.r},{self.c}"
        return self.name

    def contractive(self) -> "Compressor":
        """The μ-compressor error feedback uses: an unbiased C with variance ω becomes C/(1+ω)."""
        if not self.unbiased or not self.omega:
            return self
        f = 1.0 / (1.0 + self.omega)
        return replace(self, scale=self.scale * f, unbiased=False, mu=f,
                       note=f"{self.spec()} applied as C/(1+ω) with ω = {self.omega:.6g}: a {f:.6g}-compressor"
                            + (" (the unscaled RandomK of the paper)" if self.kind == C_RAND_K else ""))

    # --- kernels ------------------------------------------------------------
    def kernel_args(self):
        """Arguments of :func:`encode` before ``key``."""
        return (self.kind, self.d, self.k, self.s, self.r, self.c, float(self.scale))

    def buffers(self):
        """Message and scratch arrays for one caller: ``(idx, val, code, bits, table, work, mark)``."""
        d = self.d
        return (np.zeros(d, np.int64), np.zeros(d), np.zeros(d, np.int32), np.zeros((d + 7) // 8, np.uint8),
                np.zeros(max(1, self.r * self.c)), np.zeros(d), np.zeros(d, np.int8))

    def __call__(self, v, seed: int = 0, iteration: int = 0) -> np.ndarray:
        """``C(v)`` as a dense vector (Python convenience; engines call the kernels)."""
        v = np.ascontiguousarray(v, dtype=np.float64)
        if v.shape != (self.d,):
            raise ConfigError(f"{self.spec()}: expected a vector of length {self.d}, got shape {v.shape}")
        out = np.empty(self.d)
        compress_dense(*self.kernel_args(), np.uint64(seed), iteration, v, out, *self.buffers())
        return out


def parse_k(name: str, token: str, d: int | None) -> int:
    """K written as an integer count in [1, d] ("10") or a fraction of d in (0, 1] ("0.001", "1.0").

    ``d=None`` checks what needs no data (a fraction in (0, 1], an integer >= 1) and returns the token's
    value as written (a count, or 0 for a fraction).
    """
    span = f"[1, {d}]" if d is not None else "[1, d]"
    try:
        value = float(token)
    except ValueError:
        raise ConfigError(f"{name}: k = {token!r} is not a number; give an integer in {span} "
                          "or a fraction in (0, 1]") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: k = {token!r} is not finite; give an integer in {span} or a fraction in (0, 1]")
    if any(ch in token.lower() for ch in ".e"):
        if not (0.0 < value <= 1.0):
            raise ConfigError(f"{name}: fraction {token} is out of range; need 0 < fraction <= 1 "
                              f"(or an integer count in {span})")
        return max(1, int(round(value * d))) if d is not None else 0
    if value != int(value) or value < 1 or (d is not None and value > d):
        raise ConfigError(f"{name}: k = {token} is out of range; need an integer 1 <= k <= "
                          f"{'d = %d' % d if d is not None else 'd'} (or a fraction in (0, 1])")
    return int(value)


def qsgd_levels(s: float) -> int:
    """QSGD's number of levels s, an integer >= 1."""
    if s != int(s) or s < 1 or s > 2**30:
        raise ConfigError(f"qsgd: s = {s:g} levels is out of range; need an integer 1 <= s <= 2^30")
    return int(s)


# --- factories: ``(parameter tokens, d) -> Compressor``, one per registry entry (compressors/__init__.py); the
# tokens have passed the entry's syntax check (their count, numbers, the ranges that need no d)
def identity(toks, d):
    return Compressor("identity", C_IDENTITY, d, unbiased=True, omega=0.0, mu=1.0)


def rand_k(toks, d, k=None):
    k = parse_k("rand-k", toks[0], d) if k is None else k
    return Compressor("rand-k", C_RAND_K, d, k=k, scale=d / k, unbiased=True, omega=d / k - 1.0)


def rand_1(toks, d):
    return rand_k(toks, d, k=1)


def rand_k_unscaled(toks, d):
    k = parse_k("rand-k-unscaled", toks[0], d)
    return Compressor("rand-k-unscaled", C_RAND_K, d, k=k, scale=1.0, mu=k / d)


def top_k(toks, d):
    k = parse_k("top-k", toks[0], d)
    return Compressor("top-k", C_TOP_K, d, k=k, mu=k / d)


def sign(toks, d):
    return Compressor("sign", C_SIGN, d, mu=1.0 / d)


def qsgd(toks, d):
    s = qsgd_levels(float(toks[0]))
    return Compressor("qsgd", C_QSGD, d, s=s, unbiased=True, omega=min(d / s**2, math.sqrt(d) / s))


def natural(toks, d):
    return Compressor("natural", C_NATURAL, d, unbiased=True, omega=0.125)


def sketch_top_k(toks, d):
    vals = [float(t) for t in toks]
    k = parse_k("sketch-top-k", toks[0], d)
    r = int(vals[1]) if len(vals) > 1 else 5
    c = int(vals[2]) if len(vals) > 2 else min(d, max(10 * k, 64))
    if r < 1 or (len(vals) > 1 and vals[1] != r) or r > MAX_SKETCH_ROWS:
        raise ConfigError(f"sketch-top-k: rows = {vals[1]:g} must be an integer in [1, {MAX_SKETCH_ROWS}] "
                          "(a count sketch takes the median of its rows: 3 to 7 are usual)")
    if c < 2 * k:
        raise ConfigError(f"sketch-top-k: a count sketch with {c} columns cannot recover k = {k} heavy "
                          f"hitters; need at least 2k = {2 * k} columns (write sketch-top-k:{k},{r},{10 * k})")
    if c > d:
        raise ConfigError(f"sketch-top-k: {c} columns exceed d = {d}; a sketch wider than the vector "
                          "saves nothing")
    return Compressor("sketch-top-k", C_SKETCH_TOP_K, d, k=k, r=r, c=c)


#: a count sketch's rows: each costs a pass over the vector per message, and its median needs only a few
MAX_SKETCH_ROWS = 1024


def measure(comp: Compressor, samples: int = 200, seed: int = 0, dist: str = "gaussian") -> dict:
    """Monte Carlo estimates of μ (and ω, bias for unbiased ones) on random vectors.

    ``1 − μ̂ = mean ‖x − C(x)‖² / ‖x‖²`` over ``samples`` draws of x (Gaussian, or
    ``heavy``: Student-t with 2 degrees of freedom, where top-k shines), each
    compressed with its own iteration's randomness.
    """
    if samples < 2:
        raise ConfigError(f"samples = {samples}: need at least 2")
    rng = np.random.default_rng(seed)
    ratios = np.empty(samples)
    bufs = comp.buffers()
    out = np.empty(comp.d)
    bias = np.zeros(comp.d)
    x_fixed = rng.standard_normal(comp.d)
    var = np.empty(samples)
    for t in range(samples):
        x = rng.standard_normal(comp.d) if dist == "gaussian" else rng.standard_t(2, comp.d)
        compress_dense(*comp.kernel_args(), np.uint64(seed), t, x, out, *bufs)
        ratios[t] = np.sum((x - out) ** 2) / np.sum(x**2)
        compress_dense(*comp.kernel_args(), np.uint64(seed + 1), t, x_fixed, out, *bufs)
        bias += out
        var[t] = np.sum((out - x_fixed) ** 2) / np.sum(x_fixed**2)
    bias = bias / samples - x_fixed
    # E‖mean − x‖² = E‖C(x) − x‖²/n when C is unbiased, so this ratio is ≈ 1 for an
    # unbiased compressor and grows like n for a biased one
    spread = float(var.mean()) * float(np.sum(x_fixed**2))
    bias_ratio = samples * float(np.sum(bias**2)) / spread if spread > 0 else 0.0
    return {"compressor": comp.spec(), "d": comp.d, "samples": samples, "dist": dist,
            "mu_measured": float(1.0 - ratios.mean()), "mu_stderr": float(ratios.std(ddof=1) / math.sqrt(samples)),
            "mu_theory": comp.mu, "unbiased": comp.unbiased, "omega_theory": comp.omega,
            "omega_measured": float(var.mean()),
            "mu_relation": comp.mu_relation, "bias_ratio": bias_ratio,
            "bits_per_message": comp.bits_up(32), "bits_uncompressed": 32 * comp.d}
