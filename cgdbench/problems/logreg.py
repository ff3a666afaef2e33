"""Problems on CSR data split over clients: the det-CGD experiments' logistic regression
with a non-convex regularizer, and ridge least squares (a quadratic with exact f*).

Logistic regression:

    f_i(x) = (1/m_i) Σ_{j ∈ client i} log(1 + exp(-b_j a_jᵀ x)) + λ Σ_t x_t² / (1 + x_t²),
    f(x)   = (1/n) Σ_i f_i(x).

With equal client sizes f is the usual average over all rows.  Smoothness
matrices (the regularizer's second derivative (2 - 6x²)/(1 + x²)³ is at most 2):

    L_i = (1/(4 m_i)) A_iᵀ A_i + 2λ I,        L = (1/n) Σ_i L_i.

The data stay in CSR form; only L (d×d) is dense, which limits d to
:data:`MAX_DENSE_D`.
"""
from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .._jit import njit, njit_exact, njit_inline
from ..data import Dataset
from ..errors import ConfigError

MAX_DENSE_D = 4096
#: problem kinds the jitted kernels take: loss and regularizer
LOGISTIC, SQUARED = 0, 1
SPLITS = ("contiguous", "shuffled", "by-label")
#: the kernels' pack of a finite sum of CSR rows split over clients
#: (``binary``: every stored value is 1.0, so the kernels' fast paths skip the multiply — exactly)
FiniteSum = namedtuple("FiniteSum", "indptr indices values b client_ptr inv_m lam kind binary")
#: each client's non-zeros by column: client i's distinct columns are ``cols[ptr[i]:ptr[i+1]]`` (sorted);
#: column ``cols[c]`` has its entries in rows ``rows[start[c]:start[c+1]]`` (increasing), values ``vals``
ClientColumns = namedtuple("ClientColumns", "ptr cols start rows vals")


@njit_inline
def client_grad(P, i, x, need_loss, g, zbuf):
    """Client ``i``'s data loss (or 0) and the data part of ∇f_i(x) into ``g``, from the pack ``P``."""
    return client_data_grad(P.kind, x, P.indptr, P.indices, P.values, P.b, P.client_ptr[i], P.client_ptr[i + 1],
                            P.inv_m[i], need_loss, g, zbuf)


@njit_inline
def row_dot(x, indptr, indices, values, binary, r):
    """``a_rᵀx`` for row ``r`` of the CSR matrix.

    Four accumulators break the add-latency chain of the sparse dot product;
    the order is fixed in code, so results do not depend on the machine.
    ``binary`` (every value 1.0): the same sums without the multiply (x·1.0 is x).
    """
    z0 = 0.0
    z1 = 0.0
    z2 = 0.0
    z3 = 0.0
    p = indptr[r]
    end = indptr[r + 1]
    if binary:
        while p + 4 <= end:
            z0 += x[indices[p]]
            z1 += x[indices[p + 1]]
            z2 += x[indices[p + 2]]
            z3 += x[indices[p + 3]]
            p += 4
        while p < end:
            z0 += x[indices[p]]
            p += 1
    else:
        while p + 4 <= end:
            z0 += values[p] * x[indices[p]]
            z1 += values[p + 1] * x[indices[p + 1]]
            z2 += values[p + 2] * x[indices[p + 2]]
            z3 += values[p + 3] * x[indices[p + 3]]
            p += 4
        while p < end:
            z0 += values[p] * x[indices[p]]
            p += 1
    return (z0 + z1) + (z2 + z3)


@njit_inline
def row_dots(x, indptr, indices, values, binary, r0, r1, zbuf):
    """``zbuf[r - r0] = a_rᵀx`` (:func:`row_dot`) for rows ``r0 <= r < r1`` of the CSR matrix."""
    for r in range(r0, r1):
        zbuf[r - r0] = row_dot(x, indptr, indices, values, binary, r)


