"""Problems with strict saddles for compressed SGD (Avdiukhin & Yaroslavtsev, Section 4).

All three are finite sums f(x) = (1/m) Σ_j F(x, j) over m samples ("rows"),
split over W workers in contiguous or shuffled row ranges; a minibatch θ is a
set of rows of one worker.  Gradients are hand-written jitted kernels, checked
against finite differences in the tests.

* ``saddle-quartic``: F(x, j) = ½xᵀHx + ½Σ_t a_{jt} x_t² + (λ/4)‖x‖⁴ with
  H = Q Diag(−1, linspace(½, 2, d−1)) Qᵀ (Q a seeded rotation) and Σ_j a_j = 0.
  The origin is a strict saddle (λ_min = −1); the minima are ±v₁/√λ with
  f* = −1/(4λ).  Minibatch noise (a_B ∘ x) vanishes at the saddle.
* ``linear-autoencoder``: F(W₁, W₂; j) = ½‖x_j − W₂W₁x_j‖² (+ weight decay),
  W₁ ∈ ℝ^{h×p}, W₂ ∈ ℝ^{p×h}.  The origin is a strict saddle with
  λ_min = −λ₁(Σ), Σ = XᵀX/m; without weight decay f* = ½Σ_{i>h} λ_i(Σ) (PCA).
* ``mlp-autoencoder``: p-h₁-…-h_k-…-p with tanh hidden layers and a linear
  output, ½‖x_j − g(x_j)‖².  "saddle" is all weights 0 and the output bias at
  the data mean: every weight gradient is exactly 0 there, so noiseless SGD
  never leaves it; with ≥ 2 hidden layers the saddle is degenerate (λ_min = 0).

Data for the autoencoders: scikit-learn's bundled 8×8 digits (default, offline),
MNIST IDX image files (``--dataset path/train-images-idx3-ubyte[.gz]``), or the
dense features of any LIBSVM dataset.
"""
from __future__ import annotations

import functools
import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._jit import njit
from ..environment import check_memory
from ..errors import ConfigError, DataError
from .logreg import split_rows

P_QUARTIC, P_LINEAR_AE, P_MLP_AE, P_CONV_AE, P_MLP_CLS = 0, 1, 2, 3, 4
X0_KINDS = ("saddle", "random", "zeros")
MAX_EXACT_HESSIAN_D = 1500


# --- kernels ----------------------------------------------------------------
@njit
def batch_loss_grad(kind, F, G, V, Iv, x, rows, nb, g, scratch):
    """Mean of F(x, j) over ``j in rows[:nb]``; its gradient into ``g`` (overwritten).

    ``F``, ``G``, ``V``, ``Iv`` are the problem's arrays (:meth:`kernel_data`).
    ``scratch`` holds at least :meth:`scratch_size` doubles.
    """
    d = x.shape[0]
    for t in range(d):
        g[t] = 0.0
    inv = 1.0 / nb
    loss = 0.0
    if kind == P_QUARTIC:
        # F rows: a_j; G: H; V[0]: λ
        abar = scratch[:d]
        for t in range(d):
            abar[t] = 0.0
        for q in range(nb):
            j = rows[q]
            for t in range(d):
                abar[t] += F[j, t]
        sq = 0.0
        for t in range(d):
            abar[t] *= inv
            sq += x[t] * x[t]
        lam = V[0]
        for a in range(d):
            hx = 0.0
            for b in range(d):
                hx += G[a, b] * x[b]
            loss += 0.5 * x[a] * hx + 0.5 * abar[a] * x[a] * x[a]
            g[a] = hx + abar[a] * x[a] + lam * sq * x[a]
        return loss + 0.25 * lam * sq * sq
    if kind == P_LINEAR_AE:
        p, h = Iv[0], Iv[1]
        z = scratch[:h]
        u = scratch[h:2 * h]
        r = scratch[2 * h:2 * h + p]
        o2 = h * p  # W2 starts here
        for q in range(nb):
            j = rows[q]
            for b in range(h):
                s = 0.0
                for c in range(p):
                    s += x[b * p + c] * F[j, c]
                z[b] = s
            for b in range(h):
                u[b] = 0.0
            for a in range(p):
                s = 0.0
                for b in range(h):
                    s += x[o2 + a * h + b] * z[b]
                ra = s - F[j, a]
                r[a] = ra
                loss += 0.5 * ra * ra
                for b in range(h):
                    g[o2 + a * h + b] += ra * z[b]
                    u[b] += x[o2 + a * h + b] * ra
            for b in range(h):
                for c in range(p):
                    g[b * p + c] += u[b] * F[j, c]
        loss *= inv
        for t in range(d):
            g[t] *= inv
    else:  # P_MLP_AE, P_MLP_CLS (G: the one-hot labels)
        loss = _mlp_loss_grad(kind == P_MLP_CLS, F, G, Iv, x, rows, nb, g, scratch) * inv
        for t in range(d):
            g[t] *= inv
    wd = V[0]
    if wd != 0.0:
        sq = 0.0
        for t in range(d):
            sq += x[t] * x[t]
            g[t] += wd * x[t]
        loss += 0.5 * wd * sq
    return loss


#: samples per block of the MLP kernel: activations are kept feature-major
#: (width × MLP_CHUNK) so every inner loop is an axpy over the block, which
#: vectorizes without reassociating any sum (the order stays fixed)
MLP_CHUNK = 32


