"""Datasets: the manifest, LIBSVM files found by name or path, and the bundled synthetic default.

Files are never shipped with the project.  **The data-directory rule** (CLI, API, gate,
tests and benchmarks alike): a name is looked up in ``--data-dir`` (``data_dir=``) when
given, else in each directory of ``$CGDBENCH_DATA`` (several separated by ``:``), else in
the cache directory (``$CGDBENCH_CACHE/datasets``, default ``~/.cache/cgdbench/datasets`` on Linux), which
``cgdbench datasets add DIR`` fills with links to (or copies of) the files in DIR.  A
path is read as it is.  Files named in the manifest are checked against its sha256
and shape.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError

SYNTHETIC = "synthetic-a1a"
#: MNIST's IDX files, images with their labels beside them (``--dataset mnist`` of the image problems;
#: the images are checked against their published sha256 when read, problems/saddles.py)
IMAGE_FILES = ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz",
               "mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz")
SYNTHETIC_ALIASES = ("synthetic", "default")
ENV_VAR = "CGDBENCH_DATA"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A binary classification dataset: CSR features ``A`` (m×d) and labels ``b`` in {-1, +1}."""

    name: str
    A: sp.csr_matrix
    b: np.ndarray
    source: str           # file path, or "generated"
    sha256: str | None    # of the file, when read from one
    label_note: str | None = None   # how the file's two label values became ±1, when they were not ±1 or 0/1

    @property
    def shape(self):
        return self.A.shape

    def describe(self) -> dict:
        m, d = self.A.shape
        return {"name": self.name, "rows": m, "features": d, "nnz": int(self.A.nnz),
                "positive": int((self.b > 0).sum()), "source": self.source, "sha256": self.sha256,
                **({"label_note": self.label_note} if self.label_note else {})}