@njit_inline
def scatter_rows(indptr, indices, values, r0, r1, zbuf, g):
    """``g = Σ_r zbuf[r - r0] a_r`` (``g`` overwritten)."""
    for t in range(g.shape[0]):
        g[t] = 0.0
    for r in range(r0, r1):
        c = zbuf[r - r0]
        for p in range(indptr[r], indptr[r + 1]):
            g[indices[p]] += c * values[p]


@njit_inline
def link_row(kind, z, br):
    """One row's link from its margin ``z = a_rᵀx``: ``(gradient coefficient × m_i, loss factor f, loss term l)``;
    the row's loss is ``log f + l``.

    Logistic: ``-b σ(-b z)``, ``f = 1 + exp(-|b z|)`` and ``l = max(0, -b z)`` (so ``log f + l = log(1 + exp(-b z))``);
    least squares: ``z − b``, ``f = 1`` and ``l = (z − b)²`` (the caller scales the loss by :func:`loss_scale`).
    The caller multiplies the factors (:func:`loss_add`) and takes their log once per client
    (:func:`loss_total`): a log per row was ~10% of an a1a iteration logged every time.  Scalars only, so
    that inlining it in a per-client loop binds no array (no reference count).
    """
    if kind == SQUARED:
        res = z - br
        return res, 1.0, res * res
    # stable σ(-t) and the loss from one exp, without a data-dependent branch
    t = br * z
    a = abs(t)
    e = math.exp(-a)
    inv = 1.0 / (1.0 + e)
    s = e * inv if t >= 0.0 else inv
    return -br * s, 1.0 + e, 0.5 * (a - t)


#: a product of loss factors (each in [1, 2]) is folded into its log before the next factor could overflow it
LOSS_FOLD = 1e300


@njit_inline
def loss_add(lin, prod, f, l):
    """A row's loss ``log f + l`` added to a running ``lin + log(prod)``: ``(lin, prod)`` after it."""
    lin += l
    prod *= f
    if prod > LOSS_FOLD:
        lin += math.log(prod)
        prod = 1.0
    return lin, prod


@njit_inline
def loss_total(lin, prod):
    """The loss a running ``(lin, prod)`` of :func:`loss_add` stands for."""
    return lin + math.log(prod)


@njit_inline
def loss_scale(kind, inv_m):
    """A client's data loss is its rows' loss terms times this: ``1/m_i``, or ``1/(2 m_i)`` for least squares."""
    return 0.5 * inv_m if kind == SQUARED else inv_m


@njit_inline
def link(kind, b, r0, r1, inv_m, need_loss, zbuf):
    """Margins ``zbuf[r - r0]`` → gradient coefficients (``/m_i``); returns the client's data loss (or 0)."""
    lin, prod = 0.0, 1.0
    for r in range(r0, r1):
        c, f, l = link_row(kind, zbuf[r - r0], b[r])
        zbuf[r - r0] = c * inv_m
        if need_loss:
            lin, prod = loss_add(lin, prod, f, l)
    return loss_total(lin, prod) * loss_scale(kind, inv_m) if need_loss else 0.0


@njit_exact
def client_data_grad(kind, x, indptr, indices, values, b, r0, r1, inv_m, need_loss, g, zbuf):
    """Data part of client ``[r0, r1)``'s gradient into ``g`` (overwritten); returns its data loss (or 0).

    Logistic: ``g = (1/m_i) Σ_j -b_j σ(-b_j a_jᵀx) a_j``; least squares: ``g = (1/m_i) Σ_j (a_jᵀx − b_j) a_j``
    and the loss ``(1/(2m_i)) Σ_j (a_jᵀx − b_j)²``.  ``zbuf`` (length >= r1 - r0) is scratch.  Three
    passes (margins, link function, scatter) rather than one: keeping the exp latency out of the
    sparse loops makes the whole about 1.5x faster.
    """
    row_dots(x, indptr, indices, values, False, r0, r1, zbuf)
    loss = link(kind, b, r0, r1, inv_m, need_loss, zbuf)
    scatter_rows(indptr, indices, values, r0, r1, zbuf, g)
    return loss


