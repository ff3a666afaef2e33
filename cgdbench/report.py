"""A results file as one self-contained HTML page, and as CSV (``cgdbench report``, ``cgdbench export``).

The page embeds its figures (PNG as data URIs), so it needs no server and no network: the
summary table (median and 10-90% over seeds), figures of loss and ‖∇f‖² per problem, and
every run's config, status, environment, commit and warnings.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import html
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import store
from .errors import ConfigError, StoreError


def _check_out(out, suffixes) -> Path:
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise StoreError(f"output directory {str(out.resolve().parent)!r} does not exist")
    if out.suffix.lower() not in suffixes:
        raise StoreError(f"{str(out)!r}: expected a {' or '.join(suffixes)} file name")
    return out


def _runs(path):
    runs = [store.read_run(path, i) for i in store.list_runs(path)]
    if not runs:
        store.read_run(path)  # raises the store's "holds no runs", with its hint for a history file
    return runs


def _unread(config: dict) -> set:
    """The algorithm-specific options a run's algorithm does not read (another algorithm's: left blank)."""
    from .algorithms import OWN_OPTIONS, REGISTRY
    from .config import not_read
    entry = REGISTRY.find(config.get("algorithm"))
    return set(not_read(entry.name, OWN_OPTIONS)) if entry is not None else set()


def export_csv(path, out) -> int:
    """One row per logged iteration per run; config fields as columns (an option only another algorithm reads,
    e.g. SGD's lr or batch size on a det-CGD run, is left blank).  ``out`` ``"-"``: standard output (for a pipe
    into pandas or R).  Returns the number of rows."""
    stdout = str(out) == "-"
    if not stdout:
        out = _check_out(out, (".csv",))
    runs = _runs(path)
    cfg_keys = sorted({k for r in runs for k in r["config"]})
    n = 0
    with (contextlib.nullcontext(sys.stdout) if stdout else open(out, "w", newline="")) as f:
        w = csv.writer(f)
        w.writerow(["run_id", "status", *cfg_keys, *store.PER_ITERATION])
        for r in runs:
            unread = _unread(r["config"])
            head = [r["run_id"], r["status"], *[_cell(None if k in unread else r["config"].get(k)) for k in cfg_keys]]
            rows = len(r["iteration"]) if "iteration" in r else 0
            if rows == 0:  # a failed run: one row, so it is not silently absent
                w.writerow(head + [""] * len(store.PER_ITERATION))
                n += 1
            for j in range(rows):
                w.writerow(head + [_cell(r[c][j]) if c in r else "" for c in store.PER_ITERATION])
                n += 1
    return n


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (np.floating, float)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _figure(path, where, ys) -> str | None:
    from .plot import plot_file
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "f.png"
        try:
            plot_file(path, png, ys=ys, where=where)
        except StoreError:
            return None
        return base64.b64encode(png.read_bytes()).decode()


def write_report(path, out, target: float | None = None) -> dict:
    from .sweep import summary_rows, summary_table
    out = _check_out(out, (".html", ".htm"))
    runs = _runs(path)
    e = html.escape
    if target is not None and not (np.isfinite(target) and target > 0):
        raise ConfigError(f"--target {target}: need a number > 0")
    from .sweep import default_target
    target, target_from = (target, "--target") if target is not None else default_target(
        [r["config"] for r in runs])
    rows = summary_rows(path, target)
    done = [r for r in runs if r["status"] == "completed"]
    problems = sorted({(r["config"]["problem"], str(r["config"].get("dataset"))) for r in done})
    figs = []
    for problem, dataset in problems:
        mine = [r for r in done if r["config"]["problem"] == problem and str(r["config"].get("dataset")) == dataset]
        ys = ("loss", "grad_norm_sq") + (("test_accuracy",) if all("test_accuracy" in r for r in mine) else ())
        img = _figure(path, {"problem": problem, "dataset": dataset}, ys)
        if img:
            name = mine[0]["meta"].get("dataset", {}).get("name") or (dataset if dataset != "None" else "its data")
            figs.append((f"{problem} on {name}", img))
    # each warning once, with the runs that carry it (a suite's seeds repeat the same one)
    warned: dict = {}
    for r in runs:
        for w in r.get("meta", {}).get("warnings", []):
            warned.setdefault(str(w), []).append(r["run_id"])
    if rows:  # an HTML table (the console's text table is ~250 characters wide); warnings are listed below
        table, note = summary_table(rows, target)
        summary = ("<table id='summary-table'><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in table[0])
                   + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                                                      for row in table[1:]) + f"</tbody></table><p><small>{e(note)}"
                   "</small></p>")
    else:
        summary = "<p id='summary-table'>no completed runs</p>"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cgdbench report: {e(Path(path).name)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;"
             "font-size:12px} td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top} "
             "pre{font-size:11px;overflow-x:auto;background:#f6f6f6;padding:8px} img{max-width:100%}"
             " .failed{color:#b00} @media print{pre{white-space:pre-wrap;overflow-x:visible}}</style></head><body>",
             f"<h1>cgdbench report: {e(str(path))}</h1>",
             f"<p>{len(runs)} runs: " + ", ".join(f"{sum(r['status'] == s for r in runs)} {s}"
                                                  for s in store.STATUSES if any(r['status'] == s for r in runs))
             + "</p>", "<h2 id='summary'>Summary</h2>",
             f"<p>The “to ε²” columns: the first logged iteration where the running mean of ‖∇f‖²_D is ≤ ε² = "
             f"{target:g} ({e(target_from)}).</p>",
             summary,
             "<h2 id='figures'>Figures</h2>"]
    for title, img in figs:
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{img}'>")
    parts.append("<h2 id='warnings'>Warnings</h2>")
    parts.append("<ul>" + "".join(f"<li>{e(w)} <small>({len(ids)} run{'s' if len(ids) > 1 else ''}: "
                                  + ", ".join(f"<code>{e(i)}</code>" for i in ids) + ")</small></li>"
                                  for w, ids in warned.items()) + "</ul>" if warned else "<p>none</p>")
    parts.append("<h2 id='runs'>Runs</h2><table id='runs-table'><tr><th>run</th><th>status</th><th>config</th>"
                 "<th>environment</th><th>commit</th></tr>")
    for r in runs:
        env = r.get("meta", {}).get("environment", {})
        env_text = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "numba", "threads", "threading_layer",
                                                         "cpu", "cpu_target") if k in env)
        unread = _unread(r["config"])  # another algorithm's options: not this run's settings
        cfg = {k: v for k, v in r["config"].items() if v is not None and k not in unread}
        err = r.get("meta", {}).get("error")
        parts.append(f"<tr><td><code>{e(r['run_id'])}</code></td><td class='{e(r['status'])}'>{e(r['status'])}"
                     + (f"<br>{e(err)}" if err else "") + f"</td><td><code>{e(json.dumps(cfg))}</code></td>"
                     f"<td>{e(env_text)}</td><td><code>{e(str(r.get('git_commit', '')))}</code></td></tr>")
    parts.append("</table></body></html>")
    out.write_text("\n".join(parts))
    return {"runs": len(runs), "figures": len(figs), "methods": len(rows), "completed": len(done)}
