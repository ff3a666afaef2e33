"""Compressed SGD with error feedback, perturbation and reset (Avdiukhin & Yaroslavtsev, Algorithm 1).

Per iteration t, with W workers (single node: W = 1), shared noise ξ_t ~ N(0, r²I)
and shared compressor randomness θ̃_t::

    reset  (lines 4-8, only with ``use_reset``): if t − t' > I or ‖x_{t'} − x̃_t‖ > R:
               x_t ← x̃_t if f(x̃_t) < f(x_{t'}) else x_{t'};   t' ← t;   e^{(i)} ← 0
    worker i:  G_i = ∇F_i(x_t, θ_{i,t})                      (minibatch of its own rows)
               v_i = e^{(i)} + G_i + ξ_t   (e^{(i)} ≡ 0 without error feedback)
               g_i = C(v_i, θ̃_t);   e^{(i)} ← v_i − g_i
    server:    x_{t+1} = x_t − η (1/W) Σ_i g_i

``x̃_t = x_t − η ē_t`` (ē the mean worker error) is the error-corrected iterate;
it obeys x̃_{t+1} = x̃_t − η((1/W)Σ_i G_i + ξ_t), so it is tracked in O(d)
without forming ē.  The paper prints the reset test as f(x_t) < f(x_{t'}) while
moving to x̃_t; we compare f at the point we move to (docs/paper-notes.md §7).

Determinism: workers are split into fixed ranges (as in det-CGD); each range
owns its buffers, ranges are reduced in index order; minibatches use streams
keyed by (seed, worker, t), noise and compressor randomness the shared streams.
"""
import math

import numpy as np

from .._jit import njit, njit_parallel, prange
from ..compressors.sketches import _floyd
from ..compressors.vector import SHARED_COMPRESSOR, SHARED_NOISE, decode_add, encode
from ..problems.saddles import P_LINEAR_AE, batch_loss_grad, linear_ae_full
from ..rng import stream_key, uniform

RUNNING, DIVERGED = 0, 1
# acc slots carried between chunks
A_ROWS, A_BITS_UP, A_BITS_DOWN, A_SGN_SUM, A_SGN_COUNT, A_RESETS, A_F_ANCHOR, A_T_ANCHOR = range(8)


@njit
def full_loss_grad(pkind, F, G, V, Iv, x, all_rows, g, scratch):
    """f(x) and ∇f(x) over all rows (the linear autoencoder uses Σ = XᵀX/m)."""
    if pkind == P_LINEAR_AE:
        return linear_ae_full(x, G, Iv[0], Iv[1], V[0], g, False, x, g)
    return batch_loss_grad(pkind, F, G, V, Iv, x, all_rows, all_rows.shape[0], g, scratch)


@njit
def gaussian_vector(seed, t, r, out):
    """``out = r·N(0, I)`` from the shared noise stream of iteration t (Box–Muller)."""
    key = stream_key(seed, SHARED_NOISE, t)
    d = out.shape[0]
    for j in range(0, d, 2):
        u1 = uniform(key, j)
        u2 = uniform(key, j + 1)
        rad = r * math.sqrt(-2.0 * math.log(1.0 - u1))
        out[j] = rad * math.cos(2.0 * math.pi * u2)
        if j + 1 < d:
            out[j + 1] = rad * math.sin(2.0 * math.pi * u2)


