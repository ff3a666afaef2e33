"""The ``cgdbench`` command: parse, build a RunConfig, call the API, print.

Exit codes (run): 0 completed; 1 diverged or unstable; 2 bad input; 3 completed but flagged; 130 interrupted.
Exit codes (gate): 0 passed; 1 failed; 2 bad input.
Exit codes (compare, escape): 0 every cell completed; 1 some cells failed, diverged or unstable; 2 bad input;
130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from . import __version__, algorithms, compressors, data, problems, stepsizes, store, suites
from . import sweep as sw
from .config import DOWNLINK, EF21_INIT, METRICS_MODES, RUN_DEFAULTS, VALUE_BITS, X0_CHOICES, RunConfig
from .config import not_read, own_options_error
from .errors import CgdbenchError, ConfigError

LISTS = ("problems", "datasets", "algorithms", "compressors", "stepsizes", "suites")


def _choices(pairs) -> str:
    return ", ".join(name for name, _ in pairs)


class _Parser(argparse.ArgumentParser):
    """Bad command-line syntax is one line on stderr, exit 2, like every other bad input (argparse would print
    the command's whole usage block first: 30 lines for ``run``).  No abbreviations: ``--iter`` is not
    ``--iters`` (a script's prefix would silently change meaning when an option is added)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"cgdbench: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="cgdbench", description="Compressed gradient methods benchmark suite.")
    ap.add_argument("--version", action="version", version=f"cgdbench {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("list", help="list registered problems, datasets, algorithms, compressors, stepsizes")
    ls.add_argument("what", nargs="?", choices=LISTS, help="what to list (default: everything)")
    ls.add_argument("--data-dir", default=None, help="directory to look for the datasets in (see `datasets`)")

    dsa = sub.add_parser("datasets", help="put LIBSVM files into the cache directory, where every command finds them")
    dsa.add_argument("action", choices=("add",), help="add: link (or --copy) the manifest's files found in DIR")
    dsa.add_argument("dir", help="directory holding a1a, w8a, ... (e.g. ../shared/datasets)")
    dsa.add_argument("--copy", action="store_true", help="copy the files instead of linking them")

    cp = sub.add_parser("compare", help="run a named suite or a TOML grid into one HDF5 file; print a summary table")
    src = cp.add_mutually_exclusive_group(required=True)
    src.add_argument("--suite", help="a named suite (cgdbench list suites)")
    src.add_argument("--config", help="a TOML grid: RunConfig fields, lists are axes (README)")
    cp.add_argument("--out", required=True, help="HDF5 file; cells already completed there are skipped")
    cp.add_argument("--dataset", default=None,
                    help="the suite's dataset (default: a1a when found, else synthetic; all: each of a1a, a9a, "
                         "w8a, mushrooms, phishing that is found)")
    cp.add_argument("--data-dir", default=None)
    cp.add_argument("--seeds", type=int, default=None, help="seeds per method (default: the suite's)")
    cp.add_argument("--iters", type=int, default=None, help="K (default: the suite's)")
    cp.add_argument("--target", type=float, default=None, help="ε² of the 'to ε²' columns (default: the suite's)")
    cp.add_argument("--rerun", action="store_true", help="run completed cells again (replacing them)")
    cp.add_argument("--workers", type=int, default=1, help="processes (default 1: in this process)")
    cp.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster of --workers processes")
    cp.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://HOST:8786")
    cp.add_argument("--yes", action="store_true", help=f"allow grids of more than {sw.MAX_CELLS} cells")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    cp.add_argument("--plot", default=None, metavar="FILE",
                    help="also draw the suite's figure of its runs (PNG, PDF or SVG; a grid: loss and ‖∇f‖²)")

    rp = sub.add_parser("report", help="one self-contained HTML page of a results file (summary, figures, runs)")
    rp.add_argument("file", help="HDF5 results file")
    rp.add_argument("-o", "--out", required=True, help="HTML file to write")
    rp.add_argument("--target", type=float, default=None,
                    help="ε² of the summary's 'to ε²' columns (default: the runs' --eps2 where they share one, "
                         "else 1e-2)")

    ex = sub.add_parser("export", help="a results file as CSV: one row per logged iteration per run")
    ex.add_argument("file", help="HDF5 results file")
    ex.add_argument("--csv", required=True, help="CSV file to write (- : standard output, e.g. for a pipe)")

    h = sub.add_parser("history", help="export every asv result to an HDF5 table (trends: asv publish)")
    h.add_argument("--results", required=True, help="asv results directory (asv.conf.json results_dir)")
    h.add_argument("--out", required=True, help="HDF5 file; new rows are appended, existing rows kept")

    gt = sub.add_parser("gate", help="CI regression gate: exact metrics and same-run speed ratios vs a baseline")
    gt.add_argument("--baseline", default=None, help="baseline JSON (default: the one shipped in the package)")
    gt.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from this run")
    gt.add_argument("--data-dir", default=None, help="directory holding a1a (default: the data-directory rule)")
    gt.add_argument("--tolerance", type=float, default=1.5,
                    help="fail when a speed-up falls below baseline/TOLERANCE (default 1.5)")
    gt.add_argument("--skip-timings", action="store_true", help="only the deterministic metrics")
    gt.add_argument("--repeats", type=int, default=9, help="timing repeats (best is kept; default 9)")
    gt.add_argument("--inject-slowdown", type=int, default=1, metavar="F",
                    help="self-test: run each timed kernel F times per timing; F = 2 must fail the gate")

    cm = sub.add_parser("compressors", help="measure μ (and ω, bias) of vector compressors on random vectors")
    cm.add_argument("specs", nargs="*", help="compressor specs (default: one of each, K = 1%% of d)")
    cm.add_argument("--d", type=int, default=1000, help="dimension (default 1000)")
    cm.add_argument("--samples", type=int, default=200, help="random vectors (default 200)")
    cm.add_argument("--dist", default="gaussian", choices=("gaussian", "heavy"), help="vector distribution")
    cm.add_argument("--seed", type=int, default=0)
    cm.add_argument("--json", action="store_true")

    pl = sub.add_parser("plot", help="plot runs of an HDF5 file: median over seeds with quantile bands")
    pl.add_argument("file", help="HDF5 results file")
    pl.add_argument("-o", "--out", required=True, help="PNG (or PDF/SVG) to write")
    pl.add_argument("--x", default="iteration", help="iteration, bits_up, bits_total or wall_time")
    pl.add_argument("--y", default="loss,grad_norm_sq",
                    help="comma separated: loss, grad_norm_sq, grad_norm_sq_D, G, suboptimality, lambda_min, "
                         "stoch_grad_norm_sq, ... (default loss,grad_norm_sq)")
    pl.add_argument("--band", default="10,90", help="quantile band in percent (default 10,90)")
    ly = pl.add_mutually_exclusive_group()
    ly.add_argument("--log-y", action="store_true", default=None,
                    help="log y on every panel (default: log for ‖∇f‖², G and suboptimality)")
    ly.add_argument("--linear-y", dest="log_y", action="store_false", help="linear y on every panel")
    pl.add_argument("--log-x", action="store_true", help="log x (bits axes span decades)")
    pl.add_argument("--where", action="append", default=[], metavar="FIELD=V[,V2]",
                    help="keep runs whose config FIELD is one of the values (repeatable)")

    es = sub.add_parser("escape", help="saddle-escape experiment (the saddle paper's Fig. 2, in spirit): "
                                       "noise vs none × compressors × seeds from the saddle")
    es.add_argument("--problem", default="mlp-autoencoder", help="saddle problem (default mlp-autoencoder)")
    es.add_argument("--dataset", default=None)
    es.add_argument("--data-dir", default=None)
    es.add_argument("--hidden", default=None,
                    help="hidden widths: mlp-autoencoder (default here 32: one hidden layer, a strict saddle; "
                         "32,8,32 is degenerate), linear-autoencoder H (default 8)")
    es.add_argument("--dim", type=int, default=None)
    es.add_argument("--compressors", default="identity,top-k:0.001,rand-k:0.001",
                    help="comma-separated, ';' between specs with commas (default identity,top-k:0.001,rand-k:0.001)")
    es.add_argument("--noise", type=float, default=0.01, help="r of the noisy runs (default 0.01)")
    es.add_argument("--lr", default="0.1",
                    help="η, one value or one per compressor (comma separated; default 0.1)")
    es.add_argument("--batch-size", type=int, default=64)
    es.add_argument("--iters", type=int, default=3000)
    es.add_argument("--log-every", type=int, default=25)
    es.add_argument("--reset-iters", type=int, default=100)
    es.add_argument("--seeds", type=int, default=10)
    es.add_argument("--out", required=True, help="HDF5 file (runs already there are not redone)")
    es.add_argument("--plot", default=None, help="figure to write (default: OUT with .png)")

    th = sub.add_parser("theory", help="det-CGD Table 1 for a problem's L: printed formulas vs computed values")
    th.add_argument("--problem", default="logreg-nonconvex", help=f"one of: {_choices(problems.describe())}")
    th.add_argument("--dataset", default=None, help="manifest name or LIBSVM path (default: synthetic-a1a)")
    th.add_argument("--data-dir", default=None)
    th.add_argument("--lam", type=float, default=None)
    th.add_argument("--clients", type=int, default=1, help="clients (L is the mean of the client L_i)")
    th.add_argument("--blocks", default=None, help="block partition for the layer column: count or sizes")
    th.add_argument("--compressor", default=None,
                    help="parameters of the parametric rows: rand-k:K or block-rand-k:K1,.. (rows 8, 11), "
                         "bern-q:Q or bern-q:Q1,.. (row 12); default k_i = ceil(d_i/4), q = 0.5")
    th.add_argument("--check", type=int, default=0, metavar="K",
                    help="also run each row's method K iterations over --seeds seeds: G_{K,D} vs Theorem 1")
    th.add_argument("--seeds", type=int, default=5, help="seeds per row for --check (default 5)")
    th.add_argument("--json", action="store_true", help="machine-readable output")

    # run: every RunConfig option defaults to "not given" (SUPPRESS), so RunConfig owns the defaults
    r = sub.add_parser("run", help="run one method and append the result to an HDF5 file",
                       formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS,
                       description="Run one configuration. Example:\n  cgdbench run --algorithm det-cgd1 "
                                   "--compressor rand-1 --stepsize diag-inv --clients 10 --iters 2000 "
                                   "--out results.h5")
    dflt = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    dflt.update(RUN_DEFAULTS)
    g = r.add_argument_group("problem and data")
    g.add_argument("--problem", help=f"one of: {_choices(problems.describe())} (default {dflt['problem']})")
    g.add_argument("--dataset",
                   help=f"manifest name ({', '.join(data.names())}) or a LIBSVM file path; "
                        f"default: the bundled {data.SYNTHETIC}")
    g.add_argument("--data-dir", default=None,
                   help=f"directory holding dataset files (default: ${data.ENV_VAR}, else {data.default_data_dir()})")
    g.add_argument("--allow-hash-mismatch", action="store_true", default=False,
                   help="accept a file whose sha256 differs from the manifest (your own copy)")
    g.add_argument("--lam", type=float,
                   help="logreg: regularization λ (default 0.1); saddle-quartic: quartic coefficient (default 1); "
                        "autoencoders: weight decay (default 0)")
    g.add_argument("--clients", type=int, help=f"number of clients n >= 1 (default {dflt['clients']})")
    g.add_argument("--split", choices=problems.SPLITS,
                   help=f"how rows are split over clients (default {dflt['split']}, as in the papers' code)")
    g.add_argument("--split-seed", type=int, help="seed of the shuffled split")
    g.add_argument("--blocks", help="block (layer) partition: a count ('3') or sizes ('40,40,43'); default one block")
    g.add_argument("--x0", "--init", dest="x0", choices=X0_CHOICES,
                   help="starting point: logreg ones-over-sqrt-d (default) or zeros; saddle problems random "
                        "(default), saddle (the problem's known saddle) or zeros")
    g.add_argument("--hidden",
                   help="autoencoder hidden widths: linear-autoencoder H (default 8), mlp-autoencoder e.g. 32,8,32")
    g.add_argument("--dim", type=int, help="saddle-quartic dimension (default 20)")
    g = r.add_argument_group("method")
    g.add_argument("--algorithm", help=f"one of: {_choices(algorithms.describe())} (default {dflt['algorithm']})")
    g.add_argument("--compressor",
                   help=f"one of: {_choices(compressors.describe())} (default: the algorithm's, "
                        + ", ".join(f"{e.name} {e.default_compressor}" for e in algorithms.REGISTRY.values()) + ")")
    g.add_argument("--stepsize",
                   help=f"one of: {_choices(stepsizes.describe())} (default: the algorithm's, "
                        + ", ".join(f"{e.name} {e.default_stepsize}" for e in algorithms.REGISTRY.values()) + ")")
    g.add_argument("--iters", type=int, help=f"iterations K >= 1 (default {dflt['iters']}; the saddle problems "
                                              "their own, see `cgdbench list problems`)")
    g.add_argument("--eps2", type=float,
                   help="target ε² of Corollary 1, for the stepsizes corollary1, corollary1-full, matrix-smoothness "
                        "and "
                        "khaled-richtarik (the paper: 1e-4)")
    g.add_argument("--seed", type=int, help="seed of the sketches' random streams")
    g = r.add_argument_group("baselines (ef21, diana, marina, det-marina)")
    g.add_argument("--marina-p", type=float,
                   help="marina/det-marina: probability of a full-gradient round (default: a compressed round's "
                        "bits over a full round's)")
    g.add_argument("--diana-alpha", type=float, help="diana: shift stepsize α (default 1/(1+ω))")
    g.add_argument("--ef21-init", choices=EF21_INIT,
                   help="ef21: g_i⁰ = ∇f_i(x⁰) (gradient, default) or C(∇f_i(x⁰)) (compressed)")
    g = r.add_argument_group("compressed SGD (sgd, ef-sgd)")
    g.add_argument("--lr", type=float, help=f"stepsize η (default: the problem's, else {dflt['lr']})")
    g.add_argument("--batch-size", type=int,
                   help=f"minibatch rows per worker and iteration (default {dflt['batch_size']})")
    g.add_argument("--noise", type=float, help="perturbation ξ ~ N(0, r²I): r (default 0)")
    g.add_argument("--noise-schedule",
                   help="constant, or step:T[:F]: r until iteration T (or a fraction of --iters, e.g. 0.5), r·F "
                        "after (F default 0: no noise); default: the problem's")
    g.add_argument("--reset-iters", type=int,
                   help=f"ef-sgd: reset the error after I iterations (default {dflt['reset_iters']})")
    g.add_argument("--escape-radius", type=float,
                   help="ef-sgd: also reset when the corrected iterate moved farther than R (default: never)")
    g.add_argument("--no-reset", dest="reset", action="store_false", help="ef-sgd: plain error feedback, no reset")
    g.add_argument("--sosp-every", type=int, help="record λ_min(∇²f) every N iterations (always at the end)")
    g.add_argument("--eps", type=float, help=f"ε of the ε-SOSP verdict (default: the problem's, else {dflt['eps']:g})")
    g.add_argument("--rho", type=float,
                   help=f"Hessian-Lipschitz ρ of the ε-SOSP verdict (default: the problem's, else {dflt['rho']:g})")
    g = r.add_argument_group("output")
    g.add_argument("--log-every", type=int, help="log every N-th iterate (and the last)")
    g.add_argument("--metrics", choices=METRICS_MODES,
                   help="det-CGD methods: every (default): ‖∇f(x^k)‖² every iteration, G_{K,D} exact; logged: only "
                        "on logged iterations, G_{K,D} estimated from them (faster with --log-every > 1)")
    g.add_argument("--value-bits", type=int, choices=VALUE_BITS,
                   help=f"bits per sent value (default {dflt['value_bits']})")
    g.add_argument("--index-mode", choices=compressors.INDEX_MODES,
                   help="explicit (default): ceil(log2 d) bits per index; shared-seed: indices regenerated, 0 bits")
    g.add_argument("--downlink", choices=DOWNLINK,
                   help="downlink model: d values to every client (per-client, default), one broadcast (once), none")
    g.add_argument("--out", default=None, help="HDF5 file to append the run to (not saved if omitted)")
    g.add_argument("--quiet", action="store_true", default=False, help="no progress bar")
    g.add_argument("--json", action="store_true", default=False, help="print the summary as JSON")
    return ap


def _list(what: str | None, data_dir=None) -> None:
    sections = {
        "problems": problems.describe_long(),
        "datasets": data.status(data_dir),
        "algorithms": algorithms.describe(),
        "compressors": compressors.describe(),
        "stepsizes": stepsizes.describe(),
        "suites": suites.describe(),
    }
    for name in ([what] if what else LISTS):
        print(f"{name}:")
        width = max(len(k) for k, _ in sections[name])
        for k, doc in sections[name]:
            print(f"  {k:<{width}}  {doc}")
        if name == "datasets":
            print(f"  (looked in: {', '.join(str(p) for p in data.data_dirs(data_dir))}; "
                  f"--data-dir, else ${data.ENV_VAR}, else the cache directory)")


def _finite(v):
    """JSON has no NaN: None instead (and tuples as lists)."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _where(items) -> dict:
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--where {item!r}: write FIELD=VALUE[,VALUE2] with FIELD one of: {', '.join(fields)}")
        out[key] = value.split(",")
    return out


def _compare(ns) -> int:
    store.check_writable(ns.out)
    if ns.suite:
        sweep = suites.make(ns.suite, dataset=ns.dataset, seeds=ns.seeds, iters=ns.iters)
    else:
        given = [o for o in ("dataset", "seeds", "iters") if getattr(ns, o) is not None]
        if given:
            raise ConfigError(f"--{given[0]} applies to --suite; in a --config grid set {given[0]} in the file")
        sweep = sw.load_toml(ns.config)
    for note in sweep.notes:
        print(f"cgdbench: note: {note}", file=sys.stderr)
    if ns.target is not None:
        if not (ns.target > 0 and np.isfinite(ns.target)):
            raise ConfigError(f"--target {ns.target}: need a number > 0")
        sweep.target = ns.target
    sw.check_size(sweep, ns.yes)
    if ns.plot:
        from .plot import check_figure_path
        check_figure_path(ns.plot, "--plot")  # before the runs, not after them
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        counts = sw.run_sweep(sweep, ns.out, rerun=ns.rerun, workers=ns.workers, scheduler=ns.scheduler,
                              dask=ns.dask, data_dir=ns.data_dir, progress=not ns.quiet and sys.stderr.isatty())
    except KeyboardInterrupt:
        done = store.completed_ids(ns.out) & {c.id for c in sweep.cells} if Path(ns.out).exists() else set()
        print(f"cgdbench: interrupted; {len(done)} of {len(sweep.cells)} cells are done in {ns.out} (a cell cut short "
              "is stored as interrupted); the same command runs the rest", file=sys.stderr)
        return 130
    rows = sw.summary_rows(ns.out, sweep.target, ids={c.id for c in sweep.cells})
    if ns.json:
        print(json.dumps(_finite({"counts": counts, "target": sweep.target, "rows": rows})))
    else:
        flagged = f", {counts['flagged']} flagged: see their warnings" if counts.get("flagged") else ""
        print(f"{sweep.name}: {counts['ran']} cells run ({counts['failed']} failed, {counts['diverged']} diverged"
              f"{flagged}) in "
              f"{counts['seconds']:.1f} s, "
              f"{counts['skipped']} skipped; results in {ns.out}")
        print(sw.format_summary(rows, sweep.target))
    if ns.plot:
        from .plot import plot_per_problem
        figure = dict(sweep.figure)
        on = figure.pop("target_on", ())
        for name, fig in plot_per_problem(ns.out, ns.plot, ids={c.id for c in sweep.cells}, **figure,
                                          hlines={y: (sweep.target, f"ε² = {sweep.target:g} (the target)")
                                                  for y in on}):
            for note in fig["notes"]:
                print(f"cgdbench: note: {note}", file=sys.stderr)
            print(f"figure: {name} ({fig['groups']} method(s), {fig['runs']} run(s))", file=sys.stderr if ns.json
                  else sys.stdout)
    return 1 if counts["failed"] or counts["diverged"] else 0  # exit 1: some cells failed or diverged


def _escape(ns) -> int:
    from .escape import run_escape
    if ns.plot:
        from .plot import check_figure_path
        check_figure_path(ns.plot, "--plot")  # before the runs, not after them
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        res = run_escape(ns.out, problem=ns.problem, dataset=ns.dataset, data_dir=ns.data_dir, hidden=ns.hidden,
                         dim=ns.dim, compressors=ns.compressors, noise=ns.noise, lr=ns.lr, batch_size=ns.batch_size,
                         iters=ns.iters, log_every=ns.log_every, reset_iters=ns.reset_iters, seeds=ns.seeds,
                         plot=ns.plot, progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        n = len(store.completed_ids(ns.out)) if Path(ns.out).exists() else 0
        print(f"cgdbench: interrupted; {n} completed run(s) are stored in {ns.out} (a run cut short is "
              "stored as interrupted); the same command runs the rest", file=sys.stderr)
        return 130
    if res["counts"]["failed"] or res["counts"]["diverged"]:
        print(f"escape: {res['counts']['failed']} run(s) failed and {res['counts']['diverged']} diverged; see "
              f"{ns.out}", file=sys.stderr)
    print("over seeds: final loss mean [10th, 90th percentile]; median first iteration with the loss below 90% "
          "of the saddle's")
    for row in res["summary"]:
        print(f"{row['compressor']:<16} r={row['noise']:<6g} final loss mean {row['final_loss_mean']:.4f} "
              f"[{row['final_loss_lo']:.4f}, {row['final_loss_hi']:.4f}]  first iteration below 90%: "
              f"{row['escape_iter_median']}")
    print(f"figure: {res['figure']}")
    return 1 if res["counts"]["failed"] or res["counts"]["diverged"] else 0


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def _run(ns) -> int:
    from .engine import run
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(ns).items() if k in fields}
    cfg = RunConfig(**given)
    bad = not_read(cfg.algorithm, [k for k, v in given.items() if v is not None])
    if bad:  # typed, though equal to the value the config fills in (`--lr 0.1` with det-cgd1)
        raise own_options_error(algorithms.get(cfg.algorithm), bad)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        trace = run(cfg, out=ns.out, progress=not ns.quiet and sys.stderr.isatty(), data_dir=ns.data_dir,
                    allow_hash_mismatch=ns.allow_hash_mismatch)
    except KeyboardInterrupt as exc:
        trace = getattr(exc, "trace", None)
        if trace is None:
            print("cgdbench: interrupted before the run started; nothing written", file=sys.stderr)
            return 130
    if trace.run_id and trace.run_id != store.run_id(cfg):
        print(f"cgdbench: note: this config is already in {ns.out} as {store.run_id(cfg)}; stored as the "
              f"deliberate repeat {trace.run_id} (summaries and plots count a seed once)", file=sys.stderr)
    if ns.json:
        print(json.dumps(_finite({"status": trace.status, "iterations": trace.iterations, "run_id": trace.run_id,
                          "final_loss": float(trace.loss[-1]) if trace.loss.size else None,
                          "grad_norm_sq": float(trace.grad_norm_sq[-1]) if trace.loss.size else None,
                          "G_KD": trace.G_KD, "bits_up": int(trace.bits_up[-1]) if trace.loss.size else 0,
                          "bits_down": int(trace.bits_down[-1]) if trace.loss.size else 0,
                          **json.loads(json.dumps(trace.meta, default=str))}), allow_nan=False))  # strict JSON
    else:
        print(trace.summary())
        if ns.out is None:
            print("(not saved: pass --out FILE.h5 to keep the trace)")
    if trace.status == "completed" and trace.meta.get("flagged"):
        return 3  # completed, but the losses say it blew up (the warnings say how)
    return {"completed": 0, "diverged": 1, "unstable": 1, "interrupted": 130}.get(trace.status, 1)


def _theory(ns) -> int:
    from . import theory
    from .compressors.vector import parse_k
    from .engine import build
    if ns.check < 0:
        raise ConfigError(f"--check {ns.check}: give K >= 1 iterations (or 0 for no check)")
    if ns.seeds < 1:
        raise ConfigError(f"--seeds {ns.seeds}: need at least 1")
    if problems.get(ns.problem).oracle != "full":
        raise ConfigError(f"--problem {ns.problem!r}: det-CGD's Table 1 needs a finite-sum problem with smoothness "
                          f"matrices; use one of: {', '.join(problems.REGISTRY.names(oracle='full'))}")
    cfg = RunConfig(problem=ns.problem, dataset=ns.dataset, lam=ns.lam, clients=ns.clients, blocks=ns.blocks,
                    algorithm="gd", compressor="identity", stepsize="scalar", iters=1)
    b = build(cfg, data_dir=ns.data_dir)
    ptr = b.problem.block_ptr
    sizes = np.diff(ptr)
    ks, qs = None, None
    if ns.compressor:
        name, params = compressors.parse(ns.compressor)
        toks = [t.strip() for t in params.split(",")] if params else []
        if name in ("rand-k", "block-rand-k"):
            if len(toks) == len(sizes):
                ks = [parse_k(f"{name} (block {i} of size {s})", t, int(s))
                      for i, (t, s) in enumerate(zip(toks, sizes))]
            elif len(toks) == 1:
                total = parse_k(name, toks[0], int(b.problem.d))
                ks = [max(1, min(int(s), round(total * s / b.problem.d))) for s in sizes]
            else:
                raise ConfigError(f"--compressor {ns.compressor!r}: give one k or one per block ({len(sizes)} blocks)")
        elif name == "bern-q":
            vals = [float(t) for t in toks]  # parse() checked they are numbers in (0, 1]
            if len(vals) not in (1, len(sizes)):
                raise ConfigError(f"--compressor {ns.compressor!r}: give one probability q in (0, 1] or one per "
                                  f"block ({len(sizes)} blocks)")
            qs = vals if len(vals) == len(sizes) else [vals[0]] * len(sizes)
        else:
            raise ConfigError(f"--compressor {ns.compressor!r}: theory takes rand-k, block-rand-k or bern-q")
    rows = theory.table(b.L, ptr, ks, qs)
    checks = theory.check(cfg, ns.check, seeds=range(ns.seeds), data_dir=ns.data_dir, ks=ks, qs=qs) if ns.check else []
    if ns.json:
        print(json.dumps({"d": int(b.problem.d), "blocks": sizes.tolist(),
                          "L_block_diagonal": theory.is_block_diagonal(b.L, ptr), "rows": rows, "check": checks}))
        return 0
    print(f"Table 1 for {cfg.problem} on {b.problem.dataset.name} (d = {b.problem.d}, λ = {cfg.lam:g}, "
          f"blocks {sizes.tolist()}); constant 2(f(x0) - f_inf)/ε² hidden")
    if len(sizes) > 1 and not theory.is_block_diagonal(b.L, ptr):
        print("note: L is not block diagonal for these blocks, so the layer-column formulas (Section 4) "
              "need not hold")
    print(theory.format_table(rows))
    if checks:
        exact = "the exact minimum f*" if b.problem.f_lower_exact else "a lower bound on f"
        print(f"\nTheorem 1 check: mean G_{{K,D}} over {ns.seeds} seeds vs 2 (f(x0) - f_lower)/(det(D)^(1/d) K), "
              f"f_lower = {checks[0]['f_lower']:.10g} ({exact})")
        wc = max(18, *(len(c["compressor"]) for c in checks))
        for c in checks:
            print(f"  row {c['row']:>2} {c['column']:<7} {c['method']:<8} {c['compressor']:<{wc}} {c['stepsize']:<10} "
                  f"G = {c['G_KD_mean']:.4e} ± {c['G_KD_stderr']:.1e}  bound = {c['bound']:.4e}  {c['verdict']}")
    return 0


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise ConfigError(f"--band {text!r}: give two percentiles, e.g. 10,90") from None
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"--band {text!r}: need 0 <= low < high <= 100")
    return lo, hi


def _compressors(ns) -> int:
    if ns.d < 2:
        raise ConfigError(f"--d {ns.d}: need d >= 2")
    k = max(1, ns.d // 100)
    specs = ns.specs or [n if n in ("identity", "rand-1", "sign", "natural") else
                         {"qsgd": "qsgd:4", "sketch-top-k": f"sketch-top-k:{k}"}.get(n, f"{n}:{k}")
                         for n in compressors.vector_names()]
    from .environment import check_memory
    check_memory(4 * 8.0 * ns.samples * ns.d, f"--samples {ns.samples} vectors of --d {ns.d}",
                 "use a smaller --d or fewer --samples")
    rows = [compressors.measure(compressors.make_vector(s, ns.d), ns.samples, ns.seed, ns.dist) for s in specs]
    if ns.json:
        print(json.dumps(rows))
        return 0
    print(f"d = {ns.d}, {ns.samples} {ns.dist} vectors; μ: E‖x − C(x)‖² = (1 − μ)‖x‖²; "
          "bias ratio ≈ 1 for unbiased compressors, ≈ samples for biased ones")
    print(f"  {'compressor':<22} {'μ measured':>18} {'μ theory':>12} {'ω measured':>11} {'ω theory':>10} "
          f"{'bias ratio':>11} {'bits/msg':>9} {'vs 32d':>7}")
    for r in rows:
        th = f"{r['mu_relation']} {r['mu_theory']:.4g}" if r["mu_theory"] is not None else "—"
        om = f"{r['omega_theory']:.4g}" if r["omega_theory"] is not None else "—"
        om_m = f"{r['omega_measured']:.4g}" if r["unbiased"] else "—"
        print(f"  {r['compressor']:<22} {r['mu_measured']:>10.4f} ± {r['mu_stderr']:.4f} {th:>12} "
              f"{om_m:>11} {om:>10} {r['bias_ratio']:>11.3g} {r['bits_per_message']:>9} "
              f"{r['bits_per_message'] / r['bits_uncompressed']:>7.3f}")
    return 0


def main(argv=None) -> int:
    try:
        rc = _main(argv)
        sys.stdout.flush()  # inside the try: a buffered stdout's last write happens here, not at exit
        return rc
    except BrokenPipeError:  # the reader went away (`cgdbench list | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when the interpreter flushes stdout at exit
        return 141  # 128 + SIGPIPE


def _main(argv=None) -> int:
    ap = _parser()
    ns = ap.parse_args(argv)
    try:
        if ns.command == "list":
            _list(ns.what, ns.data_dir)
            return 0
        if ns.command == "datasets":
            for name, what in data.add(ns.dir, copy=ns.copy):
                print(f"{name}: {what}")
            return 0
        if ns.command == "run":
            return _run(ns)
        if ns.command == "theory":
            return _theory(ns)
        if ns.command == "compressors":
            return _compressors(ns)
        if ns.command == "plot":
            from .plot import plot_per_problem
            for name, fig in plot_per_problem(ns.file, ns.out, x=ns.x, ys=ns.y.split(","), band=_band(ns.band),
                                              log_y=ns.log_y, log_x=ns.log_x, where=_where(ns.where)):
                for note in fig["notes"]:
                    print(f"cgdbench: note: {note}", file=sys.stderr)
                print(f"plot: {fig['groups']} group(s) from {fig['runs']} run(s) -> {name}")
            return 0
        if ns.command == "escape":
            return _escape(ns)
        if ns.command == "compare":
            return _compare(ns)
        if ns.command == "report":
            from .report import write_report
            r = write_report(ns.file, ns.out, ns.target)
            print(f"report: {r['runs']} runs, {r['methods']} methods, {r['figures']} figure(s) -> {ns.out}")
            if not r["completed"]:
                print(f"cgdbench: note: {ns.file} has no completed runs (figures and the summary draw those); the "
                      "page lists the runs and their warnings", file=sys.stderr)
            return 0
        if ns.command == "export":
            from .report import export_csv
            rows = export_csv(ns.file, ns.csv)
            print(f"export: {rows} rows -> {'standard output' if ns.csv == '-' else ns.csv}",
                  file=sys.stderr if ns.csv == "-" else sys.stdout)
            return 0
        if ns.command == "history":
            from .history import export
            res = export(ns.results, ns.out)
            print(f"history: {res['read']} results read, {res['added']} new rows, {res['total']} in {ns.out}")
            if res["read"] == 0:
                print(f"cgdbench: note: {ns.results} holds no asv result yet: `asv run --python=same` stores one "
                      "only with --set-commit-hash $(git rev-parse HEAD); `asv run COMMITS` and `asv continuous` "
                      "always do", file=sys.stderr)
            return 0
        if ns.command == "gate":
            from .gate import DEFAULT_BASELINE, run_gate
            return run_gate(ns.baseline or DEFAULT_BASELINE, ns.update_baseline, ns.data_dir, ns.tolerance,
                            ns.skip_timings, ns.repeats, ns.inject_slowdown)
        ap.print_help()
        return 2
    except CgdbenchError as exc:
        print(f"cgdbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
