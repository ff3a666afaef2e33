"""Export asv results to an HDF5 table (``cgdbench history``): what asv itself does not offer.

asv is the trend view (``asv publish`` / ``asv preview``: one HTML page per benchmark
over commits) and the comparison tool (``asv compare``, ``asv continuous``, ``asv find``).
What it lacks is one table of every result, the deterministic tracks included, to load
in h5py/pandas next to the runs' own HDF5 files; this module writes that, reading the
results through asv's own code (``asv.results.iter_results``), not by parsing asv's
files, so the asv version can move.

The HDF5 table ``/history`` has one row per (commit, machine, env, benchmark,
parameter combination): columns ``commit``, ``date`` (ISO), ``machine``, ``env``,
``benchmark``, ``params`` (JSON), ``value`` (NaN for a failed benchmark) and
``unit``.  Exporting again appends only rows whose key is new.
"""
from __future__ import annotations

import ast
import datetime as _dt
import itertools
import json
import warnings
from pathlib import Path

import h5py

from .errors import CgdbenchError
from .store import _open

COLUMNS = ("commit", "date", "machine", "env", "benchmark", "params", "value", "unit")
TEXT = [c for c in COLUMNS if c != "value"]
KEY = ("commit", "machine", "env", "benchmark", "params")
UNITS = {"time": "seconds", "peakmem": "bytes", "mem": "bytes"}


class HistoryError(CgdbenchError):
    pass


def _benchmarks(results_dir: Path) -> tuple[dict, dict]:
    """Units and parameter names per benchmark, from asv's ``benchmarks.json`` (read by asv)."""
    _, util = _asv()
    f = results_dir / "benchmarks.json"
    try:
        meta = util.load_json(str(f), api_version=2)
    except Exception as exc:  # noqa: BLE001 — asv raises its own UserError subclasses
        warnings.warn(f"cannot read {f} ({exc}); units and parameter names unknown", stacklevel=3)
        return {}, {}
    units, names = {}, {}
    for name, b in meta.items():
        if isinstance(b, dict):
            units[name] = b.get("unit") or UNITS.get(b.get("type", ""), "")
            names[name] = list(b.get("param_names") or [])
    return units, names


def _asv():
    try:
        from asv import results, util
    except ImportError:
        raise HistoryError("cgdbench history reads asv's results with asv itself: pip install 'asv>=0.6,<0.7' "
                           "(or the README's install command)") from None
    return results, util


def read_results(results_dir) -> list[dict]:
    """All result rows of an asv results directory (unreadable files are skipped with a warning)."""
    asv_results, util = _asv()
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise HistoryError(f"{str(results_dir)!r} is not a directory")
    machines = [p for p in results_dir.iterdir() if p.is_dir() and (p / "machine.json").is_file()]
    if not machines and not (results_dir / "benchmarks.json").is_file():
        raise HistoryError(f"{str(results_dir)!r} is not an asv results directory (no benchmarks.json and no "
                           "<machine>/machine.json); point --results at asv's results_dir")
    units, names = _benchmarks(results_dir)
    rows = []
    for root, filename, machine in sorted(asv_results.iter_results_paths(str(results_dir))):
        path = Path(root) / filename
        try:
            res = asv_results.Results.load(str(path), machine_name=machine)
            rows.extend(_rows_of(res, machine, units, names))
        except (util.UserError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            warnings.warn(f"skipping {path}: not a readable asv result file ({type(exc).__name__}: {exc})",
                          stacklevel=2)
    return rows


def _literal(text):
    """asv stores parameter values as their repr: "'gd'" -> "gd", "100" -> 100."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        return text


def _value(v) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _rows_of(res, machine: str, units: dict, param_names: dict) -> list[dict]:
    date = _dt.datetime.fromtimestamp(res.date / 1000, _dt.timezone.utc).isoformat()
    base = {"commit": res.commit_hash, "date": date, "machine": machine, "env": res.env_name or ""}
    rows = []
    for bench in sorted(res.get_all_result_keys()):
        params = res.get_result_params(bench) or []
        names = param_names.get(bench) or [f"p{i}" for i in range(len(params))]
        combos = list(itertools.product(*params)) if params else [()]
        values = res.get_result_value(bench, params)
        if len(values) != len(combos):
            raise ValueError(f"{bench}: {len(values)} results for {len(combos)} parameter combinations")
        for combo, v in zip(combos, values):
            rows.append({**base, "benchmark": bench, "params": json.dumps(dict(zip(names, map(_literal, combo)))),
                         "value": _value(v), "unit": units.get(bench, "")})
    return rows


def export(results_dir, out) -> dict:
    """Append the results' new rows to the ``/history`` table of ``out`` (HDF5)."""
    rows = read_results(results_dir)
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise HistoryError(f"output directory {str(out.resolve().parent)!r} does not exist")
    with _open(out, "a") as f:
        g = f.require_group("history")
        if "value" not in g:
            for c in TEXT:
                g.create_dataset(c, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
            g.create_dataset("value", shape=(0,), maxshape=(None,), dtype="f8")
        existing = set(zip(*(g[c].asstr()[()] for c in KEY))) if g["commit"].shape[0] else set()
        new = []
        for r in rows:
            key = tuple(r[c] for c in KEY)
            if key not in existing:
                existing.add(key)
                new.append(r)
        n0 = g["value"].shape[0]
        for c in COLUMNS:
            g[c].resize((n0 + len(new),))
            if new:
                g[c][n0:] = [r[c] for r in new]
        total = n0 + len(new)
    return {"read": len(rows), "added": len(new), "total": total}


def read_table(path) -> dict:
    """The ``/history`` table as a dict of numpy arrays."""
    with _open(Path(path), "r") as f:
        if "history" not in f:
            raise HistoryError(f"{str(path)!r} has no /history table")
        g = f["history"]
        return {c: (g[c][()] if c == "value" else g[c].asstr()[()]) for c in COLUMNS}
