"""Algorithm registry: each name maps onto one of two jitted loops.

det-CGD family (``det_cgd.py``): GD is det-CGD1 with S = I; DCGD (Khirirat et
al. 2018) is Algorithm 1 with a scalar stepsize D = γI; single-node methods are
the one-client case.  Compressed-SGD family ``ef`` (``ef_sgd.py``): plain
compressed SGD, and the saddle paper's Algorithm 1 (error feedback, perturbation,
reset), whose switches are the ``use_*`` flags.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, choices_error
from .det_cgd import DET_CGD1, DET_CGD2, client_ranges, det_cgd_chunk


@dataclass(frozen=True)
class Algorithm:
    name: str
    family: str          # stepsize condition: "det-cgd1" -> (7), "det-cgd2" -> (8); "ef": compressed SGD
    doc: str
    identity_only: bool = False
    scalar_only: bool = False
    use_ef: bool = False

    @property
    def kind(self) -> str:
        """``det-cgd`` (full gradients, matrix stepsizes, sketches) or ``sgd`` (minibatches, compressors)."""
        return "sgd" if self.family == "ef" else "det-cgd"

    @property
    def family_code(self) -> int:
        return DET_CGD1 if self.family == "det-cgd1" else DET_CGD2

    def check(self, compressor: str, stepsize: str) -> None:
        """Reject combinations the method does not define."""
        from .. import compressors
        compressors.check_use(compressor, compressors.VECTOR if self.family == "ef" else compressors.SKETCH,
                              self.name)
        if self.identity_only and compressor != "identity":
            raise ConfigError(f"algorithm {self.name!r} does not compress; use --compressor identity "
                              f"(got {compressor!r}), or det-cgd1/det-cgd2 for compressed methods")
        scalar_rules = ("scalar", "khaled-richtarik", "matrix-smoothness", "corollary1:scalar")
        if self.scalar_only and not stepsize.startswith(scalar_rules):
            raise ConfigError(f"algorithm {self.name!r} uses a scalar stepsize; use --stepsize "
                              f"{', '.join(r + ('[:GAMMA]' if r == 'scalar' else '') for r in scalar_rules)} "
                              f"(got {stepsize!r}), or det-cgd1 for matrix stepsizes")


REGISTRY = {
    "gd": Algorithm("gd", "det-cgd1", "gradient descent x ← x − D∇f(x) (S = I); distributed: mean of client gradients.",
                    identity_only=True),
    "det-cgd1": Algorithm("det-cgd1", "det-cgd1", "x ← x − D·(1/n)Σ S_i∇f_i(x) (det-CGD1; Algorithm 1 for n > 1)."),
    "det-cgd2": Algorithm("det-cgd2", "det-cgd2", "x ← x − (1/n)Σ T_i D∇f_i(x) (det-CGD2; Algorithm 2 for n > 1)."),
    "dcgd": Algorithm("dcgd", "det-cgd1", "DCGD: x ← x − γ(1/n)Σ C_i(∇f_i(x)) with a scalar stepsize.",
                      scalar_only=True),
    "sgd": Algorithm("sgd", "ef", "compressed SGD x ← x − η(1/W)Σ C(∇F_i(x, θ_i) + ξ), no error feedback "
                                  "(identity: plain minibatch SGD; --noise r: perturbed SGD)."),
    "ef-sgd": Algorithm("ef-sgd", "ef", "Algorithm 1 of Avdiukhin & Yaroslavtsev: compressed SGD with error "
                                        "feedback, noise (--noise r), reset after --reset-iters I or beyond "
                                        "--escape-radius R (--no-reset: plain EF-SGD).", use_ef=True),
}
ALIASES = {"detcgd1": "det-cgd1", "detcgd2": "det-cgd2", "det_cgd1": "det-cgd1", "det_cgd2": "det-cgd2",
           "ef_sgd": "ef-sgd", "efsgd": "ef-sgd", "compressed-sgd": "ef-sgd", "algorithm1-saddle": "ef-sgd"}

__all__ = ["REGISTRY", "Algorithm", "get", "canonical", "describe", "det_cgd_chunk", "client_ranges"]


def canonical(name: str) -> str:
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in REGISTRY:
        raise choices_error("algorithm", name, REGISTRY)
    return key


def get(name: str) -> Algorithm:
    return REGISTRY[canonical(name)]


def describe() -> list[tuple[str, str]]:
    return [(a.name, a.doc) for a in REGISTRY.values()]
