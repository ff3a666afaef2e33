"""Per-iteration time of a fixed set of configurations (every det-CGD variant, DCGD, a block D,
EF-SGD), best of 5 runs of 300 iterations, as JSON: run it in this tree and in another commit's
worktree, alternating, to see a change side by side.

    git worktree add /tmp/old REV
    for i in 1 2; do
      (cd /tmp && PYTHONPATH=/tmp/old NUMBA_NUM_THREADS=1 python /work/main/benchmarks/configs_ab.py)
      (cd /tmp && PYTHONPATH=/work/main NUMBA_NUM_THREADS=1 python /work/main/benchmarks/configs_ab.py)
    done

Only ``RunConfig``/``build``/``run`` are used, so an older commit runs it unchanged.  a1a is found by
the data-directory rule (``CGDBENCH_DATA``).
"""
import json

from cgdbench import RunConfig, build, run

CASES = {
    "gd n100": dict(algorithm="gd", compressor="identity", stepsize="scalar", clients=100),
    "det-cgd2 n1 optimal": dict(algorithm="det-cgd2", compressor="rand-1", stepsize="optimal", clients=1),
    "det-cgd2 n100 optimal": dict(algorithm="det-cgd2", compressor="rand-1", stepsize="optimal", clients=100),
    "det-cgd2 n10 l-inv blocks": dict(algorithm="det-cgd2", compressor="block-rand-k:1", stepsize="l-inv",
                                      blocks="3", clients=10),
    "dcgd n100 rand-k:5": dict(algorithm="dcgd", compressor="rand-k:5", stepsize="scalar", clients=100),
    "det-cgd1 n100 bern-q": dict(algorithm="det-cgd1", compressor="bern-q:0.5", stepsize="diag-inv", blocks="3",
                                 clients=100),
    "ef-sgd lin-ae": dict(problem="linear-autoencoder", algorithm="ef-sgd", compressor="top-k:0.01"),
}


def main():
    out = {}
    for name, kw in CASES.items():
        cfg = RunConfig(**{"iters": 300, "dataset": None if "problem" in kw else "a1a", **kw})
        b = build(cfg)
        run(cfg, built=b)
        out[name] = min(run(cfg, built=b).meta["run_seconds"] for _ in range(5)) / cfg.iters * 1e6
    print(json.dumps(out))


if __name__ == "__main__":
    main()
