"""Algorithm registry: one module per algorithm, one registered entry per name.

Each module owns its kernel, its build (what it needs from problem, compressor and
stepsize), its :class:`~._common.Job` (how the engine drives its chunks, what a run
reports) and registers itself with :func:`register`, declaring

* ``oracle`` — the problems it runs on: ``full`` (finite sums with client gradients and
  smoothness matrices L_i) or ``minibatch`` (the saddle problems);
* ``contract`` — the compressor it needs: ``sketch`` (an unbiased diagonal sketch S),
  ``unbiased`` (E C(x) = x, variance ω), ``contractive`` (E‖C(x) − x‖² ≤ (1 − α)‖x‖²; an
  unbiased C is applied as C/(1+ω), and the run says so) or ``vector`` (any C(x));
* ``reads`` — the RunConfig options of its own it reads (any other algorithm's option
  given to it is an error naming both);
* ``rules`` — the stepsize rules it takes (``None``: det-CGD's matrix rules).

Adding an algorithm is one new module and one import line below; options of its own (a new RunConfig
field, a CLI flag) are still declared in config.py and cli.py (docs/architecture.md, step by step).
"""
from __future__ import annotations

from .._registry import Registry
from ..errors import ConfigError, IncompatibleError

REGISTRY = Registry("algorithm")
CONTRACTS = ("sketch", "unbiased", "contractive", "vector")
ORACLES = ("full", "minibatch")


#: the traits the engine and the CLI read besides the named ones (``register``'s keywords)
TRAITS = ("code", "condition", "identity_only", "scalar_only", "use_ef", "seeded_x0")


def register(name, *, doc, oracle, contract, reads=(), rules=None, default_compressor, default_stepsize,
             aliases=(), **traits):
    """Class decorator: register a :class:`~._common.Job` subclass under ``name`` (stackable).

    Checked here, so a mistake fails at import with the bad value and the allowed ones, not at a user's run:
    ``oracle``, ``contract`` and the extra ``traits`` by name; the default compressor and stepsize against
    the algorithm's own contract and rules; ``reads`` against RunConfig's fields (once config is loaded;
    the package's own algorithms are checked when it loads, :func:`cgdbench.config._check_reads`)."""
    if oracle not in ORACLES:
        raise ValueError(f"algorithm {name!r}: oracle {oracle!r}; choose one of: {', '.join(ORACLES)}")
    if contract not in CONTRACTS:
        raise ValueError(f"algorithm {name!r}: contract {contract!r}; choose one of: {', '.join(CONTRACTS)}")
    unknown = sorted(set(traits) - set(TRAITS))
    if unknown:
        raise ValueError(f"algorithm {name!r}: unknown trait(s) {unknown}; the engine reads: {', '.join(TRAITS)}")

    def deco(job_cls):
        REGISTRY.register(name, aliases=aliases, doc=doc, oracle=oracle, contract=contract, reads=tuple(reads),
                          rules=rules, default_compressor=default_compressor, default_stepsize=default_stepsize,
                          **traits)(job_cls)
        import sys

        from .. import compressors
        entry = REGISTRY.get(name)
        config = sys.modules.get("cgdbench.config")
        try:
            if default_stepsize == "lr":  # the SGD methods: scalar:η from --lr
                compressors.check_contract(default_compressor, contract, name)
            else:
                check(entry, default_compressor, default_stepsize)
            if config is not None and hasattr(config, "_check_reads"):
                config._check_reads([entry])
        except (ConfigError, ValueError) as exc:
            del REGISTRY.entries[name]  # not half registered
            for a in aliases:
                REGISTRY.aliases.pop(a, None)
            raise ValueError(f"algorithm {name!r} (default compressor {default_compressor!r}, default stepsize "
                             f"{default_stepsize!r}, reads {tuple(reads)}): {exc}") from None
        return job_cls
    return deco


def canonical(name: str) -> str:
    return REGISTRY.canonical(name)


def get(name: str):
    """The registry entry (``.factory`` is the Job class; traits as attributes)."""
    return REGISTRY.get(name)


def describe() -> list[tuple[str, str]]:
    return REGISTRY.describe()


def check(entry, compressor: str, stepsize: str) -> None:
    """Reject a compressor outside the algorithm's contract or a stepsize rule it does not take."""
    from .. import compressors, stepsizes
    compressors.check_contract(compressor, entry.contract, entry.name)
    if entry.traits.get("identity_only") and compressor != "identity":
        raise IncompatibleError(f"algorithm {entry.name!r} does not compress; use --compressor identity "
                          f"(got {compressor!r}), or det-cgd1/det-cgd2 for compressed methods")
    if entry.traits.get("scalar_only"):
        scalar = ("scalar", "khaled-richtarik", "matrix-smoothness", "corollary1:scalar")
        if not stepsize.startswith(scalar):
            raise IncompatibleError(f"algorithm {entry.name!r} uses a scalar stepsize; use --stepsize "
                              f"{', '.join(r + ('[:GAMMA]' if r == 'scalar' else '') for r in scalar)} "
                              f"(got {stepsize!r}), or det-cgd1 for matrix stepsizes")
        return
    rule = stepsizes.parse(stepsize)[0]
    allowed = entry.rules if entry.rules is not None else stepsizes.names(scope="det-cgd")
    if rule not in allowed:
        shown = [r + (":GAMMA" if r == "scalar" and entry.rules is not None else "") for r in allowed]
        raise IncompatibleError(f"algorithm {entry.name!r} takes the stepsize rules {', '.join(shown)}; "
                          f"got {stepsize!r}")


# one import per algorithm module: importing registers (nothing is compiled until first use)
from . import det_cgd, ef_sgd, ef21, diana, marina, det_marina  # noqa: E402,F401

#: every option some algorithm reads; an algorithm given another's is refused
OWN_OPTIONS = tuple(dict.fromkeys(o for e in REGISTRY.values() for o in e.reads))


__all__ = ["REGISTRY", "register", "get", "canonical", "describe", "check", "OWN_OPTIONS"]
