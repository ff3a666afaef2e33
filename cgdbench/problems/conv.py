"""The convolutional autoencoder of the saddle paper (Avdiukhin & Yaroslavtsev, footnote 7), hand-written kernels.

Encoder: conv layers with ReLU, by default (16 ch, k3 s2 p1), (32, k3 s2 p1), (64, k7 s1 p0); the decoder
mirrors it with transposed convolutions (output_padding chosen so every decoder layer gives back exactly the
size its encoder twin took in); ReLU after every layer except the last decoder layer, which is linear.
On 28×28 MNIST: 1×28×28 → 16×14×14 → 32×7×7 → 64×1×1 → 32×7×7 → 16×14×14 → 1×28×28, d = 210369.

Loss per sample j (image y_j, a row of ``F``): F(x, j) = mean over pixels of (g(y_j) − y_j)², PyTorch's
``MSELoss`` on one image.

Layouts (the integration depends on them):

* ``x``: one flat float64 vector, layer by layer, each layer's weights then its bias; conv weights in
  PyTorch's ``W[cout, cin, k, k]``, transposed-conv weights in PyTorch's ``W[cin, cout, k, k]``.
* activations are channel-major.  The kernel works on a *block* of ``nb`` samples at a time and stores a
  layer's activations as ``(c, nb, h, w)``: with ``nb = 1`` this is the usual ``(c, h, w)``.  Folding the
  sample index next to the pixels turns every layer into plain matrix products whose inner loops run over
  ``nb·h·w`` pixels or over ``cin·k·k`` weights, and the weights are read once per block, not per sample
  (the 64×1568 weight matrices of the 7×7 layers do not fit in L2).
* ``Iv`` (int64): a header of ``HDR`` entries, then one row of ``NF`` entries per layer (``F_*`` below).

Summation order.  Every accumulator (an activation, an entry of the gradient ``g``) is summed one term at a
time in a fixed order that does not depend on the block size, the tiling or the vector width: weight
gradients in the order of the samples ``q = lo, lo+1, …`` and, inside a sample, of the pixels; activations in
the order of their input channels and kernel offsets.  So a call gives bit-identical results whatever
``block`` is, and equals processing the samples one after the other.  The kernels are serial; the caller
splits a minibatch into fixed chunks, runs them in parallel into their own buffers and reduces in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .._jit import njit, njit_parallel, prange
from ..errors import ConfigError

DEFAULT_SPEC = "16:3:2:1,32:3:2:1,64:7:1:0"
#: samples per block of the kernel (the results do not depend on it, only the speed and the scratch size)
DEFAULT_BLOCK = 8
#: a layer whose matrix products run over fewer than this many pixels per sample (the 1×1 bottleneck)
#: vectorizes over channels instead, with a transposed copy of its weights made once per call
SMALL_PIXELS = 16

CONV, CONVT = 0, 1
KIND_NAMES = ("conv", "convT")

# --- Iv header ---
H_L = 0        # number of layers
H_NF = 1       # entries per layer row
H_NB = 2       # samples per block
H_H = 3        # image height
H_W = 4        # image width
H_IN = 5       # scratch offset: the block's input images (1, nb, h, w)
H_D0 = 6       # scratch offset: delta buffer 0
H_D1 = 7       # scratch offset: delta buffer 1
H_DSIZE = 8    # size of each delta buffer
H_T0 = 9       # scratch offset: temporary 0 (im2col matrices)
H_T1 = 10      # scratch offset: temporary 1
H_TSIZE = 11   # size of each temporary
H_TOTAL = 12   # scratch doubles in all
H_D = 13       # number of parameters
HDR = 16

# --- Iv layer row ---
F_KIND = 0     # CONV or CONVT
F_CIN = 1
F_COUT = 2
F_K = 3
F_S = 4
F_P = 5
F_OPH = 6      # output_padding (transposed conv), rows
F_OPW = 7      # output_padding, columns
F_HIN = 8
F_WIN = 9
F_HOUT = 10
F_WOUT = 11
F_WOFF = 12    # offset of the weights in x
F_BOFF = 13    # offset of the bias in x
F_RELU = 14    # 1: ReLU after this layer
F_SMALL = 15   # 1: vectorize over channels (transposed weights, see SMALL_PIXELS)
F_ACT = 16     # scratch offset of this layer's output activations (cout, nb, hout, wout)
F_T = 17       # scratch offset of a small layer's transposed weights, made once a call (-1: not small)
F_COL = 18     # scratch offset of the im2col matrix a conv's forward keeps for its backward (-1: transposed conv)
NF = 20

_U = np.uint64


# --- kernels: matrix products -----------------------------------------------------------
@njit
def _gemm_rows1(C, c0, ldc, A, a0, ai, ak, B, b0, ldb, M, N, K):
    """:func:`_gemm_rows4` one row of C at a time (the last rows)."""
    for i in range(M):
        cr = c0 + i * ldc
        ar = a0 + i * ai
        k = 0
        while k + 4 <= K:
            u0 = A[ar + k * ak]
            u1 = A[ar + (k + 1) * ak]
            u2 = A[ar + (k + 2) * ak]
            u3 = A[ar + (k + 3) * ak]
            r0 = b0 + k * ldb
            r1 = r0 + ldb
            r2 = r1 + ldb
            r3 = r2 + ldb
            for j in range(N):
                C[_U(cr + j)] = (C[_U(cr + j)] + u0 * B[_U(r0 + j)] + u1 * B[_U(r1 + j)] + u2 * B[_U(r2 + j)]
                                 + u3 * B[_U(r3 + j)])
            k += 4
        while k < K:
            u0 = A[ar + k * ak]
            r0 = b0 + k * ldb
            for j in range(N):
                C[_U(cr + j)] += u0 * B[_U(r0 + j)]
            k += 1


@njit
def _gemm_rows4(C, c0, ldc, A, a0, ai, ak, B, b0, ldb, M, N, K):
    """``C[c0+i·ldc+j] += Σ_k A[a0+i·ai+k·ak]·B[b0+k·ldb+j]``: four rows of C and four k a pass.

    Each entry still adds its terms one at a time in ascending k (``c + a₀b₀ + a₁b₁ + …`` evaluates left
    to right), so the unrolling changes nothing in the result.  The inner loop is contiguous in C and B
    and has no loop-carried sum: it vectorizes without reassociation, and each load of B feeds four rows.
    Unsigned indices keep Numba's negative-index wraparound out of the inner loops (it stops the vectorizer).
    """
    i = 0
    while i + 4 <= M:
        c_0 = c0 + i * ldc
        c_1 = c_0 + ldc
        c_2 = c_1 + ldc
        c_3 = c_2 + ldc
        a_0 = a0 + i * ai
        a_1 = a_0 + ai
        a_2 = a_1 + ai
        a_3 = a_2 + ai
        k = 0
        while k + 4 <= K:
            k0, k1, k2, k3 = k * ak, (k + 1) * ak, (k + 2) * ak, (k + 3) * ak
            p0, p1, p2, p3 = A[a_0 + k0], A[a_0 + k1], A[a_0 + k2], A[a_0 + k3]
            q0, q1, q2, q3 = A[a_1 + k0], A[a_1 + k1], A[a_1 + k2], A[a_1 + k3]
            r0, r1, r2, r3 = A[a_2 + k0], A[a_2 + k1], A[a_2 + k2], A[a_2 + k3]
            s0, s1, s2, s3 = A[a_3 + k0], A[a_3 + k1], A[a_3 + k2], A[a_3 + k3]
            b_0 = b0 + k * ldb
            b_1 = b_0 + ldb
            b_2 = b_1 + ldb
            b_3 = b_2 + ldb
            for j in range(N):
                x0 = B[_U(b_0 + j)]
                x1 = B[_U(b_1 + j)]
                x2 = B[_U(b_2 + j)]
                x3 = B[_U(b_3 + j)]
                C[_U(c_0 + j)] = C[_U(c_0 + j)] + p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3
                C[_U(c_1 + j)] = C[_U(c_1 + j)] + q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3
                C[_U(c_2 + j)] = C[_U(c_2 + j)] + r0 * x0 + r1 * x1 + r2 * x2 + r3 * x3
                C[_U(c_3 + j)] = C[_U(c_3 + j)] + s0 * x0 + s1 * x1 + s2 * x2 + s3 * x3
            k += 4
        while k < K:
            k0 = k * ak
            p0, q0, r0, s0 = A[a_0 + k0], A[a_1 + k0], A[a_2 + k0], A[a_3 + k0]
            b_0 = b0 + k * ldb
            for j in range(N):
                x0 = B[_U(b_0 + j)]
                C[_U(c_0 + j)] += p0 * x0
                C[_U(c_1 + j)] += q0 * x0
                C[_U(c_2 + j)] += r0 * x0
                C[_U(c_3 + j)] += s0 * x0
            k += 1
        i += 4
    if i < M:
        _gemm_rows1(C, c0 + i * ldc, ldc, A, a0 + i * ai, ai, ak, B, b0, ldb, M - i, N, K)


@njit
def gemm(C, ldc, A, ai, ak, B, ldb, M, N, K):
    """``C[i·ldc + j] += Σ_k A[i·ai + k·ak] · B[k·ldb + j]`` for i < M, j < N, k ascending.

    A is read through any strides (a row-major matrix, its transpose, ...); B and C have contiguous rows.
    Tiled so a tile of B stays in L1 (N by 256 columns, K so the tile is ≤ 32 KiB); tiles of K are taken in
    ascending order, so every entry still sums its terms in ascending k.
    """
    if M <= 0 or N <= 0 or K <= 0:
        return
    ai, ak = np.int64(ai), np.int64(ak)      # no literal-int specializations of the tile kernel (compile time)
    NT = min(N, 256)
    KT = max(4, (4096 // NT) // 4 * 4)
    for j0 in range(0, N, NT):
        nt = min(NT, N - j0)
        for k0 in range(0, K, KT):
            kt = min(KT, K - k0)
            _gemm_rows4(C, j0, ldc, A, k0 * ak, ai, ak, B, k0 * ldb + j0, ldb, M, nt, kt)


@njit
def _transpose(src, rows, cols, dst):
    """``dst[c·rows + r] = src[r·cols + c]`` (a rows×cols matrix into cols×rows), in 32×32 tiles."""
    T = 32
    for r0 in range(0, rows, T):
        r1 = min(rows, r0 + T)
        for c0 in range(0, cols, T):
            c1 = min(cols, c0 + T)
            for r in range(r0, r1):
                for c in range(c0, c1):
                    dst[_U(c * rows + r)] = src[_U(r * cols + c)]


@njit
def transpose_weights(geo, W, WT):
    """The transposed copy of a layer's weights that its ``small`` path uses.

    conv ``W[cout, cin·k·k]`` → ``WT[cin·k·k, cout]``; transposed conv ``W[cin, cout·k·k]`` → ``WT[cout·k·k, cin]``.
    """
    rows = geo[F_COUT] if geo[F_KIND] == CONV else geo[F_CIN]
    cols = W.shape[0] // rows
    _transpose(W, rows, cols, WT)


@njit
def _fill(a, off, n, v):
    for t in range(n):
        a[_U(off + t)] = v


@njit
def _valid(kh, s, p, h, ho):
    """Output rows ``o`` in [lo, hi) whose input row ``o·s − p + kh`` lies in [0, h)."""
    lo = max(0, -((kh - p) // s))
    hi = min(ho, (h - 1 + p - kh) // s + 1)
    return lo, max(lo, hi)


@njit
def im2col(src, c, nb, h, w, k, s, p, ho, wo, col):
    """``col[(ci·k + kh)·k + kw, (q·ho + oh)·wo + ow] = src[ci, q, oh·s − p + kh, ow·s − p + kw]`` (0 outside).

    ``src`` is ``(c, nb, h, w)``; ``col`` is ``(c·k·k, nb·ho·wo)``, every row written whole.
    """
    NP = nb * ho * wo
    for ci in range(c):
        for kh in range(k):
            oh_lo, oh_hi = _valid(kh, s, p, h, ho)
            for kw in range(k):
                ow_lo, ow_hi = _valid(kw, s, p, w, wo)
                row = ((ci * k + kh) * k + kw) * NP
                for q in range(nb):
                    sq = (ci * nb + q) * h * w
                    for oh in range(ho):
                        dst = row + (q * ho + oh) * wo
                        if oh < oh_lo or oh >= oh_hi:
                            _fill(col, dst, wo, 0.0)
                            continue
                        srow = sq + (oh * s - p + kh) * w - p + kw
                        for ow in range(ow_lo):
                            col[_U(dst + ow)] = 0.0
                        for ow in range(ow_lo, ow_hi):
                            col[_U(dst + ow)] = src[_U(srow + ow * s)]
                        for ow in range(ow_hi, wo):
                            col[_U(dst + ow)] = 0.0


@njit
def im2col_t(src, c, nb, h, w, k, s, p, ho, wo, colt):
    """The transpose of :func:`im2col`: ``colt`` is ``(nb·ho·wo, c·k·k)``."""
    R = c * k * k
    for q in range(nb):
        for oh in range(ho):
            for ow in range(wo):
                row = ((q * ho + oh) * wo + ow) * R
                kw_lo = min(k, max(0, p - ow * s))
                kw_hi = max(kw_lo, min(k, w + p - ow * s))
                for ci in range(c):
                    for kh in range(k):
                        dst = row + (ci * k + kh) * k
                        ih = oh * s - p + kh
                        if ih < 0 or ih >= h:
                            _fill(colt, dst, k, 0.0)
                            continue
                        srow = ((ci * nb + q) * h + ih) * w + ow * s - p
                        for kw in range(kw_lo):
                            colt[_U(dst + kw)] = 0.0
                        for kw in range(kw_lo, kw_hi):
                            colt[_U(dst + kw)] = src[_U(srow + kw)]
                        for kw in range(kw_hi, k):
                            colt[_U(dst + kw)] = 0.0


@njit
def col2im(col, c, nb, h, w, k, s, p, ho, wo, dst):
    """The adjoint of :func:`im2col`: ``dst[ci, q, oh·s − p + kh, ow·s − p + kw] += col[...]``.

    Each entry of ``dst`` receives its terms in ascending (kh, kw), as in :func:`col2im_t`.
    """
    NP = nb * ho * wo
    for ci in range(c):
        for kh in range(k):
            oh_lo, oh_hi = _valid(kh, s, p, h, ho)
            for kw in range(k):
                ow_lo, ow_hi = _valid(kw, s, p, w, wo)
                row = ((ci * k + kh) * k + kw) * NP
                for q in range(nb):
                    sq = (ci * nb + q) * h * w
                    for oh in range(oh_lo, oh_hi):
                        src = row + (q * ho + oh) * wo
                        drow = sq + (oh * s - p + kh) * w - p + kw
                        for ow in range(ow_lo, ow_hi):
                            dst[_U(drow + ow * s)] += col[_U(src + ow)]


@njit
def col2im_t(colt, c, nb, h, w, k, s, p, ho, wo, dst):
    """The adjoint of :func:`im2col_t`, in the same per-entry order as :func:`col2im` (ascending kh, kw)."""
    R = c * k * k
    for kh in range(k):
        oh_lo, oh_hi = _valid(kh, s, p, h, ho)
        for kw in range(k):
            ow_lo, ow_hi = _valid(kw, s, p, w, wo)
            for q in range(nb):
                for oh in range(oh_lo, oh_hi):
                    ih = oh * s - p + kh
                    for ow in range(ow_lo, ow_hi):
                        src = ((q * ho + oh) * wo + ow) * R + kh * k + kw
                        d = (q * h + ih) * w + ow * s - p + kw
                        for ci in range(c):
                            dst[_U(d + ci * nb * h * w)] += colt[_U(src + ci * k * k)]


# --- kernels: layers --------------------------------------------------------------------
# Two paths per layer, fixed by geo[F_SMALL] (both give the same bits: same products, same order):
# * not small (many pixels): products vectorize over the nb·h·w pixels of the block, and the weight
#   gradient over the cin·k·k (conv) or cout·k·k (transposed conv) weights of a row of gW;
# * small (a 1×1 bottleneck): products vectorize over channels, with WT = transpose_weights(W) made once a
#   call.  Either way the weight gradient goes straight into gW, in W's layout.
@njit
def conv2d_forward(geo, nb, W, b, inp, out, col, t1, WT):
    """``out (cout, nb, hout, wout) = conv(inp (cin, nb, hin, win); W[cout, cin, k, k], b)``, no activation.

    ``col`` receives the im2col matrix of ``inp`` (not small: ``(cin·k·k, nb·P)``, small: its transpose), kept
    for :func:`conv2d_backward`; ``t1``: a temporary (:meth:`Layer.temp_size`); ``WT`` read when small.
    """
    cin, cout, k, s, p = geo[F_CIN], geo[F_COUT], geo[F_K], geo[F_S], geo[F_P]
    hin, win, ho, wo = geo[F_HIN], geo[F_WIN], geo[F_HOUT], geo[F_WOUT]
    ONE = np.int64(1)         # not a literal: one compiled gemm for every call (compile time)
    R = cin * k * k
    NP = nb * ho * wo
    if geo[F_SMALL] != 0:
        im2col_t(inp, cin, nb, hin, win, k, s, p, ho, wo, col)
        for i in range(NP):
            for co in range(cout):
                t1[i * cout + co] = b[co]
        gemm(t1, cout, col, R, ONE, WT, cout, NP, cout, R)
        _transpose(t1, NP, cout, out)
    else:
        im2col(inp, cin, nb, hin, win, k, s, p, ho, wo, col)
        for co in range(cout):
            _fill(out, co * NP, NP, b[co])
        gemm(out, NP, W, R, ONE, col, NP, cout, NP, R)


@njit
def conv2d_backward(geo, nb, W, col, dz, gW, gb, din, t0, t1, need_din):
    """Backward of :func:`conv2d_forward` (``col`` as it left it) given ``dz`` = ∂L/∂out (masked by the caller).

    Adds ∂L/∂b into ``gb`` and ∂L/∂W into ``gW`` (the layer's block of g, ``W``'s layout), one term at a
    time, samples then pixels in order; writes ∂L/∂inp into ``din`` when ``need_din``.
    """
    cin, cout, k, s, p = geo[F_CIN], geo[F_COUT], geo[F_K], geo[F_S], geo[F_P]
    hin, win, ho, wo = geo[F_HIN], geo[F_WIN], geo[F_HOUT], geo[F_WOUT]
    ONE = np.int64(1)         # not a literal: one compiled gemm for every call (compile time)
    R = cin * k * k
    NP = nb * ho * wo
    for co in range(cout):
        acc = gb[co]
        for t in range(NP):
            acc += dz[co * NP + t]
        gb[co] = acc
    small = geo[F_SMALL] != 0
    # gW (cout, R) += dz (cout, nb·P) · colᵀ: rows of R weights, long enough to vectorize (gWᵀ = col · dzᵀ has
    # rows of cout = 16-32, where the inner loop's setup and alias checks cost ~40%: 5.0 against 7.4 GMAC/s,
    # AVX2).  Each entry sums the same products in the same order either way
    if small:
        gemm(gW, R, dz, NP, ONE, col, R, cout, R, NP)
    else:
        _transpose(col, R, NP, t0)                   # col as (nb·P, cin·k·k)
        gemm(gW, R, dz, NP, ONE, t0, R, cout, R, NP)
    if not need_din:
        return
    _fill(din, np.int64(0), cin * nb * hin * win, 0.0)
    _fill(t1, np.int64(0), NP * R, 0.0)
    if small:
        gemm(t1, R, dz, ONE, NP, W, R, NP, R, cout)
        col2im_t(t1, cin, nb, hin, win, k, s, p, ho, wo, din)
    else:
        gemm(t1, NP, W, ONE, R, dz, NP, R, NP, cout)
        col2im(t1, cin, nb, hin, win, k, s, p, ho, wo, din)


@njit
def conv_transpose2d_forward(geo, nb, W, b, inp, out, t0, t1):
    """``out (cout, nb, hout, wout) = conv_transpose(inp (cin, nb, hin, win); W[cin, cout, k, k], b)``.

    By definition the adjoint of a conv: each input pixel scatters ``inp[ci]·W[ci, co]`` into the output
    window at ``(ih·s − p, iw·s − p)``; the output is ``(hin−1)·s − 2p + k + output_padding`` high.
    """
    cin, cout, k, s, p = geo[F_CIN], geo[F_COUT], geo[F_K], geo[F_S], geo[F_P]
    hin, win, ho, wo = geo[F_HIN], geo[F_WIN], geo[F_HOUT], geo[F_WOUT]
    ONE = np.int64(1)         # not a literal: one compiled gemm for every call (compile time)
    R = cout * k * k
    NPin = nb * hin * win
    NPout = nb * ho * wo
    for co in range(cout):
        _fill(out, co * NPout, NPout, b[co])
    _fill(t0, np.int64(0), R * NPin, 0.0)
    # the output plays the conv's input (ho×wo), the input its output positions (hin×win)
    if geo[F_SMALL] != 0:
        gemm(t0, R, inp, ONE, NPin, W, R, NPin, R, cin)
        col2im_t(t0, cout, nb, ho, wo, k, s, p, hin, win, out)
    else:
        gemm(t0, NPin, W, ONE, R, inp, NPin, R, NPin, cin)
        col2im(t0, cout, nb, ho, wo, k, s, p, hin, win, out)


@njit
def conv_transpose2d_backward(geo, nb, W, inp, dz, gW, gb, din, t0, t1, WT, need_din):
    """Backward of :func:`conv_transpose2d_forward`; as :func:`conv2d_backward` (``WT`` read when small)."""
    cin, cout, k, s, p = geo[F_CIN], geo[F_COUT], geo[F_K], geo[F_S], geo[F_P]
    hin, win, ho, wo = geo[F_HIN], geo[F_WIN], geo[F_HOUT], geo[F_WOUT]
    ONE = np.int64(1)         # not a literal: one compiled gemm for every call (compile time)
    R = cout * k * k
    NPin = nb * hin * win
    NPout = nb * ho * wo
    for co in range(cout):
        acc = gb[co]
        for t in range(NPout):
            acc += dz[co * NPout + t]
        gb[co] = acc
    if geo[F_SMALL] != 0:
        im2col_t(dz, cout, nb, ho, wo, k, s, p, hin, win, t0)        # (nb·Pin, cout·k·k)
        gemm(gW, R, inp, NPin, ONE, t0, R, cin, R, NPin)
        if need_din:
            _fill(t1, np.int64(0), NPin * cin, 0.0)
            gemm(t1, cin, t0, R, ONE, WT, cin, NPin, cin, R)
            _transpose(t1, NPin, cin, din)
    else:
        im2col(dz, cout, nb, ho, wo, k, s, p, hin, win, t0)          # (cout·k·k, nb·Pin)
        _transpose(t0, R, NPin, t1)                            # and as (nb·Pin, cout·k·k)
        gemm(gW, R, inp, NPin, ONE, t1, R, cin, R, NPin)             # gW (cin, R): rows of R, as in conv2d
        if need_din:
            _fill(din, np.int64(0), cin * NPin, 0.0)
            gemm(din, NPin, W, R, ONE, t0, NPin, cin, NPin, R)


# --- kernels: the autoencoder ------------------------------------------------------------
@njit
def _check(Iv, x, F, rows, lo, hi, g, scratch, grad):
    if scratch.shape[0] < Iv[H_TOTAL]:
        raise ValueError("conv autoencoder: scratch smaller than Arch.scratch_size()")
    if x.shape[0] < Iv[H_D] or (grad and g.shape[0] < Iv[H_D]):
        raise ValueError("conv autoencoder: x or g shorter than the number of parameters")
    if F.shape[1] != Iv[H_H] * Iv[H_W]:
        raise ValueError("conv autoencoder: rows of F are not height*width long")
    if lo < 0 or hi > rows.shape[0]:
        raise ValueError("conv autoencoder: lo..hi outside rows")
    for q in range(max(lo, 0), hi):
        if rows[q] < 0 or rows[q] >= F.shape[0]:
            raise ValueError("conv autoencoder: a row index outside F")


@njit
def conv_ae_rows(Iv, x, F, rows, lo, hi, g, scratch):
    """Σ_{q=lo}^{hi−1} F(x, rows[q]); its gradient is *added* into ``g`` (not zeroed, not divided).

    ``scratch``: at least ``Arch.scratch_size()`` doubles.  Samples are taken in blocks of ``Iv[H_NB]``;
    every sum runs over q in order whatever the block (see the module docstring).  A ``g`` of length 0
    means no gradient: forward passes only (:func:`conv_ae_rows_loss`).
    """
    return _ae_rows(Iv, x, F, rows, lo, hi, g, scratch, False)


@njit
def _ae_rows(Iv, x, F, rows, lo, hi, g, scratch, weights_ready):
    """:func:`conv_ae_rows`; ``weights_ready``: the small layers' transposed weights are already in ``scratch``
    (an earlier call on the same ``x`` and scratch, with a gradient, made them): not made again."""
    grad = g.shape[0] != 0
    _check(Iv, x, F, rows, lo, hi, g, scratch, grad)
    L = Iv[H_L]
    nbmax = Iv[H_NB]
    npix = Iv[H_H] * Iv[H_W]
    inv_npix = 1.0 / npix
    two_npix = 2.0 / npix
    off_in = Iv[H_IN]
    t0 = scratch[Iv[H_T0]:Iv[H_T0] + Iv[H_TSIZE]]
    t1 = scratch[Iv[H_T1]:Iv[H_T1] + Iv[H_TSIZE]]
    d0 = scratch[Iv[H_D0]:Iv[H_D0] + Iv[H_DSIZE]]
    d1 = scratch[Iv[H_D1]:Iv[H_D1] + Iv[H_DSIZE]]
    if hi <= lo:
        return 0.0
    for l in range(L):          # once a call: the small layers' transposed weights
        geo = Iv[HDR + l * NF:HDR + (l + 1) * NF]
        if geo[F_SMALL] != 0 and (geo[F_KIND] == CONV or grad) and not weights_ready:
            transpose_weights(geo, x[geo[F_WOFF]:geo[F_BOFF]], scratch[geo[F_T]:geo[F_T] + geo[F_BOFF] - geo[F_WOFF]])
    total = 0.0
    for q0 in range(lo, hi, nbmax):
        nb = min(nbmax, hi - q0)
        img = scratch[off_in:off_in + nb * npix]
        for b in range(nb):
            j = rows[q0 + b]
            for t in range(npix):
                img[b * npix + t] = F[j, t]
        # forward
        src = img
        for l in range(L):
            geo = Iv[HDR + l * NF:HDR + (l + 1) * NF]
            n_out = geo[F_COUT] * nb * geo[F_HOUT] * geo[F_WOUT]
            out = scratch[geo[F_ACT]:geo[F_ACT] + n_out]
            W = x[geo[F_WOFF]:geo[F_BOFF]]
            bias = x[geo[F_BOFF]:geo[F_BOFF] + geo[F_COUT]]
            if geo[F_KIND] == CONV:
                col = scratch[geo[F_COL]:geo[F_COL] + geo[F_CIN] * geo[F_K] * geo[F_K] * nb * geo[F_HOUT] * geo[F_WOUT]]
                WT = scratch[geo[F_T]:geo[F_T] + W.shape[0]] if geo[F_SMALL] != 0 else t0[:0]
                conv2d_forward(geo, nb, W, bias, src, out, col, t1, WT)
            else:
                conv_transpose2d_forward(geo, nb, W, bias, src, out, t0, t1)
            if geo[F_RELU] != 0:
                for t in range(n_out):          # a select, not a branch: vectorizes; NaN stays NaN
                    v = out[t]
                    out[t] = 0.0 if v < 0.0 else v
            src = out
        # loss (the last layer has one channel: sample b's image is out[b·npix:(b+1)·npix])
        out = src
        for b in range(nb):
            acc = 0.0
            for t in range(npix):
                r = out[b * npix + t] - img[b * npix + t]
                acc += r * r
                d0[b * npix + t] = two_npix * r
            total += acc * inv_npix
        if not grad:
            continue
        cur, other = d0, d1
        for l in range(L - 1, -1, -1):
            geo = Iv[HDR + l * NF:HDR + (l + 1) * NF]
            n_out = geo[F_COUT] * nb * geo[F_HOUT] * geo[F_WOUT]
            n_in = geo[F_CIN] * nb * geo[F_HIN] * geo[F_WIN]
            dz = cur[:n_out]
            if geo[F_RELU] != 0:
                act = scratch[geo[F_ACT]:geo[F_ACT] + n_out]
                for t in range(n_out):
                    dz[t] = dz[t] if act[t] > 0.0 else 0.0
            nw = geo[F_BOFF] - geo[F_WOFF]
            W = x[geo[F_WOFF]:geo[F_BOFF]]
            gW = g[geo[F_WOFF]:geo[F_BOFF]]
            gb = g[geo[F_BOFF]:geo[F_BOFF] + geo[F_COUT]]
            din = other[:n_in]
            if geo[F_KIND] == CONV:
                col = scratch[geo[F_COL]:geo[F_COL] + geo[F_CIN] * geo[F_K] * geo[F_K] * nb * geo[F_HOUT] * geo[F_WOUT]]
                conv2d_backward(geo, nb, W, col, dz, gW, gb, din, t0, t1, l > 0)
            else:
                if l == 0:
                    src = img
                else:
                    pg = Iv[HDR + (l - 1) * NF:HDR + l * NF]
                    src = scratch[pg[F_ACT]:pg[F_ACT] + n_in]
                WT = scratch[geo[F_T]:geo[F_T] + nw] if geo[F_SMALL] != 0 else t0[:0]
                conv_transpose2d_backward(geo, nb, W, src, dz, gW, gb, din, t0, t1, WT, l > 0)
            cur, other = other, cur
    return total


@njit
def conv_ae_rows_loss(Iv, x, F, rows, lo, hi, scratch):
    """Σ_{q=lo}^{hi−1} F(x, rows[q]), forward passes only (equal, bit for bit, to what conv_ae_rows returns)."""
    # the same compiled function as conv_ae_rows, not a second specialization of it (compile time)
    return conv_ae_rows(Iv, x, F, rows, lo, hi, scratch[:0], scratch)


# --- the architecture -------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """One conv (``kind=CONV``) or transposed conv (``CONVT``) layer: sizes, parameter offset, flags."""

    kind: int
    cin: int
    cout: int
    k: int
    s: int
    p: int
    op_h: int
    op_w: int
    hin: int
    win: int
    hout: int
    wout: int
    w_off: int = 0
    relu: bool = False
    small: bool = False

    @property
    def n_weights(self) -> int:
        return self.cin * self.cout * self.k * self.k

    @property
    def n_params(self) -> int:
        return self.n_weights + self.cout

    @property
    def b_off(self) -> int:
        return self.w_off + self.n_weights

    @property
    def weight_shape(self) -> tuple:
        """PyTorch's layout: Conv2d ``(cout, cin, k, k)``, ConvTranspose2d ``(cin, cout, k, k)``."""
        if self.kind == CONV:
            return (self.cout, self.cin, self.k, self.k)
        return (self.cin, self.cout, self.k, self.k)

    @property
    def fan_in(self) -> int:
        """PyTorch's fan-in: ``weight.size(1)·k·k``."""
        return self.weight_shape[1] * self.k * self.k

    @property
    def name(self) -> str:
        s = f"{KIND_NAMES[self.kind]}{self.cout} k{self.k}s{self.s}p{self.p}"
        if self.op_h or self.op_w:
            s += f" op{self.op_h}" if self.op_h == self.op_w else f" op{self.op_h},{self.op_w}"
        return s

    def temp_size(self, nb: int) -> int:
        """Doubles of each of the two temporaries the layer kernels need for a block of ``nb`` samples."""
        if self.kind == CONV:
            return max(self.cin * self.k * self.k, self.cout) * nb * self.hout * self.wout
        return max(self.cout * self.k * self.k, self.cin) * nb * self.hin * self.win

    def geo(self, act_off: int = -1, t_off: int = -1, col_off: int = -1) -> np.ndarray:
        """The layer's ``Iv`` row (scratch offsets -1 unless given)."""
        row = np.full(NF, -1, dtype=np.int64)
        row[[F_KIND, F_CIN, F_COUT, F_K, F_S, F_P, F_OPH, F_OPW, F_HIN, F_WIN, F_HOUT, F_WOUT]] = (
            self.kind, self.cin, self.cout, self.k, self.s, self.p, self.op_h, self.op_w,
            self.hin, self.win, self.hout, self.wout)
        row[F_WOFF], row[F_BOFF] = self.w_off, self.b_off
        row[F_RELU], row[F_SMALL] = int(self.relu), int(self.small)
        row[F_ACT], row[F_T], row[F_COL] = act_off, t_off, col_off
        return row

    def col_size(self, nb: int) -> int:
        """Doubles of the im2col matrix a conv keeps from forward to backward (0 for a transposed conv)."""
        return self.cin * self.k * self.k * nb * self.hout * self.wout if self.kind == CONV else 0


