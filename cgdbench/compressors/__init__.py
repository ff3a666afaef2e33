"""Registry of sketches and compressors: ``NAME[:PARAMS]`` -> bound object.

Two kinds share one namespace.  *Sketches* (``sketches.py``) are the random
diagonal matrices S with E[S] = I that det-CGD and DCGD multiply gradients by;
*vector compressors* (``vector.py``) are the maps C(x) compressed SGD and error
feedback send.  identity, rand-k and rand-1 are both; ``Entry.uses`` says which
algorithms take each name.

``parse`` checks the name and the syntax of the parameters (no data needed);
``make`` / ``make_vector`` bind a spec to a problem's dimension (and, for
sketches, block partition and smoothness diagonal), which is when range errors
such as ``k > d`` are raised.
"""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from .._registry import Registry, alias_note
from ..errors import ConfigError, IncompatibleError
from .sketches import (INDEX_MODES, BernQ, BlockRandK, Identity, ImportanceRand1, RandK,
                       Sketch, sample_sketch)
from . import vector as _vec
from .vector import Compressor, measure, parse_k, qsgd_levels

__all__ = ["Sketch", "Identity", "RandK", "ImportanceRand1", "BlockRandK", "BernQ", "Compressor",
           "REGISTRY", "INDEX_MODES", "parse", "make", "make_vector", "measure", "describe", "sample_sketch"]

SKETCH, VECTOR = "sketch", "vector"


#: traits: ``params_required``; ``uses`` — SKETCH (det-CGD, DCGD, GD, det-MARINA) and/or VECTOR (the
#: vector-compressor methods), the kinds it has a factory for; ``unbiased`` — as a vector compressor, E C(x) = x
#: (DIANA and MARINA need it); ``stated_mu`` — its contraction μ is known in closed form (EF21's stepsize needs
#: it; sketch-top-k's is data dependent); ``check(name, tokens, values)`` — the syntax and the ranges that need
#: no data; ``sketch(params, d, block_ptr, L_diag)`` and ``vector(tokens, d)`` — the factories; ``fraction`` —
#: its (first) parameter may be a fraction of the coordinates or a probability (a legend adds it as a percentage)
REGISTRY = Registry("compressor")


# --- checks of the parameters that need no data (a sweep refuses a bad cell before it runs anything) ----------
def _one_k(name, toks, vals):
    parse_k(name, toks[0], None)


def _every_k(name, toks, vals):
    for t in toks:
        parse_k(name, t, None)


def _qs(name, toks, vals):
    for q in vals:
        if not 0.0 < q <= 1.0:
            raise ConfigError(f"bern-q: q = {q:g} is out of range; need 0 < q <= 1")


def _levels(name, toks, vals):
    qsgd_levels(vals[0])


# --- sketch factories: (params, d, block_ptr, diag(L) or None) -> Sketch --------------------------------------
def _identity(params, d, block_ptr, L_diag):
    return Identity(d, block_ptr)


def _rand_k(params, d, block_ptr, L_diag):
    return RandK(d, block_ptr, parse_k("rand-k", params.strip(), d))


def _rand_1(params, d, block_ptr, L_diag):
    return RandK(d, block_ptr, 1)


def _importance(params, d, block_ptr, L_diag):
    if params:
        path = Path(params)
        if not path.is_file():
            raise ConfigError(f"importance-rand-1: probability file {params!r} does not exist")
        try:
            p = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path)
        except Exception as exc:  # binary junk, a pickled array, text that is not numbers
            raise ConfigError(f"importance-rand-1: cannot read probabilities from {params!r} "
                              f"({type(exc).__name__}: {str(exc)[:120]}); give a .npy array or a text file "
                              "of d numbers") from None
    else:
        if L_diag is None:
            raise ConfigError("importance-rand-1 without a probability file needs diag(L)")
        L_diag = np.asarray(L_diag, dtype=float)
        if np.any(L_diag <= 0):
            raise ConfigError("importance-rand-1: diag(L) has non-positive entries; "
                              "give probabilities explicitly")
        p = L_diag / L_diag.sum()
    return ImportanceRand1(d, block_ptr, p)


def _block_rand_k(params, d, block_ptr, L_diag):
    sizes = np.diff(block_ptr)
    toks = [t.strip() for t in params.split(",")]
    ks = [parse_k(f"block-rand-k (block {i} of size {sizes[min(i, len(sizes) - 1)]})", t,
                  int(sizes[min(i, len(sizes) - 1)])) for i, t in enumerate(toks)]
    return BlockRandK(d, block_ptr, tuple(ks))