@njit
def _mlp_layout(Iv):
    """Offsets of the layers' activation blocks in the scratch (width × MLP_CHUNK each) and the widest layer."""
    nl = Iv[0]
    act_off = np.empty(nl + 1, dtype=np.int64)
    off = 0
    wmax = 0
    for l in range(nl + 1):
        act_off[l] = off
        off += Iv[1 + l] * MLP_CHUNK
        wmax = max(wmax, Iv[1 + l])
    return act_off, off, wmax


@njit
def _mlp_forward(F, rows, q0, cb, Iv, act_off, x, scratch):
    """Activations of samples ``rows[q0:q0+cb]`` into the scratch blocks; returns the parameter count.

    Layer l has W_l (n_l × n_{l−1}, row-major) then b_l; tanh on hidden layers, the output linear.
    """
    nl = Iv[0]
    CH = MLP_CHUNK
    for c in range(Iv[1]):
        for b in range(cb):
            scratch[c * CH + b] = F[rows[q0 + b], c]
    po = 0
    for l in range(1, nl + 1):
        nin, nout = Iv[l], Iv[1 + l]
        ai, ao = act_off[l - 1], act_off[l]
        bo = po + nout * nin
        for a in range(nout):
            z = scratch[ao + a * CH:ao + a * CH + cb]
            ba = x[bo + a]
            for b in range(cb):
                z[b] = ba
            for c in range(nin):
                w = x[po + a * nin + c]
                src = scratch[ai + c * CH:ai + c * CH + cb]
                for b in range(cb):
                    z[b] += w * src[b]
            if l < nl:
                for b in range(cb):
                    z[b] = math.tanh(z[b])
        po = bo + nout
    return po


@njit
def _mlp_loss_grad(classify, F, Y, Iv, x, rows, nb, g, scratch):
    """Σ over ``rows[:nb]`` of the MLP's loss, gradient added into ``g`` (the caller divides by nb).

    ``classify`` False: the autoencoder ½‖x_j − g(x_j)‖² (targets the inputs); True: softmax
    cross-entropy of the output logits against the one-hot rows of ``Y``.
    ``Iv = [L, n_0, ..., n_L]``; activations are kept feature-major (width × MLP_CHUNK) so every
    inner loop is an axpy over the block, which vectorizes without reassociating any sum.
    """
    nl = Iv[0]
    width = Iv[1:]
    CH = MLP_CHUNK
    act_off, off, wmax = _mlp_layout(Iv)
    delta = scratch[off:off + wmax * CH]
    delta2 = scratch[off + wmax * CH:off + 2 * wmax * CH]
    at = scratch[off + 2 * wmax * CH:off + 3 * wmax * CH]
    p, q = width[0], width[nl]
    loss = 0.0
    for q0 in range(0, nb, CH):
        cb = min(CH, nb - q0)
        po = _mlp_forward(F, rows, q0, cb, Iv, act_off, x, scratch)
        ao = act_off[nl]
        if classify:  # δ = softmax(z) − y, loss = logsumexp(z) − z_y (one-hot y)
            for b in range(cb):
                j = rows[q0 + b]
                zmax = -math.inf
                for a in range(q):
                    zmax = max(zmax, scratch[ao + a * CH + b])
                se = 0.0
                for a in range(q):
                    se += math.exp(scratch[ao + a * CH + b] - zmax)
                lse = zmax + math.log(se)
                for a in range(q):
                    za = scratch[ao + a * CH + b]
                    loss += Y[j, a] * (lse - za)
                    delta[a * CH + b] = math.exp(za - lse) - Y[j, a]
        else:
            for a in range(p):
                for b in range(cb):
                    ra = scratch[ao + a * CH + b] - F[rows[q0 + b], a]
                    loss += 0.5 * ra * ra
                    delta[a * CH + b] = ra
        for l in range(nl, 0, -1):
            nin, nout = width[l - 1], width[l]
            ai = act_off[l - 1]
            po -= nout * nin + nout
            bo = po + nout * nin
            for c in range(nin):           # A_{l-1} transposed: sample-major rows for the gW axpys
                for b in range(cb):
                    at[b * nin + c] = scratch[ai + c * CH + b]
            for a in range(nout):
                s = 0.0
                for b in range(cb):
                    da = delta[a * CH + b]
                    s += da
                    gw = g[po + a * nin:po + (a + 1) * nin]
                    src = at[b * nin:(b + 1) * nin]
                    for c in range(nin):
                        gw[c] += da * src[c]
                g[bo + a] += s
            if l > 1:
                for t in range(nin * CH):
                    delta2[t] = 0.0
                for a in range(nout):
                    da = delta[a * CH:a * CH + cb]
                    for c in range(nin):
                        w = x[po + a * nin + c]
                        dst = delta2[c * CH:c * CH + cb]
                        for b in range(cb):
                            dst[b] += w * da[b]
                for c in range(nin):
                    for b in range(cb):
                        act = scratch[ai + c * CH + b]
                        delta[c * CH + b] = delta2[c * CH + b] * (1.0 - act * act)
    return loss


