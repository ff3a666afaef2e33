"""Compressor throughput at d = 10⁶ and 10⁷: jitted encode vs NumPy equivalents, side by side.

    python benchmarks/compressor_throughput.py [--sizes 1000000,10000000] [--repeats 5] [--json FILE]

For each compressor the message a worker would send is produced from a float64
vector (Gaussian, seeded): best-of-``repeats`` seconds, GB/s of input read
(8·d bytes / time), ns per coordinate, and the same for a NumPy equivalent
(np.argpartition for top-k).  The machine's read bandwidth is measured in the
same run (np.sum over the same array, best of ``repeats``), so "fraction of
read bandwidth" compares numbers taken minutes apart on the same machine.
Compile time is excluded (one warm-up call first).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cgdbench import compressors
from cgdbench.compressors.vector import encode_loop
from cgdbench.reference import compressor_equivalents


def best(fn, repeats):
    fn()
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def measure(d, repeats, fraction=0.001):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(d)
    k = max(1, int(d * fraction))
    read = best(lambda: v.sum(), repeats)
    rows = []
    np_eq = compressor_equivalents(d, k, np.random.default_rng(1))
    specs = {"top-k": f"top-k:{k}", "rand-k": f"rand-k:{k}", "sign": "sign", "qsgd:4": "qsgd:4",
             "natural": "natural", "sketch-top-k": f"sketch-top-k:{k}"}
    for name, spec in specs.items():
        comp = compressors.make_vector(spec, d)
        bufs = comp.buffers()
        args = comp.kernel_args()
        t_jit = best(lambda: encode_loop(*args, np.uint64(7), v, 1, *bufs), repeats)
        t_np = best(lambda: np_eq[name](v), repeats)
        rows.append({"d": d, "compressor": spec, "k": k if "k" in name else None,
                     "jit_seconds": t_jit, "numpy_seconds": t_np, "speedup_vs_numpy": t_np / t_jit,
                     "jit_GBps": 8 * d / t_jit / 1e9, "numpy_GBps": 8 * d / t_np / 1e9,
                     "jit_ns_per_coord": 1e9 * t_jit / d, "read_GBps": 8 * d / read / 1e9,
                     "fraction_of_read_bandwidth": read / t_jit})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    ns = ap.parse_args(argv)
    all_rows = []
    for d in (int(s) for s in ns.sizes.split(",")):
        rows = measure(d, ns.repeats)
        all_rows += rows
        print(f"d = {d:.0e}: read bandwidth (np.sum) {rows[0]['read_GBps']:.1f} GB/s; k = 0.1% of d")
        print(f"  {'compressor':<22} {'jit ms':>8} {'GB/s':>6} {'ns/coord':>9} {'of read BW':>10} "
              f"{'numpy ms':>9} {'jit vs numpy':>12}")
        for r in rows:
            print(f"  {r['compressor']:<22} {1e3 * r['jit_seconds']:>8.2f} {r['jit_GBps']:>6.1f} "
                  f"{r['jit_ns_per_coord']:>9.2f} {r['fraction_of_read_bandwidth']:>10.0%} "
                  f"{1e3 * r['numpy_seconds']:>9.2f} {r['speedup_vs_numpy']:>11.1f}x")
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(all_rows, fh, indent=1)


if __name__ == "__main__":
    main()
