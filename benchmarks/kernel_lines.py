"""Where the det-CGD kernel spends its time, by source line: perf samples mapped through the kernel's object code.

    python benchmarks/kernel_lines.py [--dataset a1a] [--clients 100] [--log-every 1] [--metrics every]
                                      [--iters 40000] [--top 40]

``perf`` cannot name the lines of Numba's JIT code.  This script runs the kernel's serial path (one
thread) compiled with debug lines into a fresh cache, keeps the compiled object and its address in the
process, records the process with ``perf record``, and maps each sample inside the kernel to the source
line ``objdump -dl`` gives for its instruction.  Numba's IR inlining keeps an inlined helper's line
numbers but not its file: every line is listed under ``det_cgd.py``, and the one of an inlined helper
(``row_dots``, ``link_row``, ... in ``problems/logreg.py``) may fall inside ``det_cgd_chunk``'s own range,
so each line is printed with its text in both files: read off which it is.  ``NUMBA_DEBUGINFO`` keeps
variables alive longer (reference counts move), so the profiled code is close to, not exactly, the
production kernel.  Printed: the share of the kernel's
samples per line, and the kernel's samples against all those of the timed run (the rest: libm's exp and
log, the engine's Python between chunks).  A sample lands on the instruction after a
slow one now and then, so read neighbouring lines together.  Needs ``perf`` and ``objdump``.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: perf's sampling frequency (Hz)
FREQ = 4000


def _child(ns, out: Path) -> None:
    """Under perf: compile and run the job, writing the kernel's object and address for the parent."""
    from cgdbench import RunConfig, run
    from cgdbench.algorithms import det_cgd
    cfg = dict(dataset=ns.dataset, clients=ns.clients, algorithm="det-cgd1", compressor="rand-1",
               stepsize="diag-inv", log_every=ns.log_every, metrics=ns.metrics)
    run(RunConfig(iters=50, **cfg))  # compiles (debug lines, fresh cache)
    for cres in det_cgd.det_cgd_chunk.serial.overloads.values():
        name = cres.fndesc.llvm_func_name
        (out / "kernel.o").write_bytes(cres.library._get_compiled_object())
        (out / "kernel.txt").write_text(f"{name} {cres.library.get_pointer_to_function(name)}\n")
    r = run(RunConfig(iters=ns.iters, **cfg))
    (out / "seconds.txt").write_text(str(r.meta["run_seconds"]))
    print(f"{1e6 * r.meta['run_seconds'] / ns.iters:.1f} µs/iteration (serial path, 1 thread, perf running)")


def _attribute(out: Path, top: int) -> None:
    name, addr = (out / "kernel.txt").read_text().split()
    syms = subprocess.run(["nm", "-S", str(out / "kernel.o")], capture_output=True, text=True, check=True).stdout
    offset = next(int(p[0], 16) for p in map(str.split, syms.splitlines()) if p and p[-1] == name)
    base = int(addr) - offset
    ips = subprocess.run(["perf", "script", "-i", str(out / "perf.data"), "-F", "ip"], capture_output=True,
                         text=True, check=True).stdout.split()
    dump = subprocess.run(["objdump", "-dl", "--no-show-raw-insn", str(out / "kernel.o")], capture_output=True,
                          text=True, check=True).stdout
    line_of, where = {}, "?"
    for text in dump.splitlines():
        m = re.match(r"^(/\S+):(\d+)", text)
        if m:
            where = f"{Path(m.group(1)).name}:{m.group(2)}"
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s", text)
        if m:
            line_of[int(m.group(1), 16)] = where
    offs = sorted(line_of)
    size = offs[-1] + 16 if offs else 0
    hits = collections.Counter()
    for ip in ips:
        o = int(ip, 16) - base
        if 0 <= o < size:
            i = bisect.bisect_right(offs, o) - 1
            hits[line_of[offs[i]] if i >= 0 else "?"] += 1
    n = sum(hits.values())
    expected = float((out / "seconds.txt").read_text()) * FREQ
    print(f"{n} samples in the kernel's object code, {100 * n / expected:.0f}% of the timed run's ~{expected:.0f} "
          "(the rest: libm's exp and log, Python between chunks)")
    pkg = Path(__file__).resolve().parent.parent / "cgdbench"
    texts = {f: (pkg / rel).read_text().splitlines() for f, rel in
             (("det_cgd.py", "algorithms/det_cgd.py"), ("logreg.py", "problems/logreg.py"))}
    for where, c in hits.most_common(top):
        no = int(where.rpartition(":")[2]) if where[-1].isdigit() else 0
        both = "  |  ".join(f"{f}: {t[no - 1].strip()[:50]}" for f, t in texts.items() if 0 < no <= len(t))
        print(f"{100 * c / n:6.2f}%  {where:<16} {both}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="a1a")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--metrics", default="every", choices=("every", "logged"))
    ap.add_argument("--iters", type=int, default=40000)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        return _child(ns, Path(ns.child))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        env = {**os.environ, "NUMBA_DEBUGINFO": "1", "NUMBA_CACHE_DIR": str(out / "numba"), "NUMBA_NUM_THREADS": "1",
               "CGDBENCH_PATH": "serial"}
        args = [a for a in (argv if argv is not None else sys.argv[1:])]
        subprocess.run(["perf", "record", "-q", "-F", str(FREQ), "-o", str(out / "perf.data"), sys.executable,
                        __file__, *args, "--child", str(out)], env=env, check=True)
        _attribute(out, ns.top)


if __name__ == "__main__":
    main()
