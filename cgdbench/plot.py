"""Figures from an HDF5 results file: runs grouped over seeds, mean with quantile bands.

``plot_file`` groups runs whose configs differ only in ``seed`` and draws, per
group, the mean of a per-iteration dataset with a band between two quantiles
across seeds.  The saddle-escape experiment and its figure live in :mod:`cgdbench.escape`.
"""
from __future__ import annotations

import json
import textwrap
import warnings
from collections import Counter

import numpy as np

from . import algorithms, compressors, store
from .config import OMIT_AT_DEFAULT, not_read
from .errors import ConfigError, StoreError
from .metrics import running_mean


def load_groups(path, ys, where: dict | None = None, ids=None) -> dict:
    """``{config JSON without seed: [run dict, ...]}`` for completed runs having every y in ``ys``.

    ``where`` keeps the runs whose config has those values (a list value: any of them);
    ``ids`` the runs with those ids (a suite's cells).
    """
    def keep(rec):
        cfg = {**OMIT_AT_DEFAULT, **rec["config"]}  # fields stored only when not at their default
        return all(y in rec for y in ys) and (not where or all(_matches(cfg.get(k), v) for k, v in where.items()))
    return store.group_runs(path, keep=keep, ids=ids)


def _matches(value, wanted) -> bool:
    """``--where noise=0`` matches a stored 0.0: numbers compare as numbers, the rest as text."""
    wanted = wanted if isinstance(wanted, list) else [wanted]
    for w in wanted:
        if str(value) == str(w):
            return True
        try:
            if not isinstance(value, bool) and float(value) == float(w):
                return True
        except (TypeError, ValueError):
            pass
    return False


def compressor_text(spec) -> str:
    """A compressor as the legend shows it: a fraction of the coordinates also as a percentage (rand-k:0.001 (0.1%))."""
    name, _, params = str(spec).partition(":")
    entry = compressors.REGISTRY.find(name)
    if entry is not None and entry.fraction and "." in params and "," not in params:
        try:
            frac = float(params)
        except ValueError:
            return str(spec)
        if 0.0 < frac <= 1.0:
            return f"{spec} ({100 * frac:g}%)"
    return str(spec)


def _label(cfg: dict, varying: list[str]) -> str:
    """The method (algorithm | compressor | stepsize), then any other field that differs between lines."""
    head = f"{cfg['algorithm']} | {compressor_text(cfg['compressor'])} | {cfg['stepsize']}"
    unread = set(not_read(cfg["algorithm"], varying)) if algorithms.REGISTRY.find(cfg.get("algorithm")) else set()
    rest = [f"{k}={cfg[k]}" for k in varying if k not in ("algorithm", "compressor", "stepsize")
            and k not in unread and cfg.get(k) is not None]
    return ", ".join([head] + rest)


def band_stats(runs: list[dict], y: str, band: tuple[float, float], series=None):
    """Iterations, median and the quantile band of ``y`` over runs (truncated to the shortest run): the
    statistic the summary tables give, robust to one seed that blows up.

    ``series(run, y)``: how to read ``y`` (default the stored dataset; plot_file derives some).
    """
    series = series or (lambda r, name: np.asarray(r[name], dtype=float))
    n = min(series(r, y).size for r in runs)
    Y = np.stack([series(r, y)[:n] for r in runs])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the first row of stoch_grad_norm_sq is NaN
        lo, hi = np.nanpercentile(Y, band, axis=0) if Y.shape[0] > 1 else (Y[0], Y[0])
        return runs[0]["iteration"][:n], np.nanmedian(Y, axis=0), lo, hi


#: the series' names in a legend's words
LABELS_PLAIN = {"loss": "loss", "grad_norm_sq": "‖∇f‖²", "grad_norm_sq_D": "‖∇f‖²_D", "G": "G", "suboptimality":
                "f − f*", "stoch_grad_norm_sq": "‖g‖²", "lambda_min": "λ_min", "test_accuracy": "accuracy"}

