"""Where the conv autoencoder's batch-64 gradient spends its time: each layer's forward and backward kernel
timed on its own, one thread, blocks of ``DEFAULT_BLOCK`` samples, the default architecture.

    python benchmarks/conv_layer_profile.py [--repeats 20] [--batch 64]

Replays :func:`cgdbench.problems.conv.conv_ae_rows`'s sequence of layer kernels from Python (each call
timed with perf_counter; a Python→kernel call costs a few µs, small next to a layer).  Min and median over
``--repeats`` passes, in ms per batch; ``total`` is the sum of the medians, ``conv_pass 1T`` the real pass.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
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
    print(json.dumps(res, indent=1))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return res


if __name__ == "__main__":
    main()
