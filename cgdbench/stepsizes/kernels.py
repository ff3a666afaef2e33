"""Jitted application of a typed stepsize matrix (scalar / diagonal / block-diagonal).

A dense D is the one-block case of block-diagonal.  ``mat`` holds the full d×d
array for block kinds; only entries inside blocks are read.
"""
from .._jit import njit_inline

D_SCALAR, D_DIAG, D_BLOCK = 0, 1, 2


@njit_inline
def d_apply(kind, gamma, diag, mat, block_ptr, block_of, v, out):
    """``out = D v``: O(d) for scalar/diagonal, O(Σ d_i²) for blocks."""
    d = v.shape[0]
    if kind == D_SCALAR:
        for j in range(d):
            out[j] = gamma * v[j]
    elif kind == D_DIAG:
        for j in range(d):
            out[j] = diag[j] * v[j]
    else:
        for b in range(block_ptr.shape[0] - 1):
            lo, hi = block_ptr[b], block_ptr[b + 1]
            for i in range(lo, hi):
                s = 0.0
                for j in range(lo, hi):
                    s += mat[i, j] * v[j]
                out[i] = s


@njit_inline
def d_row_dot(kind, gamma, diag, mat, block_ptr, block_of, i, v):
    """``(D v)_i``: one row, O(d_i) for a block."""
    if kind == D_SCALAR:
        return gamma * v[i]
    if kind == D_DIAG:
        return diag[i] * v[i]
    b = block_of[i]
    s = 0.0
    for j in range(block_ptr[b], block_ptr[b + 1]):
        s += mat[i, j] * v[j]
    return s


@njit_inline
def d_quad(kind, gamma, diag, mat, block_ptr, block_of, v):
    """``vᵀ D v``."""
    d = v.shape[0]
    s = 0.0
    if kind == D_SCALAR:
        for j in range(d):
            s += v[j] * v[j]
        return gamma * s
    if kind == D_DIAG:
        for j in range(d):
            s += diag[j] * v[j] * v[j]
        return s
    for b in range(block_ptr.shape[0] - 1):
        lo, hi = block_ptr[b], block_ptr[b + 1]
        for i in range(lo, hi):
            t = 0.0
            for j in range(lo, hi):
                t += mat[i, j] * v[j]
            s += v[i] * t
    return s
