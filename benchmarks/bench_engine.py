"""asv benchmarks of the core engine (issue 5 extends this suite).

Data: a1a when $CGDBENCH_DATA (or ../shared/datasets) holds it, else the bundled
synthetic default; ``DATASET`` says which.  JIT compilation happens in ``setup``.
"""
import os
from pathlib import Path

from cgdbench import RunConfig, build, run


def _data_dir():
    for cand in (os.environ.get("CGDBENCH_DATA"), Path(__file__).resolve().parents[2] / "shared" / "datasets"):
        if cand and (Path(cand) / "a1a").is_file():
            return str(cand)
    return None


DATA_DIR = _data_dir()
DATASET = "a1a" if DATA_DIR else None


class DetCGDIteration:
    """Per-iteration time of each algorithm, 100 clients (papers' distributed setting)."""

    params = (["gd", "det-cgd1", "det-cgd2", "dcgd"],)
    param_names = ["algorithm"]
    timeout = 300

    def setup(self, algorithm):
        comp = "identity" if algorithm == "gd" else "rand-1"
        step = "scalar" if algorithm == "dcgd" else ("optimal" if algorithm == "det-cgd2" else "diag-inv")
        self.cfg = RunConfig(dataset=DATASET, lam=0.1, clients=100, algorithm=algorithm, compressor=comp,
                             stepsize=step, iters=500)
        self.built = build(self.cfg, data_dir=DATA_DIR)
        run(RunConfig(**{**self.cfg.to_dict(), "iters": 1}), data_dir=DATA_DIR)  # compile

    def time_500_iterations(self, algorithm):
        run(self.cfg, built=self.built)


class DistributedMemory:
    """Peak memory of a 1000-client run: aggregation buffers must not grow like n·d."""

    timeout = 300

    def setup(self):
        self.cfg = RunConfig(dataset=DATASET, lam=0.1, clients=1000, compressor="rand-1", iters=50)
        run(RunConfig(**{**self.cfg.to_dict(), "iters": 1}), data_dir=DATA_DIR)

    def peakmem_1000_clients(self):
        run(self.cfg, data_dir=DATA_DIR)


class Convergence:
    """Deterministic convergence metrics (fixed seed)."""

    def setup(self):
        cfg = RunConfig(dataset=DATASET, lam=0.1, clients=100, compressor="rand-1", stepsize="diag-inv",
                        iters=2000, seed=0)
        self.trace = run(cfg, data_dir=DATA_DIR)

    def track_G_KD(self):
        return self.trace.G_KD

    track_G_KD.unit = "G_{K,D}"

    def track_bits_up(self):
        return int(self.trace.bits_up[-1])

    track_bits_up.unit = "bits"