@njit_exact
def logistic_client_grad(x, indptr, indices, values, b, r0, r1, inv_m, need_loss, g, zbuf):
    """:func:`client_data_grad` of the logistic loss (what the gate and the kernel benchmarks time)."""
    return client_data_grad(LOGISTIC, x, indptr, indices, values, b, r0, r1, inv_m, need_loss, g, zbuf)


@njit_inline
def nonconvex_reg(x, lam, grad_out):
    """``λ Σ x²/(1+x²)``; its gradient ``2λx/(1+x²)²`` goes into ``grad_out``."""
    v = 0.0
    for t in range(x.shape[0]):
        sq = x[t] * x[t]
        u = 1.0 + sq
        v += sq / u if sq < 1e300 else 1.0  # x²/(1+x²) -> 1, not inf/inf
        grad_out[t] = 2.0 * lam * x[t] / (u * u)
    return lam * v


@njit_inline
def ridge_reg(x, lam, grad_out):
    """``(λ/2)‖x‖²``; its gradient ``λx`` goes into ``grad_out``."""
    v = 0.0
    for t in range(x.shape[0]):
        v += x[t] * x[t]
        grad_out[t] = lam * x[t]
    return 0.5 * lam * v


@njit_inline
def regularizer(kind, x, lam, grad_out):
    """The regularizer of problem ``kind`` (value; gradient into ``grad_out``)."""
    if kind == SQUARED:
        return ridge_reg(x, lam, grad_out)
    return nonconvex_reg(x, lam, grad_out)


@njit
def objective_and_grad(x, indptr, indices, values, b, client_ptr, inv_m, lam, kind, g, scratch, zbuf):
    """``f(x)`` and ``∇f(x)`` (into ``g``), clients summed in order."""
    n = client_ptr.shape[0] - 1
    for t in range(g.shape[0]):
        g[t] = 0.0
    loss = 0.0
    for i in range(n):
        loss += client_data_grad(kind, x, indptr, indices, values, b, client_ptr[i],
                                 client_ptr[i + 1], inv_m[i], True, scratch, zbuf)
        for t in range(g.shape[0]):
            g[t] += scratch[t]
    reg = regularizer(kind, x, lam, scratch)
    for t in range(g.shape[0]):
        g[t] = g[t] / n + scratch[t]
    return loss / n + reg


