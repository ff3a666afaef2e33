"""Export asv results to an HDF5 table and trend plots (``cgdbench history``).

asv keeps one JSON file per (machine, commit, environment) under
``results/<machine>/``; each maps a benchmark name to a row aligned with
``result_columns`` (``result`` is the flat list over the parameter grid,
``params`` the grid itself).  Units come from ``results/benchmarks.json``.

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
import numpy as np

from .errors import CgdbenchError
from .store import _open

COLUMNS = ("commit", "date", "machine", "env", "benchmark", "params", "value", "unit")
TEXT = [c for c in COLUMNS if c != "value"]
KEY = ("commit", "machine", "env", "benchmark", "params")
UNITS = {"time": "seconds", "peakmem": "bytes", "mem": "bytes"}


class HistoryError(CgdbenchError):
    pass


def _benchmarks(results_dir: Path) -> tuple[dict, dict]:
    """Units and parameter names per benchmark, from ``benchmarks.json``."""
    f = results_dir / "benchmarks.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        warnings.warn(f"cannot read {f} ({exc}); units and parameter names unknown", stacklevel=3)
        return {}, {}
    units, names = {}, {}
    for name, b in meta.items():
        if isinstance(b, dict):
            units[name] = b.get("unit") or UNITS.get(b.get("type", ""), "")
            names[name] = list(b.get("param_names") or [])
    return units, names


def read_results(results_dir) -> list[dict]:
    """All result rows of an asv results directory (corrupt files are skipped with a warning)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise HistoryError(f"{str(results_dir)!r} is not a directory")
    machines = [p for p in results_dir.iterdir() if p.is_dir() and (p / "machine.json").is_file()]
    if not machines and not (results_dir / "benchmarks.json").is_file():
        raise HistoryError(f"{str(results_dir)!r} is not an asv results directory (no benchmarks.json and no "
                           "<machine>/machine.json); point --results at asv's results_dir")
    units, names = _benchmarks(results_dir)
    rows = []
    for mdir in sorted(machines):
        for f in sorted(mdir.glob("*.json")):
            if f.name == "machine.json":
                continue
            try:
                rows.extend(_rows_of(json.loads(f.read_text()), units, names))
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                warnings.warn(f"skipping {f}: not a readable asv result file ({type(exc).__name__}: {exc})",
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


def _rows_of(doc: dict, units: dict, param_names: dict) -> list[dict]:
    cols = doc["result_columns"]
    i_res, i_par = cols.index("result"), cols.index("params")
    date = _dt.datetime.fromtimestamp(doc["date"] / 1000, _dt.timezone.utc).isoformat()
    base = {"commit": doc["commit_hash"], "date": date, "machine": doc["params"]["machine"],
            "env": doc.get("env_name", "")}
    rows = []
    for bench, entry in doc["results"].items():
        result = entry[i_res]
        params = entry[i_par] if len(entry) > i_par else []
        names = param_names.get(bench) or [f"p{i}" for i in range(len(params))]
        combos = list(itertools.product(*params)) if params else [()]
        values = result if isinstance(result, list) else [result]
        if result is None:
            values = [None] * len(combos)
        if len(values) != len(combos):
            raise ValueError(f"{bench}: {len(values)} results for {len(combos)} parameter combinations")
        for combo, v in zip(combos, values):
            rows.append({**base, "benchmark": bench, "params": json.dumps(dict(zip(names, map(_literal, combo)))),
                         "value": _value(v), "unit": units.get(bench, "")})
    return rows


def export(results_dir, out, plots_dir=None) -> dict:
    """Append new rows to ``out`` (HDF5); optionally write one trend PNG per benchmark."""
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
    plots = plot(out, plots_dir) if plots_dir else []
    return {"read": len(rows), "added": len(new), "total": total, "plots": plots}


def read_table(path) -> dict:
    """The ``/history`` table as a dict of numpy arrays."""
    with _open(Path(path), "r") as f:
        if "history" not in f:
            raise HistoryError(f"{str(path)!r} has no /history table")
        g = f["history"]
        return {c: (g[c][()] if c == "value" else g[c].asstr()[()]) for c in COLUMNS}


def plot(path, plots_dir) -> list[str]:
    """One PNG per benchmark: value by commit (date order), one line per parameter set and machine."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = read_table(path)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for bench in sorted(set(t["benchmark"])):
        sel = np.flatnonzero(t["benchmark"] == bench)
        commits = sorted({(t["date"][i], t["commit"][i]) for i in sel})
        pos = {c: j for j, (_, c) in enumerate(commits)}
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for series in sorted({(t["params"][i], t["machine"][i]) for i in sel}):
            idx = [i for i in sel if (t["params"][i], t["machine"][i]) == series]
            idx.sort(key=lambda i: pos[t["commit"][i]])
            label = ", ".join(f"{k}={v}" for k, v in json.loads(series[0]).items()) or bench.rsplit(".", 1)[-1]
            ax.plot([pos[t["commit"][i]] for i in idx], [t["value"][i] for i in idx], "o-",
                    label=f"{label} [{series[1]}]")
        ax.set_xticks(range(len(commits)), [c[:8] for _, c in commits], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("commit (by date)")
        ax.set_ylabel(t["unit"][sel[0]] or "value")
        ax.set_title(bench, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = plots_dir / (bench.replace("/", "_") + ".png")
        fig.savefig(name, dpi=100)
        plt.close(fig)
        written.append(str(name))
    return written