def conv_out(n: int, k: int, s: int, p: int) -> int:
    """Conv2d output size along one axis (may be ≤ 0: the kernel does not fit)."""
    return (n + 2 * p - k) // s + 1


def make_layer(kind, cin, cout, k, s, p, hin, win, op=(0, 0), w_off=0, relu=False, small=None) -> Layer:
    """One layer with its output size; ``small=None`` takes the kernel's rule (fewer than SMALL_PIXELS pixels)."""
    op_h, op_w = (op, op) if np.isscalar(op) else op
    if kind == CONV:
        hout, wout = conv_out(hin, k, s, p), conv_out(win, k, s, p)
        pixels = hout * wout
    else:
        hout, wout = (hin - 1) * s - 2 * p + k + op_h, (win - 1) * s - 2 * p + k + op_w
        pixels = hin * win
    if small is None:
        small = pixels < SMALL_PIXELS
    return Layer(int(kind), int(cin), int(cout), int(k), int(s), int(p), int(op_h), int(op_w), int(hin), int(win),
                 int(hout), int(wout), int(w_off), bool(relu), bool(small))


@dataclass(frozen=True, eq=False)
class Arch:
    """A parsed conv autoencoder: layers, the kernel's ``Iv`` table, parameter blocks and scratch size."""

    spec: str
    height: int
    width: int
    block: int
    layers: tuple
    Iv: np.ndarray
    block_ptr: np.ndarray

    @property
    def d(self) -> int:
        return int(self.block_ptr[-1])

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def describe(self) -> str:
        parts = [f"1×{self.height}×{self.width}"]
        for ly in self.layers:
            parts += [ly.name, f"{ly.cout}×{ly.hout}×{ly.wout}"]
        return " → ".join(parts)

    def scratch_size(self) -> int:
        """Doubles of scratch one call of the kernels needs (a block of ``block`` samples: activations of
        every layer, two delta buffers, two im2col temporaries, the transposed weights of the small layers)."""
        return int(self.Iv[H_TOTAL])

    def weights(self, x, l: int) -> np.ndarray:
        """Layer ``l``'s weights as a view of ``x`` in PyTorch's shape."""
        ly = self.layers[l]
        return x[ly.w_off:ly.b_off].reshape(ly.weight_shape)

    def bias(self, x, l: int) -> np.ndarray:
        ly = self.layers[l]
        return x[ly.b_off:ly.b_off + ly.cout]


