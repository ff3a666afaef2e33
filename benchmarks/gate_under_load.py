"""The gate on a busy machine: N passes on unchanged code, then M runs with an injected 2x slowdown.

    python benchmarks/gate_under_load.py [--runs 10] [--slow-runs 3] [--hogs 1] [--data-dir DIR]

Starts ``--hogs`` competing CPU-bound processes (``python -c 'while True: pass'``), runs
``cgdbench gate`` ``--runs`` times (each must pass) and ``cgdbench gate --inject-slowdown 2``
``--slow-runs`` times (each must fail), kills the hogs by PID, and prints one line per run
and the totals.  Exit 0 when every run gave the expected verdict.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--slow-runs", type=int, default=3)
    ap.add_argument("--hogs", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ns = ap.parse_args(argv)
    gate = [sys.executable, "-m", "cgdbench.cli", "gate"] + (["--data-dir", ns.data_dir] if ns.data_dir else [])
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(ns.hogs)]
    good = 0
    try:
        time.sleep(0.5)
        for label, extra, want, n in (("unchanged", [], 0, ns.runs), ("2x slower", ["--inject-slowdown", "2"], 1,
                                                                        ns.slow_runs)):
            for i in range(n):
                r = subprocess.run(gate + extra, capture_output=True, text=True)
                ratios = re.findall(r"gate: (\S+): .*speed-up ([0-9.]+)x", r.stdout)
                ok = r.returncode == want
                good += ok
                print(f"{label} {i + 1}: exit {r.returncode} ({'as expected' if ok else 'UNEXPECTED'}); "
                      + ", ".join(f"{k} {v}x" for k, v in ratios), flush=True)
                if r.returncode not in (0, 1):
                    print(r.stdout + r.stderr, file=sys.stderr)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    total = ns.runs + ns.slow_runs
    print(f"{good} of {total} runs gave the expected verdict with {ns.hogs} competing process(es)")
    return 0 if good == total else 1


if __name__ == "__main__":
    sys.exit(main())
