"""Registry of sketches/compressors: ``NAME[:PARAMS]`` -> bound object.

``parse`` checks the name and the syntax of the parameters (no data needed);
``make`` binds a spec to a problem's dimension, block partition and smoothness
diagonal (for importance sampling), which is when range errors such as
``k > d`` are raised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._registry import split_spec
from ..errors import ConfigError
from .sketches import (INDEX_MODES, BernQ, BlockRandK, Identity, ImportanceRand1, RandK,
                       Sketch, sample_sketch)

__all__ = ["Sketch", "Identity", "RandK", "ImportanceRand1", "BlockRandK", "BernQ",
           "REGISTRY", "INDEX_MODES", "parse", "make", "describe", "sample_sketch"]


@dataclass(frozen=True)
class Entry:
    name: str
    params: str          # how parameters are written, "" when there are none
    params_required: bool
    doc: str


REGISTRY = {
    "identity": Entry("identity", "", False, "S = I (no compression)."),
    "rand-k": Entry("rand-k", "K", True,
                    "K uniform coordinates scaled by d/K; K an integer in [1, d] or a fraction in (0, 1)."),
    "rand-1": Entry("rand-1", "", False, "rand-k with K = 1."),
    "importance-rand-1": Entry("importance-rand-1", "[FILE]", False,
                               "one coordinate j with probability p_j, scaled 1/p_j; p ∝ diag(L) "
                               "unless FILE (.npy or text, d probabilities) is given."),
    "block-rand-k": Entry("block-rand-k", "K[,K2,...]", True,
                          "rand-K inside every block of the partition (one K, or one per block)."),
    "bern-q": Entry("bern-q", "Q[,Q2,...]", True,
                    "each block kept with probability Q (one, or one per block) and scaled 1/Q."),
}
ALIASES = {"rand1": "rand-1", "randk": "rand-k", "none": "identity", "bernoulli": "bern-q",
           "importance": "importance-rand-1"}


def parse(spec: str) -> tuple[str, str]:
    """Split ``NAME[:PARAMS]`` and check the name; returns ``(canonical name, params)``."""
    name, params = split_spec("compressor", spec, REGISTRY, ALIASES)
    entry = REGISTRY[name]
    if entry.params_required and not params:
        raise ConfigError(f"compressor {name!r} needs a parameter: write {name}:{entry.params}")
    if not entry.params and params:
        raise ConfigError(f"compressor {name!r} takes no parameter, got {spec!r}")
    # syntax check now, range check in make()
    if name in ("rand-k", "block-rand-k", "bern-q"):
        _numbers(name, params)
    return name, params


def _numbers(name: str, params: str) -> list[float]:
    out = []
    for tok in params.split(","):
        try:
            out.append(float(tok))
        except ValueError:
            raise ConfigError(f"compressor {name!r}: parameter {tok!r} is not a number") from None
    return out


def _count(name: str, value: float, d: int) -> int:
    """An integer count, or a fraction of ``d`` in (0, 1)."""
    if 0 < value < 1:
        return max(1, int(round(value * d)))
    if value != int(value):
        raise ConfigError(f"{name}: k = {value:g} must be an integer in [1, {d}] or a fraction in (0, 1)")
    return int(value)


def make(spec: str, d: int, block_ptr=None, L_diag=None) -> Sketch:
    """Bind ``spec`` to dimension ``d`` and partition ``block_ptr`` (default: one block)."""
    name, params = parse(spec)
    block_ptr = np.asarray([0, d] if block_ptr is None else block_ptr, dtype=np.int64)
    if name == "identity":
        return Identity(d, block_ptr)
    if name in ("rand-k", "rand-1"):
        k = 1 if name == "rand-1" else _count("rand-k", _numbers(name, params)[0], d)
        if len(params.split(",")) > 1:
            raise ConfigError(f"rand-k takes one value of k, got {params!r}")
        return RandK(d, block_ptr, k)
    if name == "importance-rand-1":
        if params:
            path = Path(params)
            if not path.is_file():
                raise ConfigError(f"importance-rand-1: probability file {params!r} does not exist")
            p = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        else:
            if L_diag is None:
                raise ConfigError("importance-rand-1 without a probability file needs diag(L)")
            L_diag = np.asarray(L_diag, dtype=float)
            if np.any(L_diag <= 0):
                raise ConfigError("importance-rand-1: diag(L) has non-positive entries; "
                                  "give probabilities explicitly")
            p = L_diag / L_diag.sum()
        return ImportanceRand1(d, block_ptr, p)
    if name == "block-rand-k":
        sizes = np.diff(block_ptr)
        vals = _numbers(name, params)
        ks = [_count("block-rand-k", v, int(sizes[min(i, len(sizes) - 1)])) for i, v in enumerate(vals)]
        return BlockRandK(d, block_ptr, tuple(ks))
    if name == "bern-q":
        return BernQ(d, block_ptr, tuple(_numbers(name, params)))
    raise AssertionError(name)  # parse() only returns registered names


def describe() -> list[tuple[str, str]]:
    return [(e.name + (":" + e.params if e.params else ""), e.doc) for e in REGISTRY.values()]