def _parse_spec(spec) -> list[tuple[int, int, int, int]]:
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        spec = DEFAULT_SPEC
    if isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",")]
    else:
        tokens = [":".join(str(v) for v in t) if not isinstance(t, str) else t.strip() for t in spec]
    if not tokens or any(not t for t in tokens):
        raise ConfigError(f"bad conv architecture {spec!r}: expected comma-separated encoder layers "
                          "channels:kernel:stride:padding, e.g. 16:3:2:1,32:3:2:1,64:7:1:0")
    out = []
    for i, tok in enumerate(tokens, 1):
        fields = [f.strip() for f in tok.split(":")]
        try:
            if len(fields) != 4:
                raise ValueError
            c, k, s, p = (int(f) for f in fields)
        except ValueError:
            raise ConfigError(f"bad conv layer {i} {tok!r} in {spec!r}: expected channels:kernel:stride:padding "
                              "(four integers, e.g. 16:3:2:1)") from None
        for what, v, least, most in (("channels", c, 1, MAX_CHANNELS), ("kernel", k, 1, MAX_KERNEL),
                                     ("stride", s, 1, MAX_KERNEL), ("padding", p, 0, MAX_KERNEL)):
            if v < least or v > most:
                raise ConfigError(f"bad conv layer {i} {tok!r} in {spec!r}: {what} must be in [{least}, {most}], "
                                  f"got {v}")
        out.append((c, k, s, p))
    return out