#: human labels (with units) of the per-iteration datasets and the x axes
LABELS = {
    "iteration": "iteration $k$", "bits_up": "bits sent up (cumulative)", "bits_total": "bits sent up + down",
    "wall_time": "wall time (s)", "loss": r"$f(x^k)$", "grad_norm_sq": r"$\|\nabla f(x^k)\|^2$",
    "grad_norm_sq_D": r"$\|\nabla f(x^k)\|^2_{D/\det(D)^{1/d}}$",
    "G": r"$G_{k,D}$: running mean of $\|\nabla f\|^2_{D/\det(D)^{1/d}}$",
    "suboptimality": r"$f(x^k) - f^\star$",
    "stoch_grad_norm_sq": "$\\|g^k\\|^2$, stochastic gradient\n(mean since the last log)",
    "lambda_min": r"$\lambda_{\min}(\nabla^2 f(x^k))$", "resets": "resets (cumulative)",
    "test_accuracy": "test accuracy (held-out samples)",
}
#: drawn in log scale by default (positive, spanning decades)
LOG_Y = {"grad_norm_sq", "grad_norm_sq_D", "G", "suboptimality", "stoch_grad_norm_sq"}
DERIVED = {"G": ("grad_norm_sq_D",), "suboptimality": ("loss",), "bits_total": ("bits_up", "bits_down")}
X_CHOICES = ("iteration", "bits_up", "bits_total", "wall_time")
#: line styles cycled over the methods (with the colours): identical traces drawn over each other stay visible
LINE_STYLES = ("-", "--", ":", "-.")


def _series(rec, name):
    """A per-iteration dataset, or one derived from them; its own x (λ_min has its own iterations)."""
    if name == "G":
        return running_mean(rec["grad_norm_sq_D"])
    if name == "suboptimality":
        f_star = _f_star(rec)
        if f_star is None:
            raise StoreError("--y suboptimality needs f*, which only problems with an exact minimum record "
                             "(least-squares, saddle-quartic, linear-autoencoder without --lam)")
        return np.asarray(rec["loss"], dtype=float) - f_star
    if name == "bits_total":
        return np.asarray(rec["bits_up"], dtype=float) + np.asarray(rec["bits_down"], dtype=float)
    return np.asarray(rec[name], dtype=float)


def _f_star(rec):
    """The run's exact minimum f*: the saddle problems' ``f_star``, or ``f_lower`` where the problem says it is
    exact (least-squares); None where unknown (a lower bound is not f*)."""
    meta = rec["meta"]
    if meta.get("f_star") is not None:
        return float(meta["f_star"])
    from . import problems
    name = rec["config"].get("problem")
    if meta.get("f_lower") is not None and name in problems.REGISTRY and \
            getattr(problems.get(name), "f_lower_exact", False):
        return float(meta["f_lower"])
    return None


def _x_of(rec, y, x):
    if y == "lambda_min":
        if x != "iteration":
            raise StoreError("--y lambda_min is drawn against its own iterations (lambda_min_iter); use --x iteration")
        return np.asarray(rec["lambda_min_iter"], dtype=float)
    return np.asarray(rec["iteration"], dtype=float) if x == "iteration" else _series(rec, x)


