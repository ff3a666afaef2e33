"""asv: deterministic convergence metrics (fixed seeds): bits and iterations to ε², final values."""
from cgdbench import RunConfig, metrics, run

from ._common import DATA_DIR, DATASET

CELLS = {
    "det-cgd1.rand-1.diag-inv": dict(algorithm="det-cgd1", compressor="rand-1", stepsize="diag-inv"),
    "det-cgd2.rand-1.optimal": dict(algorithm="det-cgd2", compressor="rand-1", stepsize="optimal"),
    "dcgd.rand-1.scalar": dict(algorithm="dcgd", compressor="rand-1", stepsize="scalar"),
    "gd.identity.scalar": dict(algorithm="gd", compressor="identity", stepsize="scalar"),
}
EPS2 = 0.05


class Convergence:
    """a1a (or the synthetic default), λ = 0.1, 100 clients, K = 2000, seed 0; ε² = 0.05."""

    params = ([DATASET], list(CELLS))
    param_names = ["dataset", "method"]
    timeout = 300

    def setup_cache(self):
        out = {}
        for name, kw in CELLS.items():
            tr = run(RunConfig(dataset=None if DATASET == "synthetic-a1a" else DATASET, lam=0.1, clients=100,
                               iters=2000, seed=0, **kw), data_dir=DATA_DIR)
            out[name] = metrics.summary(tr, EPS2)
        return out

    # "never reached" is -1 in metrics.summary; asv gets NaN (shown as failed), not a negative value
    def track_bits_to_eps(self, cache, dataset, method):
        v = cache[method]["bits_to_eps"]
        return v if v >= 0 else float("nan")

    track_bits_to_eps.unit = "bits"

    def track_iterations_to_eps(self, cache, dataset, method):
        v = cache[method]["iterations_to_eps"]
        return v if v >= 0 else float("nan")

    track_iterations_to_eps.unit = "iterations"

    def track_final_G_KD(self, cache, dataset, method):
        return cache[method]["final_G_KD"]

    track_final_G_KD.unit = "G_{K,D}"

    def track_final_loss(self, cache, dataset, method):
        return cache[method]["final_loss"]

    track_final_loss.unit = "f(x^K)"