# --- manifest -------------------------------------------------------------
@lru_cache(maxsize=1)
def manifest() -> dict:
    """The dataset manifest (``datasets/manifest.json``): name -> file, rows, features, sha256."""
    try:  # installed wheel: copied into the package
        text = resources.files("cgdbench").joinpath("_datasets/manifest.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        # source checkout / editable install: the file at the top of the repository
        text = (Path(__file__).resolve().parents[1] / "datasets" / "manifest.json").read_text()
    return json.loads(text)["datasets"]


def names() -> list[str]:
    return [SYNTHETIC, *manifest()]


def default_data_dir() -> Path:
    """``$CGDBENCH_CACHE/datasets``, else the user cache directory's (as the kernels' and the stepsizes' caches)."""
    from platformdirs import user_cache_dir
    return Path(os.environ.get("CGDBENCH_CACHE") or user_cache_dir("cgdbench")) / "datasets"


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where a dataset name is looked up, in order (the data-directory rule, module docstring)."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get(ENV_VAR):
        return [Path(p) for p in os.environ[ENV_VAR].split(os.pathsep) if p]
    return [default_data_dir()]


def locate(name: str, data_dir=None) -> Path | None:
    """The file a manifest name resolves to under the rule, or ``None``."""
    entry = manifest()[name]
    return next((d / entry["file"] for d in data_dirs(data_dir) if (d / entry["file"]).is_file()), None)


def status(data_dir=None) -> list[tuple[str, str]]:
    """``(name, where)`` for every dataset: the file found, or ``missing``."""
    rows = [(SYNTHETIC, "bundled (generated from a seed, no file)")]
    for name, entry in manifest().items():
        path = locate(name, data_dir)
        rows.append((name, f"{entry['rows']} × {entry['features']}, {entry['description']}: "
                           + (str(path) if path else f"missing ({entry['file']!r} not found)")))
    # the image problems' data (autoencoders, the classifier): bundled digits, and MNIST's IDX files
    rows.append(("digits, digits28", "bundled (scikit-learn's 8×8 digits; resized to 28×28): the image problems' "
                                     "default"))
    found = [d / f for d in data_dirs(data_dir) for f in IMAGE_FILES if (d / f).is_file()]
    rows.append(("mnist", "MNIST IDX images with their labels, for the image problems: "
                          + (", ".join(str(p) for p in found) if found else
                             f"missing ({IMAGE_FILES[0]!r} not found; `cgdbench datasets add DIR` links it)")))
    return rows


def add(source: str | os.PathLike, copy: bool = False, verify: bool = True) -> list[tuple[str, str]]:
    """Put the manifest's files found in ``source`` into the cache directory (links, or copies).

    Files are checked against the manifest's sha256 first (``verify=False`` skips it);
    returns ``(name, what happened)`` per dataset found.  Nothing is downloaded.
    """
    import shutil
    src = Path(source).expanduser()
    if not src.is_dir():
        raise DataError(f"{str(src)!r} is not a directory; give the directory that holds the LIBSVM files")
    dest = default_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    wanted = [(name, entry["file"], entry["sha256"]) for name, entry in manifest().items()]
    wanted += [(f"mnist ({Path(f).name})", f, None) for f in IMAGE_FILES]  # the image problems' --dataset mnist
    for name, rel, sha in wanted:
        f = src / rel
        if not f.is_file():
            continue
        if verify and sha and sha256_of(f) != sha:
            done.append((name, f"skipped: sha256 of {f} differs from the manifest"))
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.resolve() == f.resolve():
            done.append((name, f"already in the cache directory ({target})"))
            continue
        tmp = target.with_name(f".{target.name}.partial")
        try:
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()
            if copy:
                shutil.copy2(f, tmp)
            else:
                tmp.symlink_to(f.resolve())
            os.replace(tmp, target)  # the old entry stays until the new one is complete
        except OSError as exc:
            raise DataError(f"cannot {'copy' if copy else 'link'} {f} into {dest}: {exc}") from None
        done.append((name, f"{'copied' if copy else 'linked'} {f} -> {target}"))
    if not done:
        raise DataError(f"no file of the manifest ({', '.join(e['file'] for e in manifest().values())}) "
                        f"in {str(src)!r}")
    return done


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- reading --------------------------------------------------------------
#: one data line: a label, an optional svmlight ``qid:N``, ``index:value`` pairs, an optional comment
_LINE = re.compile(r"^\s*[-+]?[0-9.eE+-]+(\s+qid:[0-9]+)?(\s+[0-9]+:[-+]?[0-9.eE+-]+)*\s*(#.*)?$")
#: a feature value this large overflows the smoothness matrix L = AᵀA/(4m) + 2λI (its entries square it)
MAX_FEATURE = 1e150


def _first_bad_line(path: Path) -> tuple[int, str] | None:
    """Line number and text of the first line that is not ``label idx:val ...``."""
    with open(path, "r", errors="replace") as f:
        for no, line in enumerate(f, 1):
            s = line.rstrip("\n")
            if not s.strip() or s.lstrip().startswith("#"):
                continue
            if not _LINE.match(s):
                return no, s[:80]
            for tok in s.split("#")[0].split()[1:]:
                i, _, v = tok.partition(":")
                if i == "qid":  # svmlight's query id, not a feature
                    continue
                try:
                    float(v)
                except ValueError:
                    return no, s[:80]
                if int(i) < 1:
                    return no, s[:80]
    return None


def _last_line(path: Path) -> tuple[int, str] | None:
    """Number and text of the last non-empty line."""
    last = None
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if line.strip() and not line.lstrip().startswith(b"#"):  # comment lines do not end data
                last = (no, line.decode(errors="replace").rstrip("\n"))
    return last


def read_libsvm(path: str | os.PathLike, n_features: int | None = None):
    """Read a LIBSVM/svmlight file into ``(A csr float64, y)`` with scikit-learn's reader.

    A malformed file raises :class:`DataError` naming the first bad line.
    """
    from sklearn.datasets import load_svmlight_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} does not exist")
    try:
        # zero_based=False: LIBSVM indices start at 1; "auto" would silently shift
        # every feature of a file that contains a (bad) index 0
        A, y = load_svmlight_file(str(path), n_features=n_features, dtype=np.float64, zero_based=False)
    except Exception as exc:  # sklearn raises ValueError/RuntimeError without a line number
        bad = _first_bad_line(path)
        where = f" at line {bad[0]}: {bad[1][:80]!r}" if bad else ""
        last = _last_line(path)
        cut = bad and last and bad[0] == last[0] and not path.read_bytes().endswith(b"\n")
        why = "its last line is incomplete: the file looks truncated" if cut else str(exc)
        raise DataError(f"malformed LIBSVM file {str(path)!r}{where} ({why})") from None
    if A.shape[0] == 0:
        raise DataError(f"LIBSVM file {str(path)!r} has no rows")
    if not (np.all(np.isfinite(A.data)) and np.all(np.isfinite(y)) and np.all(np.abs(A.data) <= MAX_FEATURE)):
        no, tok = _first_bad_value(path)
        raise DataError(f"LIBSVM file {str(path)!r} line {no}: value {tok!r} is not a finite number of magnitude "
                        f"<= {MAX_FEATURE:g} (the smoothness matrix squares feature values)")
    last = _last_line(path)
    if last is not None and not _LINE.match(last[1]):
        # a file cut mid-line can still parse ("11:" reads as a value-less token)
        raise DataError(f"malformed LIBSVM file {str(path)!r} at line {last[0]}: {last[1][:80]!r} "
                        "(truncated?)")
    return A.tocsr(), np.asarray(y, dtype=np.float64)


