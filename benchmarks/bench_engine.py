"""asv: per-iteration cost of every algorithm, memory with many clients, JIT compile time.

Data: a1a when the data-directory rule finds it, else the bundled synthetic default;
the ``dataset`` parameter records which.  Compilation happens in ``setup`` (the kernels
are cached on disk), never inside ``time_``.  One Numba thread unless NUMBA_NUM_THREADS
is set (``benchmarks/__init__.py``).  (A per-iteration ``track_`` was dropped: a timing
reported as a track has no samples, so asv flagged its noise as a change.)
"""
from cgdbench import RunConfig, algorithms, build, run

from ._common import DATA_DIR, DATASET

ALGORITHMS = {
    "gd": dict(compressor="identity", stepsize="scalar"),
    "det-cgd1": dict(compressor="rand-1", stepsize="diag-inv"),
    "det-cgd2": dict(compressor="rand-1", stepsize="optimal"),
    "dcgd": dict(compressor="rand-1", stepsize="scalar"),
    # the baselines with one coordinate per message, as det-CGD1's rand-1 (benchmarks/baselines_a1a.py)
    "ef21": dict(compressor="top-k:1", stepsize="ef21"),
    "diana": dict(compressor="rand-k:1", stepsize="diana"),
    "marina": dict(compressor="rand-k:1", stepsize="marina"),
    "det-marina": dict(compressor="rand-1", stepsize="det-marina"),
}
# every other full-gradient algorithm registered (one added later, say) at its own default compressor and stepsize
ALGORITHMS.update({a: {} for a in algorithms.REGISTRY.names(oracle="full") if a not in ALGORITHMS})


class Iteration:
    """Seconds per iteration, 100 clients (the papers' distributed setting)."""

    params = ([DATASET], list(ALGORITHMS), [1, 100])
    param_names = ["dataset", "algorithm", "clients"]
    timeout = 300
    iters = 200

    def setup(self, dataset, algorithm, clients):
        self.cfg = RunConfig(dataset=None if dataset == "synthetic-a1a" else dataset, lam=0.1, clients=clients,
                             algorithm=algorithm, iters=self.iters, **ALGORITHMS[algorithm])
        self.built = build(self.cfg, data_dir=DATA_DIR)
        run(self.cfg, built=self.built)  # compile / load the cache

    def time_200_iterations(self, dataset, algorithm, clients):
        run(self.cfg, built=self.built)


class JaxPeer:
    """The JAX implementation of ``benchmarks/peers.py`` (det-CGD1 rand-1, metrics every iteration, a1a,
    100 clients), timed like :class:`Iteration` so the engine's lead over it is tracked too.  Skipped
    (asv: "n/a") when JAX is not installed."""

    params = ([DATASET], ["float64", "float32"])
    param_names = ["dataset", "precision"]
    timeout = 300
    iters = 200

    def setup(self, dataset, precision):
        try:
            import jax  # noqa: F401
        except ImportError:
            raise NotImplementedError("JAX is not installed") from None
        from .peers import jax_det_cgd1
        cfg = RunConfig(dataset=None if dataset == "synthetic-a1a" else dataset, lam=0.1, clients=100,
                        algorithm="det-cgd1", compressor="rand-1", stepsize="diag-inv", iters=self.iters)
        b = build(cfg, data_dir=DATA_DIR)
        import numpy as np
        self.call = jax_det_cgd1(b.problem, np.diag(b.D.dense()), b.D.det_root(), b.x0, precision)
        self.call(self.iters)  # compile

    def time_200_iterations(self, dataset, precision):
        self.call(self.iters)


class Memory:
    """Peak memory of a 1000-client run: aggregation buffers are O(16·d), not O(n·d)."""

    params = ([DATASET], [10, 1000])
    param_names = ["dataset", "clients"]
    timeout = 300

    def setup(self, dataset, clients):
        self.cfg = RunConfig(dataset=None if dataset == "synthetic-a1a" else dataset, lam=0.1, clients=clients,
                             compressor="rand-1", iters=50)
        run(self.cfg, data_dir=DATA_DIR)

    def peakmem_run(self, dataset, clients):
        run(self.cfg, data_dir=DATA_DIR)


def timeraw_cold_compile():
    """Import + build + compile with an empty Numba cache, in a fresh interpreter."""
    return """
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()
from cgdbench import RunConfig, run
run(RunConfig(clients=4, iters=1))
"""


timeraw_cold_compile.timeout = 300
