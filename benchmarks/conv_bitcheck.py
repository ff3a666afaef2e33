"""Bit-identity check of the conv autoencoder's gradient: save it once, compare after every kernel change.

    python benchmarks/conv_bitcheck.py --save FILE.npz     # before a change
    python benchmarks/conv_bitcheck.py --check FILE.npz    # after: np.array_equal on every array

Default architecture on the benchmark's dataset, x = x0("random", seed=0), the benchmark's 64 rows (and a
second batch of 37 rows, so the chunks have uneven sizes); conv_pass's loss and full gradient on the parallel
path with 1 and 2 threads and on the serial path, and for blocks 1, 3, 8 and 16.  Compared bit for bit
(the float64 bit patterns, so even the sign of a zero).
"""
from __future__ import annotations

import argparse

import numba
import numpy as np


def compute() -> dict:
    from cgdbench import problems
    from cgdbench.problems import conv
    p = problems.get("conv-autoencoder").create()
    x = p.x0("random", seed=0)
    out = {}
    rng = np.random.default_rng(0)
    batches = {"b64": np.sort(rng.choice(p.m, 64, replace=False)).astype(np.int64)}
    batches["b37"] = np.sort(np.random.default_rng(1).choice(p.m, 37, replace=False)).astype(np.int64)
    for block in (conv.DEFAULT_BLOCK, 1, 3, 16):
        arch = conv.parse_arch(None, p.arch.height, p.arch.width, block=block)
        for bname, rows in batches.items():
            if block != conv.DEFAULT_BLOCK and bname != "b64":
                continue
            for path, nt in (("parallel", 1), ("parallel", 2), ("serial", 1)):
                numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))
                g = np.empty(p.d)
                f = conv.conv_pass.path(path)(arch.Iv, p.F, 0.0, x, rows, rows.size, g, *conv.pass_buffers(arch))
                out[f"{bname}_block{block}_{path}_{nt}T_g"] = g
                out[f"{bname}_block{block}_{path}_{nt}T_f"] = np.array([f])
    rows = batches["b64"]
    for slots in (1, 3, 8):         # scratch rows (parallel slots): never a bit of difference
        for path, nt in (("parallel", 2), ("serial", 1)):
            numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))
            g = np.empty(p.d)
            f = conv.conv_pass.path(path)(p.Iv, p.F, 0.0, x, rows, rows.size, g,
                                          *conv.pass_buffers(p.arch, slots=slots))
            out[f"b64_slots{slots}_{path}_{nt}T_g"] = g
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    grp = ap.add_mutually_exclusive_group(required=True)
    grp.add_argument("--save")
    grp.add_argument("--check")
    ns = ap.parse_args(argv)
    res = compute()
    if ns.save:
        np.savez(ns.save, **res)
        print(f"saved {len(res)} arrays to {ns.save}")
        return 0
    ref = np.load(ns.check)
    bad = [k for k in ref.files if k not in res or not np.array_equal(ref[k].view(np.uint64), res[k].view(np.uint64))]
    same = [k for k in res if k.endswith("_g")]
    inner = [k for k in same if k.startswith("b64")
             and not np.array_equal(res[k].view(np.uint64), res[same[0]].view(np.uint64))]
    for k in bad:
        d = np.abs(ref[k] - res[k]) if k in res else None
        print(f"DIFFERS {k}: {np.count_nonzero(ref[k] != res[k]) if d is not None else 'missing'} entries, "
              f"max |diff| {d.max() if d is not None else '-'}")
    if inner:
        print("paths/blocks disagree among themselves:", inner)
    print("BIT-IDENTICAL" if not bad and not inner else "MISMATCH", f"({len(ref.files)} arrays)")
    return 1 if bad or inner else 0


if __name__ == "__main__":
    raise SystemExit(main())