def _first_bad_value(path: Path) -> tuple[int, str]:
    """Line number and token of the first label or feature value that is not finite (or too large)."""
    with open(path, "r", errors="replace") as f:
        for no, line in enumerate(f, 1):
            toks = line.split("#")[0].split()
            for j, tok in enumerate(toks):
                if tok.startswith("qid:"):
                    continue
                v = tok if j == 0 else tok.partition(":")[2]
                try:
                    x = float(v)
                except ValueError:
                    continue
                if not (np.isfinite(x) and (j == 0 or abs(x) <= MAX_FEATURE)):
                    return no, tok
    return 0, "?"


def label_note(y: np.ndarray) -> str | None:
    """How :func:`labels_to_pm1` maps two label values that are neither ±1 nor 0/1 (e.g. digits 3 and 7)."""
    vals = np.unique(y)
    if vals.size == 1:
        return (f"every row has label {vals[0]:g}: a one-class problem (a logistic loss then falls "
                "towards 0 as ‖x‖ grows; check the file)")
    if vals.size == 2 and not (set(vals.tolist()) <= {-1.0, 1.0} or set(vals.tolist()) == {0.0, 1.0}):
        return f"labels {vals[0]:g} and {vals[1]:g} were mapped to −1 and +1 (the smaller value is −1)"
    return None


def labels_to_pm1(y: np.ndarray, name: str) -> np.ndarray:
    """Map two label values to -1 (the smaller) and +1 (the larger)."""
    vals = np.unique(y)
    if vals.size > 2:
        raise DataError(f"dataset {name!r} has {vals.size} label values {vals[:5].tolist()}...; "
                        "binary classification needs two")
    if vals.size == 2:
        return np.where(y == vals[1], 1.0, -1.0)
    return np.where(y > 0, 1.0, -1.0)


def _canonical_csr(A: sp.spmatrix) -> sp.csr_matrix:
    A = sp.csr_matrix(A, dtype=np.float64)
    A.sum_duplicates()
    A.sort_indices()
    A.indptr = A.indptr.astype(np.int64)
    A.indices = A.indices.astype(np.int64)
    return A


