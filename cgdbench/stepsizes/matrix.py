"""The typed stepsize matrix D: scalar γI, diagonal, block-diagonal or dense."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, choices_error
from .kernels import D_BLOCK, D_DIAG, D_SCALAR, d_apply

KINDS = ("scalar", "diagonal", "block", "dense")


@dataclass(frozen=True, eq=False)
class StepsizeMatrix:
    """A symmetric positive definite stepsize matrix of a known structure."""

    kind: str
    d: int
    gamma: float = 1.0
    diag: np.ndarray | None = field(default=None, repr=False)
    mat: np.ndarray | None = field(default=None, repr=False)
    block_ptr: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise choices_error("stepsize matrix kind", self.kind, KINDS)
        if self.kind == "scalar" and not (self.gamma > 0 and math.isfinite(self.gamma)):
            raise ConfigError(f"scalar stepsize γ = {self.gamma!r} must be a finite number > 0")
        if self.kind == "diagonal" and not np.all(self.diag > 0):
            j = int(np.flatnonzero(~(np.asarray(self.diag) > 0))[0])
            raise ConfigError(f"diagonal stepsize: entry D[{j}] = {float(self.diag[j]):g} is not > 0; "
                              "every entry must be")
        if self.kind in ("block", "dense") and self.block_ptr is None:
            object.__setattr__(self, "block_ptr", np.array([0, self.d], dtype=np.int64))

    @classmethod
    def scalar(cls, gamma, d):
        return cls("scalar", d, gamma=float(gamma))

    @classmethod
    def diagonal(cls, v):
        v = np.ascontiguousarray(v, dtype=float)
        return cls("diagonal", v.size, diag=v)

    @classmethod
    def blocks(cls, mat, block_ptr):
        """Block-diagonal from the diagonal blocks of ``mat`` (one block: dense)."""
        mat = np.asarray(mat, dtype=float)
        block_ptr = np.asarray(block_ptr, dtype=np.int64)
        out = np.zeros_like(mat)
        for lo, hi in zip(block_ptr[:-1], block_ptr[1:]):
            blk = mat[lo:hi, lo:hi]
            out[lo:hi, lo:hi] = 0.5 * (blk + blk.T)
        kind = "dense" if len(block_ptr) == 2 else "block"
        return cls(kind, mat.shape[0], mat=np.ascontiguousarray(out), block_ptr=block_ptr)

    # --- linear algebra ---------------------------------------------------
    def dense(self) -> np.ndarray:
        if self.kind == "scalar":
            return self.gamma * np.eye(self.d)
        if self.kind == "diagonal":
            return np.diag(self.diag)
        return self.mat.copy()

    def scaled(self, c: float) -> "StepsizeMatrix":
        if self.kind == "scalar":
            return StepsizeMatrix.scalar(self.gamma * c, self.d)
        if self.kind == "diagonal":
            return StepsizeMatrix.diagonal(self.diag * c)
        return StepsizeMatrix(self.kind, self.d, mat=self.mat * c, block_ptr=self.block_ptr)

    def logdet(self) -> float:
        """``log det D`` (sums of logs: no under/overflow for large d)."""
        if self.kind == "scalar":
            return self.d * math.log(self.gamma)
        if self.kind == "diagonal":
            return float(np.sum(np.log(self.diag)))
        total = 0.0
        for b, (lo, hi) in enumerate(zip(self.block_ptr[:-1], self.block_ptr[1:])):
            sign, ld = np.linalg.slogdet(self.mat[lo:hi, lo:hi])
            if sign <= 0:
                raise ConfigError(f"stepsize matrix: block {b} (coordinates {lo}..{hi - 1}) is not positive definite "
                                  f"(its determinant is {'0' if sign == 0 else 'negative'})")
            total += ld
        return float(total)

    def det_root(self) -> float:
        """``det(D)^{1/d}``, the normalisation of Theorem 1 (computed in log space)."""
        return math.exp(self.logdet() / self.d)

    def apply(self, v) -> np.ndarray:
        v = np.ascontiguousarray(v, dtype=float)
        out = np.empty(self.d)
        d_apply(*self.kernel_args(), v, out)
        return out

    def kernel_args(self):
        """``(kind code, γ, diag, mat, block_ptr, block_of)`` with fixed dtypes."""
        one = np.ones(1)
        if self.kind == "scalar":
            return (D_SCALAR, self.gamma, one, np.ones((1, 1)), np.zeros(2, np.int64), np.zeros(1, np.int64))
        if self.kind == "diagonal":
            return (D_DIAG, 1.0, self.diag, np.ones((1, 1)), np.zeros(2, np.int64), np.zeros(1, np.int64))
        sizes = np.diff(self.block_ptr)
        block_of = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
        return (D_BLOCK, 1.0, one, self.mat, self.block_ptr.astype(np.int64), block_of)