def _bern_q(params, d, block_ptr, L_diag):
    return BernQ(d, block_ptr, tuple(_numbers("bern-q", params)))


def _entry(name, params, required, doc, sketch=None, vector=None, unbiased=False, aliases=(), stated_mu=True,
           check=None):
    uses = tuple(kind for kind, f in ((SKETCH, sketch), (VECTOR, vector)) if f is not None)
    REGISTRY.register(name, aliases=aliases, params=params, doc=doc, params_required=required, uses=uses,
                      unbiased=unbiased, stated_mu=stated_mu, check=check, sketch=sketch, vector=vector,
                      fraction=check in (_one_k, _every_k, _qs))(None)


_entry("identity", "", False, "S = I (no compression).", _identity, _vec.identity, True, aliases=("none",))
_entry("rand-k", "K", True, "unbiased: K uniform coordinates scaled by d/K (ω = d/K − 1); K an integer in [1, d] or "
       "a fraction in (0, 1] such as 0.001. Error feedback applies it as C/(1+ω) = unscaled RandomK.",
       _rand_k, _vec.rand_k, True, aliases=("randk", "rand-k-unbiased"), check=_one_k)
_entry("rand-1", "", False, "rand-k with K = 1.", _rand_1, _vec.rand_1, True, aliases=("rand1",))
_entry("importance-rand-1", "[FILE]", False, "one coordinate j with probability p_j, scaled 1/p_j; p ∝ diag(L) "
       "unless FILE (.npy or text, d probabilities) is given.", _importance, aliases=("importance",))
_entry("block-rand-k", "K[,K2,...]", True, "rand-K inside every block of the partition (one K, or one per block).",
       _block_rand_k, check=_every_k)
_entry("bern-q", "Q[,Q2,...]", True, "each block kept with probability Q (one, or one per block) and scaled 1/Q.",
       _bern_q, aliases=("bernoulli",), check=_qs)
_entry("rand-k-unscaled", "K", True, "contractive (biased): K uniform coordinates, unscaled — the paper's RandomK, "
       "μ = K/d exactly.", vector=_vec.rand_k_unscaled, aliases=("randomk", "rand-k-contractive"), check=_one_k)
_entry("top-k", "K", True, "contractive (biased): the K largest |x_j| (ties to the lower index), μ >= K/d; O(d) "
       "selection.", vector=_vec.top_k, aliases=("topk",), check=_one_k)
_entry("sign", "", False, "contractive (biased): (‖x‖₁/d)·sign(x), μ = ‖x‖₁²/(d‖x‖²) >= 1/d; d bits + one scale.",
       vector=_vec.sign, aliases=("scaled-sign",))
_entry("qsgd", "S", True, "unbiased: QSGD with S levels (Alistarh et al. 2017), ω <= min(d/S², √d/S).",
       vector=_vec.qsgd, unbiased=True, check=_levels)
_entry("natural", "", False, "unbiased: stochastic rounding to powers of two (Horváth et al. 2019), ω <= 1/8; "
       "sign + exponent per coordinate.", vector=_vec.natural, unbiased=True)
_entry("sketch-top-k", "K[,ROWS,COLS]", True, "biased: count sketch (ROWS×COLS, default 5×max(10K, 64)) → 2K "
       "candidates, whose exact values a second round sends; the K largest are kept (Ivkin et al. 2019).",
       vector=_vec.sketch_top_k, aliases=("count-sketch", "sketched-top-k"), stated_mu=False, check=_one_k)


def parse(spec: str, contract: str | None = None) -> tuple[str, str]:
    """Split ``NAME[:PARAMS]`` and check the name; returns ``(canonical name, params)``.  ``contract`` (an
    algorithm's, see :data:`_CONTRACT`): an unknown name lists only the compressors that algorithm takes."""
    if contract is not None and isinstance(spec, str):
        key = spec.strip().partition(":")[0].lower()
        if REGISTRY.aliases.get(key, key) not in REGISTRY.entries:
            kind, ok = _CONTRACT[contract]
            names = [e.name + (":" + e.params if e.params else "") for e in REGISTRY.values() if ok(e)]
            raise ConfigError(f"unknown compressor {spec!r}; this algorithm takes {kind}: choose one of: "
                              + ", ".join(names))
    name, params = REGISTRY.split(spec)
    entry = REGISTRY[name]
    if entry.params_required and not params:
        raise ConfigError(f"compressor {name!r} needs a parameter: write {name}:{entry.params}")
    if not entry.params and params:
        raise ConfigError(f"compressor {name!r} takes no parameter, got {spec!r}")
    # syntax, and the ranges that need no data, now; k <= d and the block sizes when it is bound
    if entry.check is not None:
        vals = _numbers(name, params)
        toks = [t.strip() for t in params.split(",")]
        counts = _arity(entry.params)
        if counts is not None and len(toks) not in counts:
            raise ConfigError(f"compressor {name!r} takes {entry.params} ({_count_text(counts)}), "
                              f"got {len(toks)}: {spec!r}")
        entry.check(name, toks, vals)
    return name, params


