"""Problem registry: name -> factory building the problem from a dataset and options."""
from __future__ import annotations

from .._registry import Registry
from .logreg import MAX_DENSE_D, SPLITS, LeastSquares, LogRegNonconvex, parse_blocks
from .saddles import (ConvAutoencoder, LinearAutoencoder, MLPAutoencoder, MLPClassifier, SaddleProblem,
                      SaddleQuartic)

#: traits: ``oracle`` — ``full`` (client gradients and L_i: the full-gradient methods) or ``minibatch``
REGISTRY = Registry("problem")
for _cls, _aliases in ((LogRegNonconvex, ("logreg", "logistic")), (LeastSquares, ("quadratic", "ridge", "ls")),
                       (SaddleQuartic, ("quartic",)), (LinearAutoencoder, ("linear-ae",)),
                       (MLPAutoencoder, ("mlp-ae", "autoencoder")), (MLPClassifier, ("mlp-cls", "classifier")),
                       (ConvAutoencoder, ("conv-ae",))):
    REGISTRY.register(_cls.name, aliases=_aliases, doc=(_cls.__doc__ or "").strip().splitlines()[0],
                      oracle=_cls.oracle)(_cls)

__all__ = ["REGISTRY", "LogRegNonconvex", "LeastSquares", "SaddleProblem", "SaddleQuartic", "LinearAutoencoder",
           "MLPAutoencoder", "MLPClassifier", "ConvAutoencoder", "MAX_DENSE_D", "SPLITS", "parse_blocks", "get",
           "describe", "describe_long"]


def canonical(name: str) -> str:
    return REGISTRY.canonical(name)


def get(name: str):
    """The problem class (its factory)."""
    return REGISTRY.get(name).factory


def describe() -> list[tuple[str, str]]:
    return REGISTRY.describe()


def describe_long() -> list[tuple[str, str]]:
    """``cgdbench list problems``: each problem's line, then the algorithms it runs with and its run defaults."""
    from .. import algorithms
    from ..config import RUN_DEFAULTS
    out = []
    for (name, doc), e in zip(REGISTRY.describe(), REGISTRY.values()):
        own = {**RUN_DEFAULTS, **getattr(e.factory, 'run_defaults', {})}
        keys = ("iters", "log_every") + (("noise_schedule", "eps") if e.oracle == "minibatch" else ())
        shown = [f"--{k.replace('_', '-')} {own[k]:g}" if isinstance(own[k], float) else
                 f"--{k.replace('_', '-')} {own[k]}" for k in keys]
        if e.oracle == "minibatch":
            shown.append(f"--lr {e.factory.eta0:g} (μ/L instead for a random compressor, when smaller)")
        out += [(name, doc), ("", f"  with {', '.join(algorithms.REGISTRY.names(oracle=e.oracle))}; "
                                  f"defaults {', '.join(shown)}")]
    return out
