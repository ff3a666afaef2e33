"""RunConfig: the one place that validates what a user asks for.

Everything here is checked without touching data; checks that need the data
(k > d, more clients than rows, a missing file) happen when the engine builds
the run, still before anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from . import algorithms, compressors, problems, stepsizes
from .errors import ConfigError, choices_error

X0_CHOICES = ("ones-over-sqrt-d", "zeros")
VALUE_BITS = (32, 64)
DOWNLINK = ("per-client", "once", "none")
MAX_SEED = 2**63 - 1


def _int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"--{name} {value!r}: must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"--{name} {value}: must be {allowed}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """One run: problem + data + algorithm + compressor + stepsize + budget.

    Names are canonicalised (aliases resolved) on construction.
    """

    problem: str = "logreg-nonconvex"
    dataset: str | None = None          # manifest name, path, or None for the synthetic default
    lam: float = 0.1
    clients: int = 1
    split: str = "contiguous"
    split_seed: int = 0
    blocks: str | None = None           # None: one block; "3": three equal blocks; "40,40,43": sizes
    x0: str = "ones-over-sqrt-d"
    algorithm: str = "det-cgd1"
    compressor: str = "rand-1"
    stepsize: str = "diag-inv"
    iters: int = 1000
    seed: int = 0
    log_every: int = 1
    value_bits: int = 32
    index_mode: str = "explicit"
    downlink: str = "per-client"

    def __post_init__(self):
        s = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        s("problem", problems.canonical(self.problem))
        algo = algorithms.get(self.algorithm)
        s("algorithm", algo.name)
        name, params = compressors.parse(self.compressor)
        s("compressor", name + (":" + params if params else ""))
        sname, gamma = stepsizes.parse(self.stepsize)
        s("stepsize", sname + (":" + self.stepsize.partition(":")[2] if gamma is not None else ""))
        algo.check(self.compressor, self.stepsize)
        try:
            lam = float(self.lam)
        except (TypeError, ValueError):
            raise ConfigError(f"--lam {self.lam!r}: λ must be a number >= 0") from None
        if not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"--lam {self.lam!r}: λ must be a finite number >= 0")
        s("lam", lam)
        s("clients", _int("clients", self.clients, 1))
        s("iters", _int("iters", self.iters, 1))
        s("seed", _int("seed", self.seed, 0, MAX_SEED))
        s("split_seed", _int("split-seed", self.split_seed, 0, MAX_SEED))
        s("log_every", _int("log-every", self.log_every, 1))
        if self.split not in problems.SPLITS:
            raise choices_error("split", self.split, problems.SPLITS)
        if self.x0 not in X0_CHOICES:
            raise choices_error("x0", self.x0, X0_CHOICES)
        if self.value_bits not in VALUE_BITS:
            raise choices_error("value width (--value-bits)", self.value_bits, VALUE_BITS)
        if self.index_mode not in compressors.INDEX_MODES:
            raise choices_error("index mode", self.index_mode, compressors.INDEX_MODES)
        if self.downlink not in DOWNLINK:
            raise choices_error("downlink model", self.downlink, DOWNLINK)
        if self.dataset is not None:
            s("dataset", str(self.dataset))
        if self.blocks is not None:
            s("blocks", str(self.blocks))

    @property
    def family(self) -> str:
        return algorithms.get(self.algorithm).family

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)