def split_rows(m: int, parts: int, split: str, seed: int, labels=None,
               who: str = "this problem") -> tuple[np.ndarray, np.ndarray]:
    """Row order and the pointers of ``parts`` contiguous ranges of it.

    ``contiguous`` keeps the file order; ``shuffled`` permutes the rows with ``seed`` first (sizes
    differ by at most 1); ``by-label`` puts the rows of one class on each part, classes in
    increasing order, rows in file order (``parts`` must be the number of classes).
    """
    if split == "by-label":
        if labels is None:
            raise ConfigError(f"--split by-label: {who} has no class labels; by-label applies to the "
                              "problems with classes (mlp-classifier, logreg-nonconvex, least-squares)")
        classes, counts = np.unique(labels, return_counts=True)
        if parts != classes.size:
            shown = ", ".join(f"{c:g}" for c in classes[:12]) + (", ..." if classes.size > 12 else "")
            raise ConfigError(f"--split by-label puts one class on each worker: --clients must be {classes.size} "
                              f"(the classes {shown}), got {parts}")
        order = np.argsort(labels, kind="stable")
        return order, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order = np.arange(m)
    if split == "shuffled":
        order = np.random.default_rng(np.random.SeedSequence([seed, 0x5B17])).permutation(m)
    sizes = np.array([len(c) for c in np.array_split(order, parts)])
    return order, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def parse_blocks(spec, d: int) -> np.ndarray:
    """Block partition pointer from ``None`` (one block), a count ``"3"`` or sizes ``"40,40,43"``."""
    if spec is None or spec == "":
        return np.array([0, d], dtype=np.int64)
    if isinstance(spec, (list, tuple, np.ndarray)):
        sizes = [int(s) for s in spec]
    else:
        toks = str(spec).split(",")
        try:
            vals = [int(t) for t in toks]
        except ValueError:
            raise ConfigError(f"--blocks {spec!r}: give a block count or comma-separated sizes") from None
        if len(vals) == 1:
            nb = vals[0]
            if not 1 <= nb <= d:
                raise ConfigError(f"--blocks {nb}: the number of blocks must be in [1, d = {d}]")
            sizes = [len(a) for a in np.array_split(np.arange(d), nb)]
        else:
            sizes = vals
    if any(s < 1 for s in sizes) or sum(sizes) != d:
        raise ConfigError(f"--blocks {spec!r}: sizes must be >= 1 and sum to d = {d} (they sum to {sum(sizes)})")
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass(frozen=True, eq=False)
class LogRegNonconvex:
    """Logistic regression with the non-convex regularizer λΣx²/(1+x²), rows split over n clients."""

    dataset: Dataset
    lam: float = 0.1
    clients: int = 1
    split: str = "contiguous"
    split_seed: int = 0
    blocks: object = None
    # built in __post_init__
    indptr: np.ndarray = field(init=False, repr=False)
    indices: np.ndarray = field(init=False, repr=False)
    values: np.ndarray = field(init=False, repr=False)
    b: np.ndarray = field(init=False, repr=False)
    client_ptr: np.ndarray = field(init=False, repr=False)
    inv_m: np.ndarray = field(init=False, repr=False)
    block_ptr: np.ndarray = field(init=False, repr=False)

    name = "logreg-nonconvex"
    oracle = "full"                 # client gradients and smoothness matrices L_i: the full-gradient methods
    kind = LOGISTIC                 # loss and regularizer in the jitted kernels
    default_lam = 0.1
    default_x0 = "ones-over-sqrt-d"
    x0_choices = ("ones-over-sqrt-d", "zeros")
    #: L_i = loss_curvature·A_iᵀA_i/m_i + reg_curvature·λI: σ' <= 1/4, and the
    #: regularizer's second derivative (2 − 6x²)/(1 + x²)³ is at most 2
    loss_curvature, reg_curvature = 0.25, 2.0
    #: a lower bound on f (loss and regularizer are non-negative), for Theorem 1's bound
    f_lower = 0.0
    f_lower_exact = False

    def __post_init__(self):
        m, d = self.dataset.A.shape
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"--lam {self.lam!r}: λ must be a finite number >= 0")
        if not isinstance(self.clients, (int, np.integer)) or self.clients < 1:
            raise ConfigError(f"--clients {self.clients!r}: need at least 1 client")
        if self.clients > m:
            raise ConfigError(f"--clients {self.clients}: more clients than rows ({m}) in "
                              f"{self.dataset.name!r}; every client needs at least one row")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        if d > MAX_DENSE_D:
            raise ConfigError(f"{self.dataset.name!r} has d = {d} features; the dense smoothness "
                              f"matrix L (d×d) is limited to d <= {MAX_DENSE_D}")
        order, client_ptr = split_rows(m, self.clients, self.split, self.split_seed, labels=self.dataset.b,
                                       who=self.name)
        A, b = self.dataset.A, self.dataset.b
        if self.split != "contiguous":
            A, b = A[order], b[order]
        A = sp.csr_matrix(A)
        set_ = object.__setattr__
        set_(self, "indptr", A.indptr.astype(np.int64))
        # column indices fit int32 (d <= MAX_DENSE_D): half the index traffic of int64
        set_(self, "indices", A.indices.astype(np.int32))
        set_(self, "values", A.data.astype(np.float64))
        set_(self, "b", np.ascontiguousarray(b, dtype=np.float64))
        set_(self, "client_ptr", client_ptr)
        set_(self, "inv_m", 1.0 / np.diff(client_ptr).astype(np.float64))
        set_(self, "block_ptr", parse_blocks(self.blocks, d))

    # --- shape ------------------------------------------------------------
    @property
    def dataset_info(self) -> dict:
        return self.dataset.describe()

    @property
    def d(self) -> int:
        return self.dataset.A.shape[1]

    @property
    def m(self) -> int:
        return self.dataset.A.shape[0]

    @property
    def n(self) -> int:
        return self.clients

    @property
    def max_rows(self) -> int:
        """Rows of the largest client."""
        return int(np.diff(self.client_ptr).max())

    def x0(self, kind: str = "ones-over-sqrt-d") -> np.ndarray:
        if kind == "ones-over-sqrt-d":
            return np.full(self.d, 1.0 / math.sqrt(self.d))
        if kind == "zeros":
            return np.zeros(self.d)
        raise ConfigError(f"unknown --x0 {kind!r}; choose one of: {', '.join(self.x0_choices)}")

    # --- oracle -----------------------------------------------------------
    def kernel_data(self):
        """Arrays the engine kernels take, in their order."""
        return (self.indptr, self.indices, self.values, self.b, self.client_ptr, self.inv_m,
                float(self.lam), self.kind, bool(np.all(self.values == 1.0)))

    def pack(self):
        """The problem as the kernels' :data:`FiniteSum` pack."""
        return FiniteSum(*self.kernel_data())

    @cached_property
    def client_columns(self) -> ClientColumns:
        """Every client's rows by column (:data:`ClientColumns`): a sketched message's coordinate j of
        ∇f_i is a sum over client i's entries in column j, found by a binary search, in row order."""
        row_of = np.repeat(np.arange(self.m), np.diff(self.indptr))
        client = np.repeat(np.arange(self.n), np.diff(self.client_ptr))[row_of]
        order = np.lexsort((row_of, self.indices, client))
        cl, col = client[order], self.indices[order]
        first = np.ones(order.size, dtype=bool)
        first[1:] = (cl[1:] != cl[:-1]) | (col[1:] != col[:-1])
        starts = np.flatnonzero(first)
        return ClientColumns(np.searchsorted(cl[starts], np.arange(self.n + 1)).astype(np.int64),
                             col[starts].astype(np.int32), np.append(starts, order.size).astype(np.int64),
                             row_of[order].astype(np.int64), self.values[order])

    def _x(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.d,):
            raise ConfigError(f"x must have shape ({self.d},), got {x.shape}")
        return x

    def f(self, x) -> float:
        return self.f_and_grad(x)[0]

    def grad(self, x) -> np.ndarray:
        return self.f_and_grad(x)[1]

    def f_and_grad(self, x):
        x = self._x(x)
        g = np.empty(self.d)
        v = objective_and_grad(x, self.indptr, self.indices, self.values, self.b, self.client_ptr,
                               self.inv_m, float(self.lam), self.kind, g, np.empty(self.d),
                               np.empty(self.max_rows))
        return v, g

    def client_f_and_grad(self, i: int, x):
        """``f_i(x)`` and ``∇f_i(x)`` for client ``i``."""
        if not 0 <= i < self.n:
            raise ConfigError(f"client {i} out of range [0, {self.n})")
        x = self._x(x)
        g, r = np.empty(self.d), np.empty(self.d)
        v = client_data_grad(self.kind, x, self.indptr, self.indices, self.values, self.b,
                             self.client_ptr[i], self.client_ptr[i + 1], self.inv_m[i], True, g,
                             np.empty(self.max_rows))
        v += regularizer(self.kind, x, float(self.lam), r)
        return v, g + r

    # --- smoothness -------------------------------------------------------
    def _rows(self, i: int) -> sp.csr_matrix:
        r0, r1 = self.client_ptr[i], self.client_ptr[i + 1]
        p0, p1 = self.indptr[r0], self.indptr[r1]
        return sp.csr_matrix((self.values[p0:p1], self.indices[p0:p1], self.indptr[r0:r1 + 1] - p0),
                             shape=(r1 - r0, self.d))

    def client_smoothness(self, i: int) -> np.ndarray:
        """``L_i = c A_iᵀA_i/m_i + c_r λI`` (dense d×d; c, c_r: :attr:`loss_curvature`, :attr:`reg_curvature`)."""
        Ai = self._rows(i)
        Li = (Ai.T @ Ai).toarray() * (self.inv_m[i] * self.loss_curvature)
        Li[np.diag_indices(self.d)] += self.reg_curvature * self.lam
        return Li

    def client_smoothness_constants(self) -> np.ndarray:
        """``λ_max(L_i)`` for every client, from the smaller Gram matrix of its rows (m_i×m_i or d×d)."""
        sizes = np.diff(self.client_ptr)
        out = np.empty(self.n)
        for i in range(self.n):
            Ai = self._rows(i)
            if sizes[i] == 1:
                top = float(Ai.multiply(Ai).sum())
            else:
                G = (Ai @ Ai.T if sizes[i] <= self.d else Ai.T @ Ai).toarray()
                top = float(np.linalg.eigvalsh(0.5 * (G + G.T))[-1])
            out[i] = top * self.inv_m[i] * self.loss_curvature + self.reg_curvature * self.lam
        return out

    def _weighted_rows(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """All rows A and their weights w = 1/(n m_i), so that (1/n) Σ_i A_iᵀA_i/m_i = Aᵀ Diag(w) A."""
        A = sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.m, self.d))
        return A, np.repeat(self.inv_m, np.diff(self.client_ptr)) / self.n

    def smoothness(self) -> np.ndarray:
        """``L = (1/n) Σ L_i`` (dense d×d), from one weighted sparse product."""
        A, w = self._weighted_rows()
        G = (A.T @ sp.diags(w) @ A).toarray()
        L = 0.5 * (G + G.T) * self.loss_curvature
        L[np.diag_indices(self.d)] += self.reg_curvature * self.lam
        return L