def load(dataset: str | os.PathLike | None = None, data_dir=None,
         allow_hash_mismatch: bool = False, seed: int = 0) -> Dataset:
    """A dataset by manifest name, by path, or the bundled synthetic default (``None``)."""
    if dataset is None or str(dataset) in (SYNTHETIC, *SYNTHETIC_ALIASES):
        A, b = synthetic_a1a(seed=seed)
        return Dataset(SYNTHETIC, _canonical_csr(A), b, "generated", None)
    text = str(dataset)
    entries = manifest()
    if text in entries:
        entry = entries[text]
        path = locate(text, data_dir)
        if path is None:
            looked = ", ".join(str(d / entry["file"]) for d in data_dirs(data_dir))
            raise DataError(
                f"dataset {text!r} not found (looked for {looked}). Point --data-dir or ${ENV_VAR} at a "
                f"directory that holds {entry['file']!r}, or run `cgdbench datasets add DIR` once; the "
                f"file is in the LIBSVM binary collection ({manifest_source()})")
        return _load_file(path, text, entry, allow_hash_mismatch)
    path = Path(text)
    if path.is_dir():
        raise DataError(f"dataset {text!r} is a directory; give a LIBSVM file, or a manifest name with "
                        "--data-dir pointing at this directory")
    if path.exists() or os.sep in text or text.startswith("."):
        if not path.is_file():
            raise DataError(f"dataset file {text!r} does not exist")
        entry = entries.get(path.name)
        return _load_file(path, path.name if entry else path.stem, entry, allow_hash_mismatch)
    raise DataError(f"unknown dataset {text!r}: not a path and not one of: {', '.join(names())}")


def manifest_source() -> str:
    return "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html"


def _load_file(path: Path, name: str, entry: dict | None, allow_hash_mismatch: bool) -> Dataset:
    digest = sha256_of(path)
    if entry is not None and digest != entry["sha256"] and not allow_hash_mismatch:
        raise DataError(f"sha256 mismatch for {name!r} ({path}): expected {entry['sha256']}, "
                        f"file has {digest}; pass --allow-hash-mismatch to use your own copy")
    n_features = entry["features"] if entry else None
    A, y = read_libsvm(path, n_features=n_features)
    if entry is not None and A.shape[0] != entry["rows"]:
        raise DataError(f"dataset {name!r} ({path}) has {A.shape[0]} rows, the manifest says "
                        f"{entry['rows']}: the file looks truncated")
    return Dataset(name, _canonical_csr(A), labels_to_pm1(y, name), str(path), digest, label_note(y))


# --- bundled default ------------------------------------------------------
def synthetic_a1a(seed: int = 0, m: int = 1605, d: int = 123, groups: int = 14,
                  positive_fraction: float = 0.25):
    """Sparse binary features shaped like a1a: ``groups`` one-hot categorical groups.

    Each row has exactly one active feature per group (``groups`` non-zeros per
    row, like a1a's ~14), category frequencies are skewed (Dirichlet(0.5)), and
    labels come from a planted linear score with logistic noise, thresholded so
    that about ``positive_fraction`` of the rows are positive (a1a: 24.6%).
    """
    if groups < 1 or d < 2 * groups:
        raise DataError(f"synthetic data needs d >= 2*groups, got d={d}, groups={groups}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA1A]))
    sizes = rng.multinomial(d - 2 * groups, np.full(groups, 1.0 / groups)) + 2
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cols = np.empty((m, groups), dtype=np.int64)
    for g in range(groups):
        p = rng.dirichlet(np.full(sizes[g], 0.5))
        cols[:, g] = starts[g] + rng.choice(sizes[g], size=m, p=p)
    indptr = np.arange(0, m * groups + 1, groups, dtype=np.int64)
    A = sp.csr_matrix((np.ones(m * groups), cols.ravel(), indptr), shape=(m, d))
    w = rng.normal(0.0, 1.0, d)
    score = A @ w + rng.logistic(0.0, 1.0, m)
    b = np.where(score >= np.quantile(score, 1.0 - positive_fraction), 1.0, -1.0)
    return A, b