def check_figure_path(out, option: str = "-o"):
    """``out`` as a Path, or a one-line error when its folder is missing or matplotlib cannot write its format."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise StoreError(f"{option} {str(out)!r}: directory {str(out.resolve().parent)!r} does not exist")
    fmts = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    if out.suffix.lstrip(".").lower() not in fmts:
        raise StoreError(f"{option} {str(out)!r}: unknown figure format {out.suffix or '(none)'!r}; use one of "
                         f"{', '.join('.' + k for k in sorted(fmts))}")
    return out


def plot_per_problem(path, out, where: dict | None = None, ids=None, **kw) -> list[tuple[str, dict]]:
    """:func:`plot_file`, one figure per problem when the runs hold several (``out`` stem + ``-PROBLEM``):
    a logistic loss and a saddle's quartic on one axis are unreadable.  ``[(file, figure), ...]``."""
    where = dict(where or {})
    x = kw.get("x", "iteration")
    needs = _needs(kw.get("ys", ("loss",)), tuple(x.split(",")) if isinstance(x, str) else tuple(x))
    found = sorted({json.loads(k).get("problem") for k in load_groups(path, needs, where, ids)} - {None})
    if len(found) <= 1 or "problem" in where:
        return [(str(out), plot_file(path, out, where=where or None, ids=ids, **kw))]
    out = check_figure_path(out)
    figs, left = [], []
    for problem in found:
        name = out.with_name(f"{out.stem}-{problem}{out.suffix}")
        try:
            figs.append((str(name), plot_file(path, name, where={**where, "problem": problem}, ids=ids, **kw)))
        except StoreError as exc:  # e.g. --y suboptimality on a problem without f*: the others are drawn
            left.append((problem, exc))
    if not figs:
        raise left[0][1]
    figs[0][1]["notes"][:0] = [f"{len(found)} problems ({', '.join(found)}): one figure each, "
                               f"{out.stem}-PROBLEM{out.suffix} (--where problem=NAME draws one)"] + \
        [f"no figure for {problem}: {exc}" for problem, exc in left]
    return figs


def _needs(ys, xs_axes) -> list[str]:
    """The stored datasets the series ``ys`` against ``xs_axes`` are drawn from."""
    return sorted({n for y in ys for n in DERIVED.get(y, (y,))}
                  | {n for xa in xs_axes for n in DERIVED.get(xa, (xa,))} - {"iteration"}
                  | ({"lambda_min_iter"} if "lambda_min" in ys else set()))