def _count_text(counts: set[int]) -> str:
    lo, hi = min(counts), max(counts)
    return f"{lo} value" + ("s" if lo > 1 else "") if lo == hi else f"{lo} to {hi} values"


def _arity(syntax: str) -> set[int] | None:
    """How many comma-separated values a parameter syntax such as ``K[,ROWS,COLS]`` allows (None: any)."""
    if "..." in syntax:
        return None
    head, _, opt = syntax.partition("[")
    n = len([t for t in head.split(",") if t])
    return set(range(n, n + len([t for t in opt.rstrip("]").split(",") if t]) + 1))  # trailing ones optional


#: what each algorithm contract (cgdbench.algorithms.CONTRACTS) accepts, and how it is said
_CONTRACT = {"sketch": ("an unbiased diagonal sketch S", lambda e: SKETCH in e.uses),
             "vector": ("a vector compressor C(x)", lambda e: VECTOR in e.uses),
             "contractive": ("a contractive compressor C(x) with a stated contraction (an unbiased one is "
                             "applied as C/(1+ω))", lambda e: VECTOR in e.uses and e.stated_mu),
             "unbiased": ("an unbiased compressor (E C(x) = x)", lambda e: VECTOR in e.uses and e.unbiased)}


def check_contract(spec: str, contract: str, algorithm: str) -> None:
    """Reject a compressor outside an algorithm's contract, naming the allowed ones."""
    name, _ = parse(spec)
    kind, ok = _CONTRACT[contract]
    if not ok(REGISTRY[name]):
        allowed = REGISTRY.select(ok)
        raise IncompatibleError(f"algorithm {algorithm!r} needs {kind}; {name!r} is not one. "
                                f"Choose one of: {', '.join(allowed)}")


def make_vector(spec: str, d: int) -> Compressor:
    """Bind ``spec`` to dimension ``d`` as a vector compressor C(x)."""
    name, params = parse(spec)
    entry = REGISTRY[name]
    if entry.vector is None:
        raise ConfigError(f"{name!r} is a diagonal sketch, not a vector compressor; the vector-compressor methods "
                          "take: " + ", ".join(vector_names()))
    return entry.vector([t.strip() for t in params.split(",")] if params else [], d)


def vector_names() -> list[str]:
    return REGISTRY.select(lambda e: VECTOR in e.uses)


def _numbers(name: str, params: str) -> list[float]:
    out = []
    for tok in params.split(","):
        try:
            v = float(tok)
        except ValueError:
            raise ConfigError(f"compressor {name!r}: parameter {tok!r} is not a number") from None
        if not math.isfinite(v):
            raise ConfigError(f"compressor {name!r}: parameter {tok.strip()!r} is not a finite number; write "
                              f"{name}:{REGISTRY[name].params}")
        out.append(v)
    return out


def make(spec: str, d: int, block_ptr=None, L_diag=None) -> Sketch:
    """Bind ``spec`` to dimension ``d`` and partition ``block_ptr`` (default: one block)."""
    name, params = parse(spec)
    entry = REGISTRY[name]
    if entry.sketch is None:
        raise IncompatibleError(f"{name!r} is a vector compressor, not a diagonal sketch; the sketch methods take: "
                                + ", ".join(REGISTRY.select(lambda e: SKETCH in e.uses)))
    block_ptr = np.asarray([0, d] if block_ptr is None else block_ptr, dtype=np.int64)
    return entry.sketch(params, d, block_ptr, L_diag)


def describe() -> list[tuple[str, str]]:
    return [(e.name + (":" + e.params if e.params else ""),
             f"[{'/'.join('sketch' if u == SKETCH else 'vector' for u in e.uses)}] {e.doc}{alias_note(e)}")
            for e in REGISTRY.values()]