@njit
def mlp_accuracy(Iv, x, X, y, scratch):
    """Fraction of the rows of ``X`` whose largest logit is at their label ``y`` (ties: the first index)."""
    nl = Iv[0]
    q = Iv[1 + nl]
    CH = MLP_CHUNK
    act_off, _, _ = _mlp_layout(Iv)
    rows = np.arange(X.shape[0])
    ao = act_off[nl]
    right = 0
    for q0 in range(0, X.shape[0], CH):
        cb = min(CH, X.shape[0] - q0)
        _mlp_forward(X, rows, q0, cb, Iv, act_off, x, scratch)
        for b in range(cb):
            best = 0
            for a in range(1, q):
                if scratch[ao + a * CH + b] > scratch[ao + best * CH + b]:
                    best = a
            if best == y[q0 + b]:
                right += 1
    return right / X.shape[0]


@njit
def linear_ae_full(x, Sigma, p, h, wd, g, want_hvp, v, hv):
    """Full-data f of the linear autoencoder via Σ = XᵀX/m (O(p²h + p³), not O(m p h)).

    f = ½ tr((M − I) Σ (M − I)ᵀ), M = W₂W₁; ∇_{W₂} f = (M − I)ΣW₁ᵀ, ∇_{W₁} f = W₂ᵀ(M − I)Σ.
    With ``want_hvp`` also the exact Hessian-vector product along ``v`` = (V₁, V₂):
    d∇_{W₂} = (dM)ΣW₁ᵀ + (M − I)ΣV₁ᵀ, d∇_{W₁} = V₂ᵀ(M − I)Σ + W₂ᵀ(dM)Σ, dM = V₂W₁ + W₂V₁.
    """
    W1 = x[:h * p].reshape(h, p)
    W2 = x[h * p:].reshape(p, h)
    E = W2 @ W1
    for a in range(p):
        E[a, a] -= 1.0
    ES = E @ Sigma                         # (M − I)Σ
    f = 0.5 * np.sum(ES * E)
    g[:h * p] = (W2.T @ ES).ravel()
    g[h * p:] = (ES @ W1.T).ravel()
    if wd != 0.0:
        f += 0.5 * wd * np.sum(x * x)
        for t in range(x.shape[0]):
            g[t] += wd * x[t]
    if want_hvp:
        V1 = v[:h * p].reshape(h, p)
        V2 = v[h * p:].reshape(p, h)
        dMS = (V2 @ W1 + W2 @ V1) @ Sigma
        hv[:h * p] = (V2.T @ ES + W2.T @ dMS).ravel()
        hv[h * p:] = (dMS @ W1.T + ES @ V1.T).ravel()
        if wd != 0.0:
            for t in range(x.shape[0]):
                hv[t] += wd * v[t]
    return f


# --- data -------------------------------------------------------------------
def load_matrix(dataset, data_dir=None, allow_hash_mismatch: bool = False) -> tuple[str, np.ndarray, str]:
    """Dense samples (m×p) for the autoencoders: digits (8×8), MNIST (:func:`load_images`), or LIBSVM features."""
    if dataset is None or str(dataset).lower() in ("digits", "default", "synthetic"):
        from sklearn.datasets import load_digits
        X = load_digits().data / 16.0
        return "digits", np.ascontiguousarray(X, dtype=np.float64), "scikit-learn load_digits (8×8, /16)"
    path = Path(str(dataset))
    if str(dataset).lower() == "mnist" or (path.is_file() and ("idx3" in path.name
                                                               or path.name.endswith((".idx", ".idx.gz")))):
        imgs = load_images(dataset, data_dir, allow_hash_mismatch)
        return imgs["name"], imgs["X"], imgs["source"]
    from .. import data
    ds = data.load(dataset, data_dir=data_dir, allow_hash_mismatch=allow_hash_mismatch)
    if ds.A.shape[1] > 4096:
        raise DataError(f"dataset {ds.name!r} has {ds.A.shape[1]} features; autoencoders here take at most 4096")
    return ds.name, np.ascontiguousarray(ds.A.toarray(), dtype=np.float64), ds.source


