"""Problem registry: name -> factory building the problem from a dataset and options."""
from __future__ import annotations

from ..errors import choices_error
from .logreg import MAX_DENSE_D, SPLITS, LogRegNonconvex, parse_blocks

REGISTRY = {
    "logreg-nonconvex": LogRegNonconvex,
}
ALIASES = {"logreg": "logreg-nonconvex", "logistic": "logreg-nonconvex"}

__all__ = ["REGISTRY", "LogRegNonconvex", "MAX_DENSE_D", "SPLITS", "parse_blocks", "get", "describe"]


def canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in REGISTRY:
        raise choices_error("problem", name, REGISTRY)
    return name


def get(name: str):
    return REGISTRY[canonical(name)]


def describe() -> list[tuple[str, str]]:
    return [(k, (v.__doc__ or "").strip().splitlines()[0]) for k, v in REGISTRY.items()]