def plot_file(path, out, x="iteration", ys=("loss",), band=(10.0, 90.0), log_y=None, log_x: bool = False,
              where: dict | None = None, ids=None, hlines: dict | None = None) -> dict:
    """Paper-style figure: one panel per y and x, one line per method (median over seeds) with a quantile band.

    ``x``: one x axis or several (a sequence or ``"iteration,bits_up"``: one column each).
    ``log_x``: log scale on the bits and time axes (the iteration axis too when it is the only one: symlog).
    ``hlines``: ``{y: (value, label)}``, a reference level drawn on each panel of ``y`` (a suite's ε²).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = check_figure_path(out)
    xs_axes = tuple(x.split(",")) if isinstance(x, str) else tuple(x)
    for xa in xs_axes:
        if xa not in X_CHOICES:
            raise ConfigError(f"--x {xa!r}: choose one of {', '.join(X_CHOICES)} (several: comma separated)")
    if "lambda_min" in ys and xs_axes != ("iteration",):
        raise StoreError("--y lambda_min is drawn against its own iterations (lambda_min_iter); use --x iteration")
    needs = _needs(ys, xs_axes)
    groups = load_groups(path, needs, where, ids)
    if not groups:
        statuses = store.run_statuses(path)
        if ids is not None:
            statuses = {i: s for i, s in statuses.items() if i in ids}
        if statuses and "completed" not in statuses.values():
            tally = ", ".join(f"{n} {s}" for s, n in sorted(Counter(statuses.values()).items()))
            raise StoreError(f"{str(path)!r} has no completed runs (it holds {tally}); plot draws completed runs. "
                             "Finish them by running the same command again (stored cells are skipped), or read "
                             "a partial trace with `cgdbench export`")
        present = set(_present(path))
        unfiltered = load_groups(path, needs, None, ids) if where else {}
        if unfiltered:  # the series are there: the filter matched nothing; name what it could match
            cfgs = [{**OMIT_AT_DEFAULT, **json.loads(k)} for k in unfiltered]  # the key leaves defaults out
            have = "; ".join(f"{f}: {', '.join(sorted({str(c.get(f)) for c in cfgs}))}" for f in where)
            raise StoreError(f"{str(path)!r}: no completed run matches --where "
                             f"{' '.join(f'{f}={_values(v)}' for f, v in where.items())}; its runs have {have}")
        plottable = [n for n in LABELS if n not in X_CHOICES and all(k in present for k in DERIVED.get(n, (n,)))
                     and (n != "suboptimality" or _any_f_star(path))]
        missing = [n for n in needs if n not in present] or needs
        raise StoreError(f"{str(path)!r} has no completed runs{' matching the filter' if where else ''} with "
                         f"{', '.join(missing)}; --y can be one of: {', '.join(plottable) or 'nothing (no runs)'}")
    notes = []
    if "suboptimality" in ys:  # only the runs that know f*: the others are left out of every panel, and said so
        without = {k: runs for k, runs in groups.items() if any(_f_star(r) is None for r in runs)}
        if len(without) == len(groups):
            _series(next(iter(groups.values()))[0], "suboptimality")  # raises: no run knows f*
        for k in without:
            del groups[k]
        if without:
            names = sorted({json.loads(k).get("problem") for k in without})
            notes.append(f"--y suboptimality: {len(without)} of {len(groups) + len(without)} methods left out "
                         f"(no exact f* for {', '.join(names)})")
    cfgs = [json.loads(k) for k in groups]
    varying = sorted(k for k in cfgs[0] if len({json.dumps(c.get(k)) for c in cfgs}) > 1)
    heads = [_label(cfg, varying) for cfg in cfgs]
    labels = [f"{h} ({len(runs)} seed{'s' if len(runs) > 1 else ''})" for h, runs in zip(heads, groups.values())]
    # methods that compute the same iterates (det-CGD1 and det-CGD2 with a diagonal D, GD and det-CGD with S = I)
    # draw one line over the other: the legend says which, or the reader counts lines and finds some missing
    stats = [[band_stats(runs, y, band, series=_series) for y in ys] for runs in groups.values()]  # drawn below
    meds = [[s[1] for s in per] for per in stats]
    # ... and on the bits axes the same x (32- and 64-bit values give the same loss at other bit counts); wall
    # time always differs, and the label says what is the same
    for m, runs in zip(meds, groups.values()):
        m += [np.median(np.stack([_x_of(r, ys[0], xa)[:m[0].size] for r in runs]), axis=0)
              for xa in xs_axes if xa in ("bits_up", "bits_total")]
    for g in range(len(meds)):
        same = next((h for h in range(g) if all(a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=0,
                                                                                   equal_nan=True)
                                                for a, b in zip(meds[g], meds[h]))), None)
        if same is not None:  # to 9 digits: indistinguishable on any axis
            labels[g] += f" = {heads[same]} (the same {', '.join(LABELS_PLAIN.get(y, y) for y in ys)})"
    ncol = 1 if len(groups) <= 6 and len(xs_axes) == 1 else 2
    width = 7.5 if len(xs_axes) == 1 else 5.2 * len(xs_axes)
    chars = int(width * 17.5 / ncol)  # 7-pt characters a legend column holds (with its marker) on the canvas
    if ncol == 2 and max(len(t) for t in labels) > chars:  # long labels: one column, wrapped if still too long
        ncol, chars = 1, int(width * 17.5)
    labels = [textwrap.fill(t, chars, subsequent_indent="  ") for t in labels]
    rows = -(-sum(t.count("\n") + 1 for t in labels) // ncol)
    legend_in = 0.17 * rows + 0.2  # inches below the axes for the legend (7 pt rows)
    height = 2.8 * len(ys) + 0.8 + legend_in
    fig, axes = plt.subplots(len(ys), len(xs_axes), figsize=(width, height), sharex="col", squeeze=False)
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    for g, ((key, runs), label) in enumerate(zip(groups.items(), labels)):
        # a (colour, dash) pair of its own for up to 4 × the colours: the dash moves on by one every time the
        # colours wrap; methods with the same trace stay visible under each other
        colour = colours[g % len(colours)]
        dash = LINE_STYLES[(g + g // len(colours)) % len(LINE_STYLES)]
        for i, y in enumerate(ys):
            _, mean, lo, hi = stats[g][i]
            for j, xa in enumerate(xs_axes):
                ax = axes[i, j]
                # the x of a point: the median over the seeds too (wall time and the bits of a random-size
                # compressor differ between seeds; the first seed's alone would stretch or shift the axis)
                xv = np.median(np.stack([_x_of(r, y, xa)[:mean.size] for r in runs]), axis=0)
                # a log axis has no 0 (no bits sent before the first step): drop such points, or
                # matplotlib draws them at the axis' left edge as a flat line
                keep = xv > 0 if log_x and xa != "iteration" else np.ones(xv.size, dtype=bool)
                ax.plot(xv[keep], mean[keep], lw=1.3, ls=dash, color=colour, label=label,
                        marker="o" if xv.size < 20 else None, ms=4)
                if len(runs) > 1:
                    ax.fill_between(xv[keep], lo[keep], hi[keep], color=colour, alpha=0.2, lw=0)
    for i, y in enumerate(ys):
        for j, xa in enumerate(xs_axes):
            ax = axes[i, j]
            if j == 0 or len(xs_axes) > 1:
                sparse = y == "G" and any((json.loads(k).get("log_every") or 1) > 1 for k in groups)
                # logged every L > 1: the running mean is over the logged rows, not G_{K,D} over every iterate
                ax.set_ylabel(LABELS[y] + "\n(over the logged rows)" if sparse else LABELS.get(y, y))
            if hlines and y in hlines:
                ax.axhline(hlines[y][0], color="black", lw=1.1, ls=(0, (8, 2, 1, 2, 1, 2)), label=hlines[y][1])
            positive = any(np.any(np.asarray(m[i]) > 0) for m in meds)  # a saddle's exact ‖∇f‖² = 0 has no log
            wants_log = (y in LOG_Y) if log_y is None else log_y
            if wants_log and not positive and j == 0:
                notes.append(f"--y {y}: no positive value on any drawn row (e.g. the exact 0 gradient at a saddle), "
                             "so a linear axis")
            if wants_log and positive:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)  # no "1e-7 +" offset making a flat line look busy
            if log_x and xa != "iteration":
                ax.set_xscale("log")
            elif log_x and len(xs_axes) == 1:
                ax.set_xscale("symlog", linthresh=1)
                ax.set_xlim(left=0)  # iterations are >= 0: no empty negative half
            else:  # a linear axis: 300000-bit ticks side by side ran into each other; ×10^k from 10^4 on
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=False)
                ax.xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
            ax.grid(True, alpha=0.3)
    for j, xa in enumerate(xs_axes):
        axes[-1, j].set_xlabel(LABELS.get(xa, xa))
    first = cfgs[0]
    datasets = sorted({str(r["meta"].get("dataset", {}).get("name", c.get("dataset")))
                       for c, runs in zip(cfgs, groups.values()) for r in runs})
    ds = datasets[0] if len(datasets) == 1 else "several datasets"
    common = f"{first['problem']} on {ds}" if "problem" not in varying else "several problems"
    if "clients" not in varying:
        common += f", n = {first['clients']}"
    seeds = max(len(r) for r in groups.values())
    stat = (f"median over seeds, {band[0]:g}–{band[1]:g}% band" if seeds > 1 else "one seed per line")
    title = f"{common} — {stat}"
    if len(xs_axes) == 1:
        axes[0, 0].set_title(title, fontsize=9)
    else:
        fig.suptitle(title, fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.ravel():  # a reference line drawn on a lower panel only
        for h, t in zip(*ax.get_legend_handles_labels()):
            if t not in labels:
                handles.append(h)
                labels.append(t)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))  # the legend sits below the axes, on the canvas
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return {"groups": len(groups), "runs": sum(len(r) for r in groups.values()), "axes": axes, "notes": notes}


def _values(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _any_f_star(path) -> bool:
    return any(_f_star(store.read_run(path, i)) is not None for i in store.list_runs(path))


def _present(path) -> list[str]:
    names = set()
    for run_id in store.list_runs(path):
        rec = store.read_run(path, run_id)
        names |= {k for k, v in rec.items() if isinstance(v, np.ndarray) and v.ndim == 1 and v.size > 1}
    return sorted(names)