@njit_parallel
def ef_sgd_chunk(k0, k1, K, log_every, use_ef, use_reset, reset_iters, escape_radius, eta, noise, batch,
                 x, xt, xa,
                 pkind, F, G, V, Iv, worker_ptr, all_rows,
                 ckind, cd, ck, cs, cr, cc, cscale, seed,
                 range_ptr, E, gsum, hsum, vbuf, gradbuf, scratch, rows_buf, rows_scale, row_mark,
                 idx_buf, val_buf, code_buf, bits_buf, table_buf, work_buf, cmark,
                 xi, gfull, full_scratch, bits_up_iter, bits_down_iter,
                 acc, out_iter, out_loss, out_gns, out_bits_up, out_bits_down, out_sgn, out_resets):
    """Run iterations ``k0 <= t < k1`` (``t == K`` only logs the final point).

    Returns ``(status, next t)``; ``x``/``xt``/``xa``/``E``/``acc`` carry the state.
    """
    d = x.shape[0]
    W = worker_ptr.shape[0] - 1
    n_ranges = range_ptr.shape[0] - 1
    inv_w = 1.0 / W
    for t in range(k0, k1):
        # --- Algorithm 1, lines 4-8: reset after I iterations or on escaping radius R
        if use_reset and t > 0:
            dist2 = 0.0
            for j in range(d):
                dj = xa[j] - xt[j]
                dist2 += dj * dj
            if t - acc[A_T_ANCHOR] > reset_iters or dist2 > escape_radius * escape_radius:
                ft = full_loss_grad(pkind, F, G, V, Iv, xt, all_rows, gfull, full_scratch)
                if ft < acc[A_F_ANCHOR]:
                    acc[A_F_ANCHOR] = ft
                    for j in range(d):
                        x[j] = xt[j]
                else:
                    for j in range(d):
                        x[j] = xa[j]
                for j in range(d):
                    xa[j] = x[j]
                    xt[j] = x[j]
                for i in range(E.shape[0]):
                    for j in range(d):
                        E[i, j] = 0.0
                acc[A_T_ANCHOR] = t
                acc[A_RESETS] += 1
        # --- metrics on logged iterations (one full pass over the data)
        if t % log_every == 0 or t == K:
            row = np.int64(acc[A_ROWS])
            f = full_loss_grad(pkind, F, G, V, Iv, x, all_rows, gfull, full_scratch)
            gn = 0.0
            for j in range(d):
                gn += gfull[j] * gfull[j]
            out_iter[row] = t
            out_loss[row] = f
            out_gns[row] = gn
            out_bits_up[row] = acc[A_BITS_UP]
            out_bits_down[row] = acc[A_BITS_DOWN]
            out_sgn[row] = acc[A_SGN_SUM] / acc[A_SGN_COUNT] if acc[A_SGN_COUNT] > 0 else np.nan
            out_resets[row] = acc[A_RESETS]
            acc[A_SGN_SUM] = 0.0
            acc[A_SGN_COUNT] = 0.0
            acc[A_ROWS] = row + 1
            if not (math.isfinite(f) and math.isfinite(gn)):
                return DIVERGED, t
        if t == K:
            return RUNNING, t + 1
        if noise > 0.0:
            gaussian_vector(seed, t, noise, xi)
        ckey = stream_key(seed, SHARED_COMPRESSOR, t)
        # --- workers, in fixed ranges (one buffer row per range)
        for rr in prange(n_ranges):
            gs = gsum[rr]
            hs = hsum[rr]
            for j in range(d):
                gs[j] = 0.0
                hs[j] = 0.0
            v = vbuf[rr]
            gr = gradbuf[rr]
            for i in range(range_ptr[rr], range_ptr[rr + 1]):
                lo = worker_ptr[i]
                mi = worker_ptr[i + 1] - lo
                key = stream_key(seed, i, t)
                _floyd(key, 0, lo, mi, batch, 1.0, row_mark, rows_buf[rr], rows_scale[rr], 0)
                batch_loss_grad(pkind, F, G, V, Iv, x, rows_buf[rr], batch, gr, scratch[rr])
                for j in range(d):
                    hs[j] += gr[j]
                    v[j] = gr[j] + xi[j] + (E[i, j] if use_ef else 0.0)
                nnz, ms = encode(ckind, cd, ck, cs, cr, cc, cscale, ckey, v, idx_buf[rr], val_buf[rr],
                                 code_buf[rr], bits_buf[rr], table_buf[rr], work_buf[rr], cmark[rr])
                decode_add(ckind, cd, nnz, ms, 1.0, idx_buf[rr], val_buf[rr], code_buf[rr], bits_buf[rr], gs)
                if use_ef:
                    ei = E[i]
                    for j in range(d):
                        ei[j] = v[j]
                    decode_add(ckind, cd, nnz, ms, -1.0, idx_buf[rr], val_buf[rr], code_buf[rr], bits_buf[rr],
                               ei)
        # --- server: ranges reduced in index order
        sgn = 0.0
        for j in range(d):
            gj = 0.0
            hj = 0.0
            for rr in range(n_ranges):
                gj += gsum[rr, j]
                hj += hsum[rr, j]
            gj *= inv_w
            hj *= inv_w
            sgn += hj * hj
            x[j] -= eta * gj
            if use_reset:  # x̃ is only read by the reset test (reset implies error feedback)
                xt[j] -= eta * (hj + xi[j])
        acc[A_SGN_SUM] += sgn
        acc[A_SGN_COUNT] += 1.0
        acc[A_BITS_UP] += bits_up_iter
        acc[A_BITS_DOWN] += bits_down_iter
    return RUNNING, k1
