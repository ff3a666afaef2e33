"""Convergence metrics derived from a trace (used by benchmarks and the CI gate)."""
from __future__ import annotations

import numpy as np

from .errors import ConfigError


def running_G(trace) -> np.ndarray:
    """``G_{k,D} = (1/k) Σ_{j<k} ‖∇f(x^j)‖²_{D/det(D)^{1/d}}`` for k = 1..K (needs ``log_every = 1``)."""
    if trace.config.log_every != 1:
        raise ConfigError("running G_{k,D} needs every iterate: run with log_every = 1")
    v = trace.grad_norm_sq_D[: trace.iterations]
    return np.cumsum(v) / np.arange(1, v.size + 1)


def to_eps(trace, eps2: float) -> dict:
    """First k with G_{k,D} <= ε², and the uplink bits spent to get there (-1 if never)."""
    G = running_G(trace)
    hit = np.flatnonzero(G <= eps2)
    if hit.size == 0:
        return {"iterations_to_eps": -1, "bits_to_eps": -1}
    k = int(hit[0]) + 1  # G index j is G_{j+1}
    return {"iterations_to_eps": k, "bits_to_eps": int(trace.bits_up[k])}


def summary(trace, eps2: float) -> dict:
    """The deterministic numbers a benchmark or the gate tracks for one run."""
    return {**to_eps(trace, eps2), "final_G_KD": float(trace.G_KD), "final_loss": float(trace.loss[-1]),
            "final_grad_norm_sq": float(trace.grad_norm_sq[-1]), "bits_up": int(trace.bits_up[-1])}
