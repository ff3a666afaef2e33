"""The det-CGD family as one jitted loop (single node = one client).

Per iteration k, client i computes ``g_i = ∇f_i(x^k)`` and sends

* det-CGD1 / Algorithm 1 (also GD with S = I and DCGD with D = γI):
  ``m_i = S_i^k g_i``;  server: ``x^{k+1} = x^k - D (1/n) Σ_i m_i``
* det-CGD2 / Algorithm 2:
  ``m_i = T_i^k D g_i``; server: ``x^{k+1} = x^k - (1/n) Σ_i m_i``

Parallelism and determinism: clients are split into ``R`` fixed contiguous
ranges (R depends on n only, never on the thread count).  ``prange`` runs over
ranges; each range owns one row of every buffer (message sum, gradient sum,
scratch), so no two threads write the same memory, and the ranges are reduced
in index order after the loop.  Sketches draw from streams keyed by
``(seed, client, k)``.  Aggregation memory is O(R·d), independent of n.

Metrics: ``∇f(x^k)`` is the mean of the client gradients already computed for
the messages (no extra data pass); the loss is accumulated in the same pass, on
logged iterations only.
"""
import math

import numpy as np

from .._jit import njit_parallel, prange
from ..compressors.sketches import sample_sketch
from ..problems.logreg import client_data_grad, regularizer
from ..stepsizes.kernels import d_apply, d_quad, d_row_dot

DET_CGD1, DET_CGD2 = 0, 1
RUNNING, DIVERGED = 0, 1
MAX_RANGES = 16


def client_ranges(n: int) -> np.ndarray:
    """Fixed split of ``n`` clients into ``min(n, MAX_RANGES)`` contiguous ranges."""
    r = min(n, MAX_RANGES)
    sizes = np.full(r, n // r, dtype=np.int64)
    sizes[: n % r] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@njit_parallel
def det_cgd_chunk(k0, k1, K, log_every, family, x,
                  indptr, indices, values, b, client_ptr, inv_m, lam, kind,
                  sk_kind, sk_d, sk_k, sk_block_ptr, sk_block_k, sk_block_q, sk_cdf, sk_inv_p,
                  seed,
                  D_kind, D_gamma, D_diag, D_mat, D_block_ptr, D_block_of, D_det_root,
                  range_ptr, msg_buf, gsum_buf, scratch, mark, idx_buf, scale_buf,
                  loss_buf, nnz_buf, reg_grad, D_reg, tmp, zbuf,
                  value_bits, index_bits, down_bits,
                  acc, out_iter, out_loss, out_gns, out_gnsD, out_bits_up, out_bits_down):
    """Run iterations ``k0 <= k < k1`` (``k == K`` evaluates the final point only).

    ``acc`` carries state between chunks: ``[Σ_{j<k} ‖∇f(x^j)‖²_D̃, bits up, bits down, rows written]``.
    Returns ``(status, next k)``; on divergence ``next k`` is the iteration whose
    metrics were not finite (``x`` is that iterate).
    """
    n = client_ptr.shape[0] - 1
    n_ranges = range_ptr.shape[0] - 1
    d = x.shape[0]
    for k in range(k0, k1):
        log_row = (k % log_every == 0) or (k == K)
        send = k < K
        reg = regularizer(kind, x, lam, reg_grad)
        if family == DET_CGD2 and send:
            d_apply(D_kind, D_gamma, D_diag, D_mat, D_block_ptr, D_block_of, reg_grad, D_reg)
        for r in prange(n_ranges):
            msg = msg_buf[r]
            gsum = gsum_buf[r]
            g = scratch[r]
            for u in range(d):
                msg[u] = 0.0
                gsum[u] = 0.0
            lsum = 0.0
            cnt = 0
            for i in range(range_ptr[r], range_ptr[r + 1]):
                lsum += client_data_grad(kind, x, indptr, indices, values, b, client_ptr[i],
                                         client_ptr[i + 1], inv_m[i], log_row, g, zbuf[r])
                for u in range(d):
                    gsum[u] += g[u]
                if send:
                    nnz = sample_sketch(sk_kind, sk_d, sk_k, sk_block_ptr, sk_block_k, sk_block_q,
                                        sk_cdf, sk_inv_p, seed, i, k, mark[r], idx_buf[r], scale_buf[r])
                    for q in range(nnz):
                        j = idx_buf[r, q]
                        # g holds the data part of ∇f_i; the regularizer's part is shared
                        if family == DET_CGD1:
                            msg[j] += scale_buf[r, q] * (g[j] + reg_grad[j])
                        else:
                            msg[j] += scale_buf[r, q] * (d_row_dot(D_kind, D_gamma, D_diag, D_mat,
                                                                   D_block_ptr, D_block_of, j, g) + D_reg[j])
                    cnt += nnz
            loss_buf[r] = lsum
            nnz_buf[r] = cnt
        # reduce ranges in a fixed order
        loss = 0.0
        nnz_all = 0
        for t in range(d):
            tmp[t] = 0.0
        for r in range(n_ranges):
            loss += loss_buf[r]
            nnz_all += nnz_buf[r]
            for t in range(d):
                tmp[t] += gsum_buf[r, t]
        gns = 0.0
        for t in range(d):
            tmp[t] = tmp[t] / n + reg_grad[t]
            gns += tmp[t] * tmp[t]
        gnsD = d_quad(D_kind, D_gamma, D_diag, D_mat, D_block_ptr, D_block_of, tmp) / D_det_root
        if not (math.isfinite(gns) and math.isfinite(gnsD) and math.isfinite(reg)
                and math.isfinite(loss)):
            return DIVERGED, k
        if log_row:
            row = np.int64(acc[3])
            out_iter[row] = k
            out_loss[row] = loss / n + reg
            out_gns[row] = gns
            out_gnsD[row] = gnsD
            out_bits_up[row] = acc[1]
            out_bits_down[row] = acc[2]
            acc[3] += 1
        if not send:
            continue
        acc[0] += gnsD
        acc[1] += value_bits * nnz_all + n * index_bits
        acc[2] += down_bits
        # server step: aggregate the messages in range order
        for t in range(d):
            tmp[t] = 0.0
        for r in range(n_ranges):
            for t in range(d):
                tmp[t] += msg_buf[r, t]
        for t in range(d):
            tmp[t] /= n
        if family == DET_CGD1:
            step = scratch[0]
            d_apply(D_kind, D_gamma, D_diag, D_mat, D_block_ptr, D_block_of, tmp, step)
            for t in range(d):
                x[t] -= step[t]
        else:
            for t in range(d):
                x[t] -= tmp[t]
    return RUNNING, k1
