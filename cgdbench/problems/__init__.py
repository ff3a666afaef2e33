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
           "describe"]


def canonical(name: str) -> str:
    return REGISTRY.canonical(name)


def get(name: str):
    """The problem class (its factory)."""
    return REGISTRY.get(name).factory


def describe() -> list[tuple[str, str]]:
    return REGISTRY.describe()