#: the MNIST files ``--dataset mnist`` looks for in the data directories (shared/datasets/README.md)
MNIST_FILES = (("mnist/t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
               ("mnist/train-images-idx3-ubyte.gz", None))
IDX_IMAGES, IDX_LABELS = 2051, 2049


def _read_idx(path, magic: int, what: str) -> tuple[bytes, tuple]:
    """Raw payload and dimensions of an IDX file (optionally gzipped), checked against its header."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip: truncated stream or not gzip at all
        raise DataError(f"{str(path)!r}: cannot read the IDX {what} file ({exc})") from None
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise DataError(f"{str(path)!r} is not an IDX {what} file (magic number {magic} expected, "
                        f"got {got if got is not None else 'nothing'})")
    nd = 3 if magic == IDX_IMAGES else 1
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd))
    need = 4 + 4 * nd + int(np.prod(dims))
    if len(raw) != need:
        raise DataError(f"{str(path)!r}: header says {'×'.join(map(str, dims))} ({need} bytes), "
                        f"file has {len(raw)} bytes: truncated?")
    return raw[4 + 4 * nd:], dims


def read_idx_images(path, with_shape: bool = False):
    """MNIST-style IDX3 image file (optionally gzipped) -> (m, rows·cols) floats in [0, 1] (and (rows, cols))."""
    raw, (m, r, c) = _read_idx(path, IDX_IMAGES, "image")
    X = np.frombuffer(raw, dtype=np.uint8).reshape(m, r * c).astype(np.float64) / 255.0
    return (X, (r, c)) if with_shape else X


def read_idx_labels(path) -> np.ndarray:
    """IDX1 label file (optionally gzipped) -> int64 labels."""
    raw, _ = _read_idx(path, IDX_LABELS, "label")
    return np.frombuffer(raw, dtype=np.uint8).astype(np.int64)


def labels_beside(images: Path) -> Path | None:
    """``t10k-images-idx3-ubyte.gz`` -> ``t10k-labels-idx1-ubyte.gz`` in the same folder, if it is there."""
    name = images.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    if name == images.name:
        return None
    for cand in (images.with_name(name), images.with_name(name[:-3] if name.endswith(".gz") else name + ".gz")):
        if cand.is_file():
            return cand
    return None


def digits28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits (/16) resized to 28×28 (bilinear): an offline stand-in for MNIST."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    dg = load_digits()
    imgs = zoom(dg.images / 16.0, (1, 3.5, 3.5), order=1)
    return np.ascontiguousarray(np.clip(imgs, 0.0, 1.0).reshape(len(imgs), 784)), dg.target.astype(np.int64)


def load_images(dataset, data_dir=None, allow_hash_mismatch: bool = False, labels: bool = False) -> dict:
    """Images for the convolutional problems: ``{"name", "X" (m × h·w), "shape", "y", "source"}``.

    ``None``/``digits``: :func:`digits28` (bundled, offline); ``mnist``: the MNIST files under the
    data directories (:data:`MNIST_FILES`); else a path to an IDX3 image file, whose labels file is
    found beside it (needed when ``labels``).
    """
    from .. import data
    key = None if dataset is None else str(dataset).lower()
    if key in (None, "digits", "digits28", "default"):
        X, y = digits28()
        return {"name": "digits28", "X": X, "shape": (28, 28), "y": y,
                "source": "scikit-learn load_digits (8×8, /16) resized to 28×28, bilinear"}
    if key == "mnist":
        found = [(d / f, sha) for d in data.data_dirs(data_dir) for f, sha in MNIST_FILES if (d / f).is_file()]
        if not found:
            where = ", ".join(str(d) for d in data.data_dirs(data_dir))
            raise DataError(f"dataset 'mnist' not found: looked for {', '.join(f for f, _ in MNIST_FILES)} in {where} "
                            "(set --data-dir or $CGDBENCH_DATA, or pass the image file's path)")
        path, sha = found[0]
        if sha and not allow_hash_mismatch and data.sha256_of(path) != sha:
            raise DataError(f"{str(path)!r}: sha256 differs from the published MNIST file; "
                            "pass --allow-hash-mismatch to use it anyway")
    else:
        path = Path(str(dataset))
        if path.is_dir():
            raise DataError(f"--dataset {str(dataset)!r} is a directory; give the IDX3 image file inside it")
        if not path.is_file():
            raise DataError(f"--dataset {str(dataset)!r}: no such file (the image problems take digits, mnist, "
                            "or an IDX3 image file such as t10k-images-idx3-ubyte.gz)")
    X, shape = read_idx_images(path, with_shape=True)
    y = None
    lab = labels_beside(path)
    if lab is not None:
        y = read_idx_labels(lab)
        if y.size != X.shape[0]:
            raise DataError(f"{str(lab)!r} has {y.size} labels for the {X.shape[0]} images of {str(path)!r}")
    elif labels:
        raise DataError(f"no labels file beside {str(path)!r} (expected e.g. "
                        f"{path.name.replace('images-idx3', 'labels-idx1')!r}): this problem needs labels")
    return {"name": path.name if key != "mnist" else "mnist-t10k", "X": X, "shape": shape, "y": y,
            "source": str(path) + (f" (labels {lab.name})" if lab is not None else "")}


def _split(m: int, workers: int, split: str, seed: int, labels=None, who: str = "this problem"):
    """Row order and worker pointers, as logreg splits clients (``by-label``: the problem's labels)."""
    if workers > m:
        raise ConfigError(f"--clients {workers}: more workers than samples ({m})")
    return split_rows(m, workers, split, seed, labels=labels, who=who)


#: share of each class held out as the classifier's test set (a fixed, stratified split)
TEST_FRACTION = 0.2


def load_labelled(dataset, data_dir=None, allow_hash_mismatch: bool = False) -> dict:
    """Images and labels for the classifier, split into train and a held-out test set.

    ``None``/``digits``: scikit-learn's 8×8 digits (/16, bundled); ``digits28``, ``mnist`` or an
    IDX3 image file with its labels file beside it: :func:`load_images`.  The test set is
    :data:`TEST_FRACTION` of every class, drawn with a fixed seed (the same for every run).
    Returns ``{"name", "X", "y", "X_test", "y_test", "source", "classes"}``.
    """
    key = None if dataset is None else str(dataset).lower()
    if key in (None, "digits", "default"):
        from sklearn.datasets import load_digits
        dg = load_digits()
        name, X, y, source = "digits", dg.data / 16.0, dg.target.astype(np.int64), "scikit-learn load_digits (8×8, /16)"
    else:
        imgs = load_images(dataset, data_dir, allow_hash_mismatch, labels=True)
        name, X, y, source = imgs["name"], imgs["X"], imgs["y"], imgs["source"]
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(f"{name!r}: every image has label {classes[0] if classes.size else '?'}; "
                        "a classifier needs at least 2 classes")
    rng = np.random.default_rng(np.random.SeedSequence([0x7E57, y.size]))
    test = np.zeros(y.size, dtype=bool)
    for c in classes:
        idx = np.flatnonzero(y == c)
        test[rng.permutation(idx)[:int(round(TEST_FRACTION * idx.size))]] = True
    yi = np.searchsorted(classes, y)  # labels as 0..C−1
    return {"name": name, "X": np.ascontiguousarray(X[~test], dtype=np.float64), "y": yi[~test],
            "X_test": np.ascontiguousarray(X[test], dtype=np.float64), "y_test": yi[test],
            "source": source, "classes": classes}


def _no_dim(dim) -> None:
    if dim is not None:
        raise ConfigError(f"--dim {dim}: the autoencoders take their size from the data and --hidden")


def _mlp_blocks(widths, workers: int, hidden) -> np.ndarray:
    """The MLP's per-layer parameter offsets (W then b each), after checking that the engine's d-vectors
    (per-worker errors, per-range sums: about W + 70 of them) fit in memory."""
    ptr = np.concatenate([[0], np.cumsum([a * b + b for a, b in zip(widths[:-1], widths[1:])])]).astype(np.int64)
    d = int(ptr[-1])
    check_memory(8.0 * d * (workers + 70), f"--hidden {hidden} ({'-'.join(map(str, widths))}: d = {d:,} "
                 f"parameters, {workers} worker(s))", "use narrower layers")
    return ptr


def _hidden(spec, default: tuple) -> tuple:
    if spec is None or spec == "":
        return default
    try:
        sizes = tuple(int(t) for t in str(spec).split(","))
    except ValueError:
        raise ConfigError(f"--hidden {spec!r}: give layer widths as integers, e.g. 32,8,32") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--hidden {spec!r}: every width must be >= 1")
    return sizes


# --- problems ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SaddleProblem:
    """Common interface of the compressed-SGD problems (finite sums over rows)."""

    F: np.ndarray = field(repr=False)
    G: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)
    Iv: np.ndarray = field(repr=False)
    worker_ptr: np.ndarray = field(repr=False)
    block_ptr: np.ndarray = field(repr=False)
    dataset_info: dict = field(default_factory=dict)
    f_star: float | None = None          # exact minimum where known
    arch: object = field(default=None, repr=False)   # conv-autoencoder: its conv.Arch
    kind = -1
    name = "saddle"
    oracle = "minibatch"            # minibatch gradients and HVPs: sgd/ef-sgd
    default_lam = 0.0               # weight decay
    default_x0 = "random"
    x0_choices = X0_KINDS
    #: RunConfig defaults of this problem (config.RUN_DEFAULTS for the rest)
    run_defaults = {}
    #: η for deterministic compressors; random ones get min(eta0, μ/L) (``default_lr``)
    eta0 = 0.1
    #: λ_min at the end of a run by default (False where d makes it minutes: ask with --sosp-every)
    final_sosp = True
    #: the rows carry class labels (``--split by-label``, test accuracy)
    labelled = False

    def smoothness(self) -> float | None:
        """L near the minima, where known (None: unknown, and the default η is ``eta0``)."""
        return None

    def default_lr(self, mu: float, random_compressor: bool) -> tuple[float, str]:
        """The default η and how it was chosen.

        With error feedback a random μ-compressor (RandomK unscaled: each coordinate sent about
        every 1/μ iterations with 1/μ accumulated gradients) takes an effective step η/μ on a
        coordinate, so η <= μ/L keeps that step within 1/L; deterministic ones (identity, TopK)
        use ``eta0`` (docs/paper-notes.md §7).
        """
        L = self.smoothness()
        if random_compressor and L and mu < 1 and mu / L < self.eta0:
            return mu / L, f"μ/L = {mu:.4g}/{L:.4g} (random compressor; the problem's η is {self.eta0:g})"
        return self.eta0, f"the problem's default η = {self.eta0:g}"

    @property
    def m(self) -> int:
        return self.F.shape[0]

    @property
    def n(self) -> int:
        return self.worker_ptr.size - 1

    @property
    def d(self) -> int:
        raise NotImplementedError

    @property
    def max_rows(self) -> int:
        return int(np.diff(self.worker_ptr).max())

    def scratch_size(self) -> int:
        return max(1, self.d)

    def kernel_data(self):
        return (self.kind, self.F, self.G, self.V, self.Iv)

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out samples and labels whose accuracy is logged (a 1×1 placeholder where there are none)."""
        return np.zeros((1, 1)), np.zeros(1, dtype=np.int64)

    # --- oracle (Python convenience; the engine calls the kernels) ------------
    def _x(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.d,):
            raise ConfigError(f"{self.name}: x must have shape ({self.d},), got {x.shape}")
        return x

    def batch_f_and_grad(self, x, rows) -> tuple[float, np.ndarray]:
        x = self._x(x)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        g = np.empty(self.d)
        f = batch_loss_grad(*self.kernel_data(), x, rows, rows.size, g, np.empty(self.scratch_size()))
        return float(f), g

    def f_and_grad(self, x) -> tuple[float, np.ndarray]:
        return self.batch_f_and_grad(x, np.arange(self.m))

    def f(self, x) -> float:
        return self.f_and_grad(x)[0]

    def grad(self, x) -> np.ndarray:
        return self.f_and_grad(x)[1]

    def hvp(self, x, v) -> np.ndarray:
        """∇²f(x)·v by a central difference of gradients (exact for subclasses that override)."""
        x, v = self._x(x), self._x(v)
        nv = np.linalg.norm(v)
        if nv == 0:
            return np.zeros(self.d)
        eps = 1e-5 * max(1.0, np.linalg.norm(x)) / nv
        return (self.grad(x + eps * v) - self.grad(x - eps * v)) / (2 * eps)

    def hessian(self, x) -> np.ndarray:
        """Dense ∇²f(x) from d Hessian-vector products, symmetrised (small d only)."""
        if self.d > MAX_EXACT_HESSIAN_D:
            raise ConfigError(f"{self.name}: d = {self.d} is too large for a dense Hessian "
                              f"(limit {MAX_EXACT_HESSIAN_D}); use lambda_min (Lanczos)")
        x = self._x(x)
        H = np.empty((self.d, self.d))
        e = np.zeros(self.d)
        for i in range(self.d):
            e[i] = 1.0
            H[:, i] = self.hvp(x, e)
            e[i] = 0.0
        return 0.5 * (H + H.T)

    def saddle(self) -> np.ndarray:
        raise NotImplementedError

    def x0(self, kind: str | None = None, seed: int = 0) -> np.ndarray:
        kind = kind or self.default_x0
        if kind == "saddle":
            return self.saddle()
        if kind == "zeros":
            return np.zeros(self.d)
        if kind == "random":
            return self._random_init(np.random.default_rng(np.random.SeedSequence([seed, 0x1417])))
        raise ConfigError(f"unknown --x0 {kind!r} for {self.name}; choose one of: {', '.join(self.x0_choices)}")

    def _random_init(self, rng) -> np.ndarray:
        return rng.normal(0.0, 1.0 / math.sqrt(self.d), self.d)


@dataclass(frozen=True, eq=False)
class SaddleQuartic(SaddleProblem):
    """½xᵀHx + (λ/4)‖x‖⁴, H indefinite (λ_min = −1): strict saddle at 0, exact f* and Hessian."""

    name = "saddle-quartic"
    kind = P_QUARTIC
    default_lam = 1.0               # the quartic coefficient
    # measured (docs/paper-notes.md §7): ε-SOSP from the saddle for identity, top-k:0.01, rand-k:0.01
    run_defaults = {"iters": 3000, "noise_schedule": "step:0.5:0", "eps": 1e-3}
    eta0 = 0.03

    def smoothness(self):
        """λ_max(∇²f) at the minima ±v₁/√λ: H + I + 2v₁v₁ᵀ has eigenvalues eig(H) + 1 and 2, so 3."""
        return 3.0

    @classmethod
    def create(cls, dim: int | None = None, lam: float = 1.0, samples: int = 64, clients: int = 1,
               split: str = "contiguous", split_seed: int = 0, noise_scale: float = 0.2, dataset=None, hidden=None,
               **_):
        if hidden is not None:
            raise ConfigError(f"--hidden {hidden!r}: saddle-quartic has no layers (use --dim)")
        if dataset is not None:
            raise ConfigError(f"saddle-quartic generates its own data; --dataset {dataset!r} does not apply "
                              "(use --dim)")
        d = 20 if dim is None else int(dim)
        if d < 2:
            raise ConfigError(f"--dim {d}: saddle-quartic needs d >= 2")
        check_memory(4 * 8.0 * d * d + 8.0 * samples * d, f"saddle-quartic with --dim {d} (its d×d Hessian H, "
                     "the rotation and their product)", "use a smaller --dim")
        if not lam > 0:
            raise ConfigError(f"--lam {lam!r}: saddle-quartic needs a quartic coefficient λ > 0")
        rng = np.random.default_rng(np.random.SeedSequence([d, 0x5ADD1E]))
        Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        eig = np.concatenate([[-1.0], np.linspace(0.5, 2.0, d - 1)])
        H = (Q * eig) @ Q.T
        H = 0.5 * (H + H.T)
        A = rng.normal(0.0, noise_scale, (samples, d))
        A -= A.mean(axis=0)                   # Σ_j a_j = 0: the a_j only perturb minibatches
        order, ptr = _split(samples, clients, split, split_seed, who=cls.name)
        A = np.ascontiguousarray(A[order])
        info = {"name": f"quartic-d{d}", "rows": samples, "features": d, "source": "generated"}
        return cls(A, np.ascontiguousarray(H), np.array([float(lam)]), np.array([d], dtype=np.int64), ptr,
                   np.array([0, d], dtype=np.int64), info, f_star=-1.0 / (4.0 * lam))

    @property
    def d(self) -> int:
        return int(self.Iv[0])

    @property
    def lam(self) -> float:
        return float(self.V[0])

    def saddle(self):
        return np.zeros(self.d)

    def minimizer(self) -> np.ndarray:
        w, U = np.linalg.eigh(self.G)
        return U[:, 0] / math.sqrt(self.lam)

    def hvp(self, x, v):
        x, v = self._x(x), self._x(v)
        abar = self.F.mean(axis=0)
        return self.G @ v + abar * v + self.lam * (np.dot(x, x) * v + 2.0 * x * np.dot(x, v))

    def hessian(self, x):
        x = self._x(x)
        H = self.G + np.diag(self.F.mean(axis=0)) + self.lam * (np.dot(x, x) * np.eye(self.d) + 2.0 * np.outer(x, x))
        return 0.5 * (H + H.T)


@dataclass(frozen=True, eq=False)
class LinearAutoencoder(SaddleProblem):
    """(1/2m)‖X − W₂W₁X‖²_F: strict saddle at the origin, f* from PCA."""

    name = "linear-autoencoder"
    kind = P_LINEAR_AE
    # ε = 0.25: minibatch SGD (B = 64) keeps ‖∇f‖ near 0.1 at η = 0.03 whatever the noise (measured)
    run_defaults = {"iters": 80000, "noise_schedule": "step:0.5:0", "eps": 0.25}
    eta0 = 0.03

    def smoothness(self):
        """2λ₁(Σ) (+ weight decay): λ_max(∇²f) at the PCA solution is about that (paper-notes §7)."""
        return 2.0 * float(self.dataset_info["sigma_top_eigenvalue"]) + float(self.V[0])

    @classmethod
    def create(cls, dataset=None, data_dir=None, allow_hash_mismatch=False, hidden=None, lam: float = 0.0,
               clients: int = 1, split: str = "contiguous", split_seed: int = 0, dim=None, **_):
        _no_dim(dim)
        sizes = _hidden(hidden, (8,))
        if len(sizes) != 1:
            raise ConfigError(f"--hidden {hidden!r}: the linear autoencoder has one hidden width, e.g. 8")
        h = sizes[0]
        name, X, source = load_matrix(dataset, data_dir, allow_hash_mismatch)
        m, p = X.shape
        if h > p:
            raise ConfigError(f"--hidden {h}: wider than the data (p = {p}); the saddle needs h <= p")
        order, ptr = _split(m, clients, split, split_seed, who=cls.name)
        X = np.ascontiguousarray(X[order])
        Sigma = X.T @ X / m
        ev = np.linalg.eigvalsh(Sigma)[::-1]
        f_star = 0.5 * float(ev[h:].sum()) if lam == 0 else None
        info = {"name": name, "rows": m, "features": p, "source": source, "hidden": h,
                "sigma_top_eigenvalue": float(ev[0])}
        return cls(X, np.ascontiguousarray(Sigma), np.array([float(lam)]), np.array([p, h], dtype=np.int64),
                   ptr, np.array([0, h * p, 2 * h * p], dtype=np.int64), info, f_star=f_star)

    @property
    def d(self) -> int:
        return int(2 * self.Iv[0] * self.Iv[1])

    def scratch_size(self) -> int:
        return int(2 * self.Iv[1] + self.Iv[0])

    def saddle(self):
        return np.zeros(self.d)

    def _random_init(self, rng):
        p, h = int(self.Iv[0]), int(self.Iv[1])
        return rng.uniform(-1, 1, self.d) * math.sqrt(3.0 / (p + h))  # Glorot-like scale

    def _full(self, x, v=None):
        g, hv = np.empty(self.d), np.empty(self.d)
        f = linear_ae_full(self._x(x), self.G, int(self.Iv[0]), int(self.Iv[1]), float(self.V[0]), g,
                           v is not None, self._x(v) if v is not None else g, hv)
        return f, g, hv

    def f_and_grad(self, x):
        f, g, _ = self._full(x)
        return float(f), g

    def hvp(self, x, v):
        return self._full(x, v)[2]


@dataclass(frozen=True, eq=False)
class MLPAutoencoder(SaddleProblem):
    """p-h₁-…-p tanh autoencoder (default 64-32-8-32-64 on digits), per-layer blocks."""

    name = "mlp-autoencoder"
    kind = P_MLP_AE

    @classmethod
    def create(cls, dataset=None, data_dir=None, allow_hash_mismatch=False, hidden=None, lam: float = 0.0,
               clients: int = 1, split: str = "contiguous", split_seed: int = 0, dim=None, **_):
        _no_dim(dim)
        sizes = _hidden(hidden, (32, 8, 32))
        name, X, source = load_matrix(dataset, data_dir, allow_hash_mismatch)
        m, p = X.shape
        widths = (p, *sizes, p)
        blocks = _mlp_blocks(widths, clients, hidden)
        order, ptr = _split(m, clients, split, split_seed, who=cls.name)
        X = np.ascontiguousarray(X[order])
        info = {"name": name, "rows": m, "features": p, "source": source,
                "architecture": "-".join(map(str, widths)), "activation": "tanh (hidden), linear (output)"}
        return cls(X, np.zeros((1, 1)), np.array([float(lam)]),
                   np.array([len(widths) - 1, *widths], dtype=np.int64), ptr, blocks, info, f_star=None)

    @property
    def widths(self) -> tuple:
        return tuple(int(w) for w in self.Iv[1:])

    @property
    def d(self) -> int:
        return int(self.block_ptr[-1])

    def scratch_size(self) -> int:
        return int((sum(self.widths) + 3 * max(self.widths)) * MLP_CHUNK)

    def saddle(self):
        """Zero weights, zero hidden biases, output bias = mean sample: a stationary point."""
        x = np.zeros(self.d)
        x[self.d - self.widths[-1]:] = self.F.mean(axis=0)
        return x

    def _random_init(self, rng):
        x = np.zeros(self.d)
        po = 0
        for nin, nout in zip(self.widths[:-1], self.widths[1:]):
            x[po:po + nin * nout] = rng.uniform(-1, 1, nin * nout) * math.sqrt(6.0 / (nin + nout))
            po += nin * nout + nout
        return x



@dataclass(frozen=True, eq=False)
class MLPClassifier(MLPAutoencoder):
    """p-h-…-C tanh MLP with softmax cross-entropy (default 64-32-10 on digits), test accuracy logged: Figure 1."""

    name = "mlp-classifier"
    kind = P_MLP_CLS
    labelled = True
    #: the saddle paper's Figure 1: η = 0.1, from a random start
    run_defaults = {"iters": 3000, "log_every": 25}
    final_sosp = False              # its question is accuracy; λ_min by Lanczos is seconds (--sosp-every N asks)
    X_test: np.ndarray = field(default=None, repr=False)
    y_test: np.ndarray = field(default=None, repr=False)

    @classmethod
    def create(cls, dataset=None, data_dir=None, allow_hash_mismatch=False, hidden=None, lam: float = 0.0,
               clients: int = 1, split: str = "contiguous", split_seed: int = 0, dim=None, **_):
        if dim is not None:
            raise ConfigError(f"--dim {dim}: the classifier takes its size from the data and --hidden")
        sizes = _hidden(hidden, (32,))
        ds = load_labelled(dataset, data_dir, allow_hash_mismatch)
        X, y = ds["X"], ds["y"]
        m, p = X.shape
        q = ds["classes"].size
        widths = (p, *sizes, q)
        blocks = _mlp_blocks(widths, clients, hidden)
        order, ptr = _split(m, clients, split, split_seed, labels=y, who=cls.name)
        X, y = np.ascontiguousarray(X[order]), y[order]
        Y = np.zeros((m, q))
        Y[np.arange(m), y] = 1.0
        info = {"name": ds["name"], "rows": m, "features": p, "source": ds["source"],
                "architecture": "-".join(map(str, widths)), "activation": "tanh (hidden), softmax (output)",
                "classes": [int(c) for c in ds["classes"]], "test_rows": int(ds["y_test"].size),
                "test_split": f"{TEST_FRACTION:.0%} of each class held out (fixed seed)"}
        if split == "by-label":
            info["worker_classes"] = [int(ds["classes"][y[ptr[i]]]) for i in range(clients)]
        return cls(X, Y, np.array([float(lam)]), np.array([len(widths) - 1, *widths], dtype=np.int64), ptr,
                   blocks, info, None, None, ds["X_test"], ds["y_test"])

    def saddle(self):
        """Zero weights and hidden biases, output bias = log class frequencies: a stationary point."""
        x = np.zeros(self.d)
        x[self.d - self.widths[-1]:] = np.log(self.G.mean(axis=0))
        return x

    def test_data(self):
        return self.X_test, self.y_test

    def accuracy(self, x, X=None, y=None) -> float:
        """Share of the test set (or ``X``, ``y``) classified right."""
        X = self.X_test if X is None else np.ascontiguousarray(X, dtype=np.float64)
        y = self.y_test if y is None else np.ascontiguousarray(y, dtype=np.int64)
        return float(mlp_accuracy(self.Iv, self._x(x), X, y, np.empty(self.scratch_size())))


@dataclass(frozen=True, eq=False)
class ConvAutoencoder(SaddleProblem):
    """The saddle paper's convolutional MNIST autoencoder (footnote 7), hand-written kernels (problems/conv.py).

    Encoder conv 16 k3 s2 p1 → conv 32 k3 s2 p1 → conv 64 k7 s1 p0 (ReLU), decoder the mirror in
    transposed convolutions (ReLU but the last); F(x, j) = mean over pixels of (g(y_j) − y_j)², as
    torch.nn.MSELoss, so the paper's η = 0.1 carries over.  ``--hidden`` takes the encoder as
    ``CH:K:S:P,...``.  Blocks: one per layer.
    """

    name = "conv-autoencoder"
    kind = P_CONV_AE
    run_defaults = {"log_every": 50}    # a logged row is a pass over every image
    final_sosp = False                  # d = 210,369: a Lanczos λ_min is minutes of full passes

    @classmethod
    def create(cls, dataset=None, data_dir=None, allow_hash_mismatch=False, hidden=None, lam: float = 0.0,
               clients: int = 1, split: str = "contiguous", split_seed: int = 0, dim=None, **_):
        from .conv import parse_arch
        _no_dim(dim)
        imgs = load_images(dataset, data_dir, allow_hash_mismatch)
        h, w = imgs["shape"]
        arch = parse_arch(hidden, h, w)
        X = imgs["X"]
        order, ptr = _split(X.shape[0], clients, split, split_seed, who=cls.name)
        X = np.ascontiguousarray(X[order])
        info = {"name": imgs["name"], "rows": X.shape[0], "features": h * w, "source": imgs["source"],
                "architecture": arch.describe(), "encoder": arch.spec, "activation": "ReLU (all but the output)"}
        return cls(X, np.zeros((1, 1)), np.array([float(lam)]), arch.Iv, ptr, arch.block_ptr, info, None, arch)

    @property
    def d(self) -> int:
        return self.arch.d

    def saddle(self):
        from .conv import saddle_point
        return saddle_point(self.arch, self.F)

    def _random_init(self, rng):
        from .conv import init_params
        return init_params(self.arch, rng)

    @functools.cached_property
    def _pass_buffers(self):
        """One set of :func:`conv.pass_buffers` (~50 MB) for the Python oracle, not one per call (λ_min's HVPs)."""
        from .conv import pass_buffers
        return pass_buffers(self.arch)

    def batch_f_and_grad(self, x, rows):
        from .conv import conv_pass
        x = self._x(x)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        g = np.empty(self.d)
        f = conv_pass(self.Iv, self.F, float(self.V[0]), x, rows, rows.size, g, *self._pass_buffers)
        return float(f), g
