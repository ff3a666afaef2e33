"""Where the conv autoencoder's batch-64 gradient spends its time: each layer's forward and backward kernel
timed on its own, one thread, blocks of ``DEFAULT_BLOCK`` samples, the default architecture.

    python benchmarks/conv_layer_profile.py [--repeats 20] [--batch 64] [--products]

Replays :func:`cgdbench.problems.conv.conv_ae_rows`'s sequence of layer kernels from Python (each call
timed with perf_counter; a Python→kernel call costs a few µs, small next to a layer).  Min and median over
``--repeats`` passes, in ms per batch; ``total`` is the sum of the medians, ``conv_pass 1T`` the real pass.

``--products`` also times each layer's matrix products (:func:`cgdbench.problems.conv.gemm`, the calls and
shapes the layer kernels make) alone, on operands that stay in cache between calls, in ms per batch and
GMAC/s: what the pass would cost if nothing but its products ran, at their best rate.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numba
import numpy as np


def layer_products(C, ly, nb: int, first: bool):
    """The ``gemm`` calls of one layer's forward and backward for a block of ``nb`` samples:
    ``(what, M, N, K, ai, ak)`` as the layer kernels pass them (B and C with contiguous rows of N)."""
    kk = ly.k * ly.k
    if ly.kind == C.CONV:
        R, NP = ly.cin * kk, nb * ly.hout * ly.wout
        calls = ([("fwd", NP, ly.cout, R, R, 1), ("gW", ly.cout, R, NP, NP, 1), ("din", NP, R, ly.cout, 1, NP)]
                 if ly.small else
                 [("fwd", ly.cout, NP, R, R, 1), ("gW", ly.cout, R, NP, NP, 1), ("din", R, NP, ly.cout, 1, R)])
    else:
        R, NP = ly.cout * kk, nb * ly.hin * ly.win
        calls = ([("fwd", NP, R, ly.cin, 1, NP), ("gW", ly.cin, R, NP, NP, 1), ("din", NP, ly.cin, R, R, 1)]
                 if ly.small else
                 [("fwd", R, NP, ly.cin, 1, R), ("gW", ly.cin, R, NP, NP, 1), ("din", ly.cin, NP, R, R, 1)])
    return [c for c in calls if not (first and c[0] == "din")]


def measure_products(C, arch, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    out, total = {}, 0.0
    blocks = -(-batch // arch.block)
    for l, ly in enumerate(arch.layers):
        for what, M, N, K, ai, ak in layer_products(C, ly, arch.block, l == 0):
            A, B, Cm = rng.standard_normal(M * K), rng.standard_normal(K * N), np.zeros(M * N)
            ai, ak = np.int64(ai), np.int64(ak)
            C.gemm(Cm, N, A, ai, ak, B, N, M, N, K)
            best = math.inf
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(blocks):
                    C.gemm(Cm, N, A, ai, ak, B, N, M, N, K)
                best = min(best, time.perf_counter() - t)
            total += best
            out[f"{l} {ly.name} {what} {M}x{N}x{K}"] = {"min_ms": round(1e3 * best, 3),
                                                        "GMAC/s": round(M * N * K * blocks / best / 1e9, 1)}
    out["products total (sum of mins)"] = round(1e3 * total, 3)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--products", action="store_true", help="also time each layer's matrix products alone")
    ns = ap.parse_args(argv)
    from cgdbench import problems
    from cgdbench.problems import conv as C
    p = problems.get("conv-autoencoder").create()
    arch = p.arch
    Iv, F = p.Iv, p.F
    x = p.x0("random", seed=0)
    rows = np.sort(np.random.default_rng(0).choice(p.m, ns.batch, replace=False)).astype(np.int64)
    numba.set_num_threads(1)
    S = np.zeros(arch.scratch_size())
    g = np.zeros(p.d)
    L = int(Iv[C.H_L])
    nbmax = int(Iv[C.H_NB])
    npix = arch.height * arch.width
    def sl(o, n):
        return S[o:o + n]
    t0 = sl(Iv[C.H_T0], Iv[C.H_TSIZE])
    t1 = sl(Iv[C.H_T1], Iv[C.H_TSIZE])
    d0 = sl(Iv[C.H_D0], Iv[C.H_DSIZE])
    d1 = sl(Iv[C.H_D1], Iv[C.H_DSIZE])
    geos = [C.layer_geo(arch, l) for l in range(L)]
    for geo in geos:
        if geo[C.F_SMALL]:
            C.transpose_weights(geo, x[geo[C.F_WOFF]:geo[C.F_BOFF]], sl(geo[C.F_T], geo[C.F_BOFF] - geo[C.F_WOFF]))
    names = [ly.name for ly in arch.layers]
    keys = [f"fwd {l} {names[l]}" for l in range(L)] + [f"bwd {l} {names[l]}" for l in range(L - 1, -1, -1)]

    def one_pass(acc):
        for q0 in range(0, rows.size, nbmax):
            nb = min(nbmax, rows.size - q0)
            img = S[Iv[C.H_IN]:Iv[C.H_IN] + nb * npix]
            img[:] = F[rows[q0:q0 + nb]].ravel()
            src = img
            for l, geo in enumerate(geos):
                n_out = geo[C.F_COUT] * nb * geo[C.F_HOUT] * geo[C.F_WOUT]
                out = sl(geo[C.F_ACT], n_out)
                W = x[geo[C.F_WOFF]:geo[C.F_BOFF]]
                b = x[geo[C.F_BOFF]:geo[C.F_BOFF] + geo[C.F_COUT]]
                t = time.perf_counter()
                if geo[C.F_KIND] == C.CONV:
                    col = sl(geo[C.F_COL], geo[C.F_CIN] * geo[C.F_K] ** 2 * nb * geo[C.F_HOUT] * geo[C.F_WOUT])
                    WT = sl(geo[C.F_T], W.shape[0]) if geo[C.F_SMALL] else t0[:0]
                    C.conv2d_forward(geo, nb, W, b, src, out, col, t1, WT)
                else:
                    C.conv_transpose2d_forward(geo, nb, W, b, src, out, t0, t1)
                acc[keys[l]] += time.perf_counter() - t
                if geo[C.F_RELU]:
                    np.maximum(out, 0.0, out=out)
                src = out
            r = src - img
            d0[:r.size] = (2.0 / npix) * r
            cur, other = d0, d1
            for l in range(L - 1, -1, -1):
                geo = geos[l]
                n_out = geo[C.F_COUT] * nb * geo[C.F_HOUT] * geo[C.F_WOUT]
                n_in = geo[C.F_CIN] * nb * geo[C.F_HIN] * geo[C.F_WIN]
                dz = cur[:n_out]
                if geo[C.F_RELU]:
                    dz[sl(geo[C.F_ACT], n_out) <= 0.0] = 0.0
                nw = geo[C.F_BOFF] - geo[C.F_WOFF]
                W = x[geo[C.F_WOFF]:geo[C.F_BOFF]]
                gW = g[geo[C.F_WOFF]:geo[C.F_BOFF]]
                gb = g[geo[C.F_BOFF]:geo[C.F_BOFF] + geo[C.F_COUT]]
                din = other[:n_in]
                t = time.perf_counter()
                if geo[C.F_KIND] == C.CONV:
                    col = sl(geo[C.F_COL], geo[C.F_CIN] * geo[C.F_K] ** 2 * nb * geo[C.F_HOUT] * geo[C.F_WOUT])
                    C.conv2d_backward(geo, nb, W, col, dz, gW, gb, din, t0, t1, l > 0)
                else:
                    src = img if l == 0 else sl(geos[l - 1][C.F_ACT], n_in)
                    WT = sl(geo[C.F_T], nw) if geo[C.F_SMALL] else t0[:0]
                    C.conv_transpose2d_backward(geo, nb, W, src, dz, gW, gb, din, t0, t1, WT, l > 0)
                acc[keys[L + (L - 1 - l)]] += time.perf_counter() - t
                cur, other = other, cur

    times = {k: [] for k in keys}
    times["conv_pass 1T"] = []
    P, SS, Lc = C.pass_buffers(arch)
    gg = np.empty(p.d)
    one_pass({k: 0.0 for k in keys})
    C.conv_pass(Iv, F, 0.0, x, rows, rows.size, gg, P, SS, Lc)
    for _ in range(ns.repeats):
        acc = {k: 0.0 for k in keys}
        one_pass(acc)
        for k in keys:
            times[k].append(acc[k])
        t = time.perf_counter()
        C.conv_pass(Iv, F, 0.0, x, rows, rows.size, gg, P, SS, Lc)
        times["conv_pass 1T"].append(time.perf_counter() - t)
    res = {k: {"min_ms": round(1e3 * min(v), 3), "median_ms": round(1e3 * float(np.median(v)), 3)}
           for k, v in times.items()}
    res["total (sum of medians)"] = round(sum(res[k]["median_ms"] for k in keys), 3)
    if ns.products:
        res["products"] = measure_products(C, arch, ns.batch, ns.repeats)
    print(json.dumps(res, indent=1))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return res


if __name__ == "__main__":
    main()