@dataclass(frozen=True, eq=False)
class LeastSquares(LogRegNonconvex):
    """Ridge least squares (a quadratic with exact f*), rows split over n clients.

        f_i(x) = (1/(2 m_i)) Σ_{j ∈ client i} (a_jᵀx − b_j)² + (λ/2)‖x‖²,   L_i = A_iᵀA_i/m_i + λI.

    f is a quadratic with Hessian L, so the descent inequality behind Theorem 1
    holds with equality in expectation and the theorem's bound can be checked
    against the exact minimum f* (:attr:`f_lower`), not a loose lower bound.
    """

    name = "least-squares"
    kind = SQUARED
    default_lam = 0.1
    default_x0 = "zeros"
    loss_curvature, reg_curvature = 1.0, 1.0
    f_lower_exact = True

    @cached_property
    def minimizer(self) -> np.ndarray:
        """x* from the normal equations ``L x = (1/n) Σ_i A_iᵀ b_i / m_i`` (least-norm if L is singular)."""
        L = self.smoothness()
        A, w = self._weighted_rows()
        rhs = A.T @ (w * self.b)
        x = np.linalg.lstsq(L, rhs, rcond=None)[0]
        # one step of iterative refinement: the residual in the same precision
        return x + np.linalg.lstsq(L, rhs - L @ x, rcond=None)[0]

    @cached_property
    def f_lower(self) -> float:
        """f* = f(x*), exact up to rounding."""
        return self.f(self.minimizer)
