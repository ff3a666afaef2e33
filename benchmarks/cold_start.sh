#!/usr/bin/env bash
# Cold start of README command 1's comparison (`cgdbench compare --suite smoke`), each run with an empty
# cache, an older tree against this one, alternating:
#
#     git worktree add /tmp/old <commit>
#     benchmarks/cold_start.sh /tmp/old [REPS]          # REPS pairs (default 2)
#
# For a loaded figure, start `python3 -c 'while True: pass' &` first and kill it by its PID after.
set -uo pipefail
old=${1:?usage: benchmarks/cold_start.sh OLD_TREE [REPS]}
new=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
for rep in $(seq 1 "${2:-2}"); do
  for ver in old new; do
    tree=$old; [ "$ver" = new ] && tree=$new
    rm -rf "$work/cache" "$work/out.h5"
    t0=$(date +%s.%N)
    PYTHONPATH=$tree CGDBENCH_CACHE=$work/cache HOME=$work/home \
      python -m cgdbench compare --suite smoke --out "$work/out.h5" > "$work/$ver.out" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "$ver rep $rep rc $rc total $(echo "$t1 - $t0" | bc) s; $(sed -n 2p "$work/$ver.out" | grep -o 'in [0-9.]* s')"
  done
done
rm -rf "$work"
