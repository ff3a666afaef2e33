"""Convergence metrics derived from a trace (used by benchmarks and the CI gate)."""
from __future__ import annotations

import numpy as np

from .errors import ConfigError


def running_mean(v) -> np.ndarray:
    """``(1/k) Σ_{j<k} v_j`` for k = 1..len(v): G_{k,D} from the logged ‖∇f‖²_D (over the logged rows)."""
    v = np.asarray(v, dtype=float)
    return np.cumsum(v) / np.arange(1, v.size + 1)


def running_G(trace) -> np.ndarray:
    """``G_{k,D} = (1/k) Σ_{j<k} ‖∇f(x^j)‖²_{D/det(D)^{1/d}}`` for k = 1..K (needs ``log_every = 1``)."""
    if trace.config.log_every != 1:
        raise ConfigError("running G_{k,D} needs every iterate: run with log_every = 1")
    return running_mean(trace.grad_norm_sq_D[: trace.iterations])


def to_target(iteration, grad_norm_sq_D, bits_up, bits_down, eps2: float):
    """``(k, bits up, bits down)`` for the first logged row where the running mean of ‖∇f‖²_D is <= ε².

    With every iterate logged the running mean over rows 0..j is G_{j+1,D}, so k = j + 1
    iterations were run and the bits are those of row j + 1 (bits before iteration k's
    messages).  With sparser logging the mean is over the logged rows only.  ``(-1, -1, -1)``
    if never reached.
    """
    g = np.asarray(grad_norm_sq_D, dtype=float)
    hit = np.flatnonzero(running_mean(g) <= eps2) if g.size else []
    if len(hit) == 0:
        return -1, -1, -1
    j = int(hit[0])
    nxt = min(j + 1, len(bits_up) - 1)
    return int(iteration[j]) + 1, int(bits_up[nxt]), int(bits_down[nxt])


def to_eps(trace, eps2: float) -> dict:
    """First k with G_{k,D} <= ε², and the uplink bits spent to get there (-1 if never)."""
    running_G(trace)  # checks that every iterate was logged
    k, up, _ = to_target(trace.iteration[: trace.iterations + 1], trace.grad_norm_sq_D[: trace.iterations],
                         trace.bits_up, trace.bits_down, eps2)
    return {"iterations_to_eps": k, "bits_to_eps": up}


def summary(trace, eps2: float) -> dict:
    """The deterministic numbers a benchmark or the gate tracks for one run."""
    return {**to_eps(trace, eps2), "final_G_KD": float(trace.G_KD), "final_loss": float(trace.loss[-1]),
            "final_grad_norm_sq": float(trace.grad_norm_sq[-1]), "bits_up": int(trace.bits_up[-1])}