#: bounds of a layer's channels, and of its kernel, stride and padding
MAX_CHANNELS, MAX_KERNEL = 4096, 1024


def parse_arch(spec=None, height: int = 28, width: int = 28, block: int = DEFAULT_BLOCK,
               small_pixels: int = SMALL_PIXELS) -> Arch:
    """Encoder spec ``"c:k:s:p,..."`` (None/"" = the paper's) on single-channel ``height×width`` images.

    The decoder mirrors the encoder with transposed convs whose output_padding gives back each encoder
    layer's input size exactly.  Raises :class:`ConfigError` naming the layer when it does not fit.
    ``block`` (samples per block) and ``small_pixels`` (see SMALL_PIXELS) change only the speed and the
    scratch size, not a bit of the results.
    """
    enc = _parse_spec(spec)
    for what, v in (("height", height), ("width", width), ("block", block)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"conv autoencoder: image {what} must be a positive integer, got {v!r}"
                              if what != "block" else f"conv autoencoder: block must be a positive integer, got {v!r}")
    height, width, block = int(height), int(width), int(block)
    canon = ",".join(f"{c}:{k}:{s}:{p}" for c, k, s, p in enc)
    # encoder
    shapes = [(1, height, width)]
    for i, (c, k, s, p) in enumerate(enc, 1):
        cin, h, w = shapes[-1]
        tag = f"encoder layer {i} ({c} ch, k{k} s{s} p{p})"
        if h + 2 * p < k or w + 2 * p < k:
            raise ConfigError(f"{tag}: input {h}×{w} (padding {p} on each side) is smaller than the kernel "
                              f"{k}×{k}; the conv architecture {canon!r} does not fit {height}×{width} images")
        ho, wo = conv_out(h, k, s, p), conv_out(w, k, s, p)
        if ho < 1 or wo < 1:   # not reached after the check above; kept for clarity
            raise ConfigError(f"{tag}: output {ho}×{wo} is empty on input {h}×{w}")
        shapes.append((c, ho, wo))
    specs = []
    for i, (c, k, s, p) in enumerate(enc):
        (cin, h, w), (_, ho, wo) = shapes[i], shapes[i + 1]
        specs.append((CONV, cin, c, k, s, p, h, w, (0, 0)))
    for i in range(len(enc) - 1, -1, -1):
        c, k, s, p = enc[i]
        (cin, h, w), (_, ho, wo) = shapes[i], shapes[i + 1]
        op_h, op_w = h - ((ho - 1) * s - 2 * p + k), w - ((wo - 1) * s - 2 * p + k)
        if not (0 <= op_h < s and 0 <= op_w < s):   # cannot happen for a conv output size; checked anyway
            raise ConfigError(f"decoder twin of encoder layer {i + 1} ({c} ch, k{k} s{s} p{p}): no output_padding "
                              f"in [0, {s}) maps {ho}×{wo} back to {h}×{w} (needs {op_h}×{op_w})")
        specs.append((CONVT, c, cin, k, s, p, ho, wo, (op_h, op_w)))
    layers = []
    off = 0
    n = len(specs)
    for l, (kind, cin, cout, k, s, p, h, w, op) in enumerate(specs):
        pixels = conv_out(h, k, s, p) * conv_out(w, k, s, p) if kind == CONV else h * w
        ly = make_layer(kind, cin, cout, k, s, p, h, w, op=op, w_off=off, relu=l < n - 1,
                        small=pixels < small_pixels)
        assert (ly.cout, ly.hout, ly.wout) == ((shapes[l + 1] if l < len(enc) else shapes[n - 1 - l]))
        layers.append(ly)
        off += ly.n_params
    from ..environment import check_memory
    # the engine keeps about 20 d-vectors (a gradient per chunk, the worker's, the error, sums)
    check_memory(20 * 8.0 * off, f"the conv architecture {canon!r} (d = {off:,} parameters)",
                 "use fewer channels or smaller kernels")
    block_ptr = np.array([0] + [ly.w_off + ly.n_params for ly in layers], dtype=np.int64)
    # scratch layout
    npix = height * width
    so = 0
    off_in = so
    so += block * npix
    acts = []
    for ly in layers:
        acts.append(so)
        so += ly.cout * block * ly.hout * ly.wout
    touts, cols = [], []
    for ly in layers:
        touts.append(so if ly.small else -1)          # a small layer's transposed weights
        so += ly.n_weights if ly.small else 0
        cols.append(so if ly.kind == CONV else -1)
        so += ly.col_size(block)
    dsize = max([block * npix] + [ly.cout * block * ly.hout * ly.wout for ly in layers])
    tsize = max(ly.temp_size(block) for ly in layers)
    off_d0, off_d1 = so, so + dsize
    so += 2 * dsize
    off_t0, off_t1 = so, so + tsize
    so += 2 * tsize
    Iv = np.zeros(HDR + NF * n, dtype=np.int64)
    Iv[[H_L, H_NF, H_NB, H_H, H_W, H_IN, H_D0, H_D1, H_DSIZE, H_T0, H_T1, H_TSIZE, H_TOTAL, H_D]] = (
        n, NF, block, height, width, off_in, off_d0, off_d1, dsize, off_t0, off_t1, tsize, so, off)
    for l, ly in enumerate(layers):
        Iv[HDR + l * NF:HDR + (l + 1) * NF] = ly.geo(acts[l], touts[l], cols[l])
    return Arch(canon, height, width, block, tuple(layers), Iv, block_ptr)


