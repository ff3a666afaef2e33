"""Problem registry: name -> factory building the problem from a dataset and options."""
from __future__ import annotations

from ..errors import choices_error
from .logreg import MAX_DENSE_D, SPLITS, LeastSquares, LogRegNonconvex, parse_blocks
from .saddles import LinearAutoencoder, MLPAutoencoder, SaddleProblem, SaddleQuartic

REGISTRY = {
    "logreg-nonconvex": LogRegNonconvex,
    "least-squares": LeastSquares,
    "saddle-quartic": SaddleQuartic,
    "linear-autoencoder": LinearAutoencoder,
    "mlp-autoencoder": MLPAutoencoder,
}
ALIASES = {"logreg": "logreg-nonconvex", "logistic": "logreg-nonconvex", "quartic": "saddle-quartic",
           "quadratic": "least-squares", "ridge": "least-squares", "ls": "least-squares",
           "linear-ae": "linear-autoencoder", "mlp-ae": "mlp-autoencoder", "autoencoder": "mlp-autoencoder"}

__all__ = ["REGISTRY", "LogRegNonconvex", "LeastSquares", "SaddleProblem", "SaddleQuartic", "LinearAutoencoder",
           "MLPAutoencoder", "MAX_DENSE_D", "SPLITS", "parse_blocks", "get", "describe"]


def canonical(name: str) -> str:
    name = ALIASES.get(str(name).lower(), str(name).lower())
    if name not in REGISTRY:
        raise choices_error("problem", name, REGISTRY)
    return name


def get(name: str):
    return REGISTRY[canonical(name)]


def describe() -> list[tuple[str, str]]:
    return [(k, (v.__doc__ or "").strip().splitlines()[0]) for k, v in REGISTRY.items()]