def layer_geo(arch: Arch, l: int) -> np.ndarray:
    """Layer ``l``'s row of ``arch.Iv`` (a view): the ``geo`` argument of the layer kernels."""
    return arch.Iv[HDR + l * NF:HDR + (l + 1) * NF]


# --- parameters ---------------------------------------------------------------------------
def init_params(arch: Arch, rng) -> np.ndarray:
    """PyTorch's default init: weights and biases U(−1/√fan_in, 1/√fan_in), fan_in = ``weight.size(1)·k·k``
    (cin·k·k for Conv2d, cout·k·k for ConvTranspose2d)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = np.empty(arch.d)
    for ly in arch.layers:
        bound = 1.0 / math.sqrt(ly.fan_in)
        x[ly.w_off:ly.b_off] = rng.uniform(-bound, bound, ly.n_weights)
        x[ly.b_off:ly.b_off + ly.cout] = rng.uniform(-bound, bound, ly.cout)
    return x


def saddle_point(arch: Arch, F) -> np.ndarray:
    """All weights and biases 0, the last layer's bias the mean pixel value of ``F``.

    Every activation is then 0 and the output the constant mean: each weight gradient is exactly 0 (so is
    every hidden bias's), and the output bias's gradient over all of ``F`` is 0 up to rounding.
    """
    x = np.zeros(arch.d)
    last = arch.layers[-1]
    x[last.b_off:last.b_off + last.cout] = float(np.mean(np.asarray(F, dtype=np.float64)))
    return x


#: fixed sample chunks of one pass (each with its own gradient and scratch buffers); never the thread count
PASS_CHUNKS = 8
REDUCE_BLOCK = 4096


@njit_parallel
def conv_pass(Iv, F, wd, x, rows, nb, g, P, S, Lc):
    """Mean loss of the samples ``rows[:nb]`` (+ ½wd‖x‖²); its gradient into ``g`` (overwritten).

    The samples are split into ``min(P.shape[0], nb)`` fixed chunks, each into its own row of ``P``,
    then reduced in chunk order: the same bits whatever the number of threads.  The chunks run in
    parallel in ``S.shape[0]`` slots (contiguous runs of chunks, one scratch row of ``S`` each).
    ``P`` must be all zero on entry (:func:`pass_buffers` makes it so) and is all zero again on return:
    the reduction zeroes each entry as it reads it, while the row is in cache, instead of a separate
    zeroing pass over every chunk's row at the start (8 × d doubles: a few % of a batch-64 pass).
    """
    d = x.shape[0]
    nch = min(P.shape[0], nb)
    # every argument check before any chunk writes its row of P: an error leaves P zero
    _check(Iv, x, F, rows, 0, nb, P[0], S[0], True)
    if P.shape[1] != d or g.shape[0] != d:
        raise ValueError("conv autoencoder: x, g and the rows of P must have the same length")
    # the parallel loop runs over slots, one per row of S (pass_buffers gives one per thread), each slot
    # taking its contiguous share of the fixed chunks one after the other with *one* scratch row: a chunk's
    # result (its row of P, its loss) depends neither on the slot that runs it nor on the scratch row (the
    # kernels never read scratch they did not write in the same call), so the bits do not depend on the
    # number of threads or of scratch rows.  Two scratch rows in use instead of eight stay in cache (~4 MB
    # each: eight went to DRAM every pass)
    nslot = max(1, min(nch, S.shape[0]))
    for t in prange(nslot):
        Sc = S[t]
        c0 = t * nch // nslot
        for c in range(c0, (t + 1) * nch // nslot):
            lo = c * nb // nch
            hi = (c + 1) * nb // nch
            Pc = P[c]
            # the small layers' transposed weights once a slot (they depend on x only), not once a chunk
            Lc[c] = _ae_rows(Iv, x, F, rows, lo, hi, Pc, Sc, c > c0)
    inv = 1.0 / nb
    loss = 0.0
    for c in range(nch):
        loss += Lc[c]
    loss *= inv
    # the reduction in parallel too (d·chunks adds, a fifth of a pass if serial), over fixed coordinate
    # blocks: each g[j] still sums its chunks in chunk order; it leaves P zero for the next pass
    nblk = (d + REDUCE_BLOCK - 1) // REDUCE_BLOCK
    for bj in prange(nblk):
        for j in range(bj * REDUCE_BLOCK, min(d, (bj + 1) * REDUCE_BLOCK)):
            s = 0.0
            for c in range(nch):
                s += P[c, j]
                P[c, j] = 0.0
            g[j] = s * inv + wd * x[j]
    sq = 0.0
    if wd != 0.0:
        for j in range(d):
            sq += x[j] * x[j]
    return loss + 0.5 * wd * sq


def pass_buffers(arch, chunks: int = PASS_CHUNKS, slots: int | None = None):
    """``(P, S, Lc)`` for :func:`conv_pass`: gradient and loss per chunk, scratch per slot.

    ``slots`` (default: Numba's thread count, at most ``chunks``) is the number of chunk runs that go in
    parallel, each with its own scratch row; it changes only the speed and the memory, never a bit.
    ``P`` starts at zero and every :func:`conv_pass` leaves it so: reuse the three for any number of passes.
    """
    if slots is None:
        slots = numba.config.NUMBA_NUM_THREADS
    slots = max(1, min(int(chunks), int(slots)))
    return np.zeros((chunks, arch.d)), np.zeros((slots, arch.scratch_size())), np.zeros(chunks)
