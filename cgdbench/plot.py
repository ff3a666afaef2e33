"""Figures from an HDF5 results file: runs grouped over seeds, mean with quantile bands.

``plot_file`` groups runs whose configs differ only in ``seed`` and draws, per
group, the mean of a per-iteration dataset with a band between two quantiles
across seeds.  ``escape_experiment`` is the saddle paper's Figure 2 in spirit:
from the problem's saddle, compressed SGD with and without perturbation for
several compressors over many seeds, stored in HDF5 (resumable) and plotted.
"""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np

from . import store
from .errors import ConfigError, StoreError


def load_groups(path, ys) -> dict:
    """``{config JSON without seed: [run dict, ...]}`` for completed runs having every y in ``ys``."""
    groups: dict = {}
    for run_id in store.list_runs(path):
        rec = store.read_run(path, run_id)
        if rec.get("status") != "completed":
            continue
        missing = [y for y in ys if y not in rec]
        if missing:
            continue
        cfg = dict(rec["config"])
        cfg.pop("seed", None)
        groups.setdefault(json.dumps(cfg, sort_keys=True), []).append(rec)
    return groups


def _label(cfg: dict, varying: list[str]) -> str:
    if not varying:
        return f"{cfg['algorithm']} {cfg['compressor']}"
    return ", ".join(f"{k}={cfg[k]}" for k in varying)


def band_stats(runs: list[dict], y: str, band: tuple[float, float]):
    """Iterations, mean and the quantile band of ``y`` over runs (truncated to the shortest run)."""
    n = min(r[y].size for r in runs)
    Y = np.stack([np.asarray(r[y][:n], dtype=float) for r in runs])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the first row of stoch_grad_norm_sq is NaN
        lo, hi = np.nanpercentile(Y, band, axis=0) if Y.shape[0] > 1 else (Y[0], Y[0])
        return runs[0]["iteration"][:n], np.nanmean(Y, axis=0), lo, hi


def plot_file(path, out, x: str = "iteration", ys=("loss",), band=(10.0, 90.0), log_y: bool = False) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = load_groups(path, ys)
    if not groups:
        raise StoreError(f"{str(path)!r} has no completed runs with dataset(s) {', '.join(ys)}")
    cfgs = [json.loads(k) for k in groups]
    varying = sorted(k for k in cfgs[0] if len({json.dumps(c.get(k)) for c in cfgs}) > 1)
    fig, axes = plt.subplots(len(ys), 1, figsize=(7, 3.2 * len(ys)), sharex=True, squeeze=False)
    for (key, runs), cfg in zip(groups.items(), cfgs):
        for ax, y in zip(axes[:, 0], ys):
            it, mean, lo, hi = band_stats(runs, y, band)
            xs = it if x == "iteration" else np.asarray(runs[0][x][:it.size], dtype=float)
            line, = ax.plot(xs, mean, lw=1.3, label=f"{_label(cfg, varying)} ({len(runs)} seeds)")
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
            ax.set_ylabel(y)
            if log_y:
                ax.set_yscale("log")
    axes[-1, 0].set_xlabel(x)
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title(f"mean over seeds, band {band[0]:g}%–{band[1]:g}%", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return {"groups": len(groups), "runs": sum(len(r) for r in groups.values())}


def _split_specs(text: str) -> list[str]:
    return [t.strip() for t in (text.split(";") if ";" in text else text.split(",")) if t.strip()]


def escape_experiment(ns) -> int:
    """Run the noise × compressor × seed grid from the saddle (skipping stored runs), then plot it."""
    from .config import RunConfig
    from .engine import run

    specs = _split_specs(ns.compressors)
    try:
        lrs = [float(t) for t in str(ns.lr).split(",")]
    except ValueError:
        raise ConfigError(f"--lr {ns.lr!r}: give one number or one per compressor") from None
    if len(lrs) == 1:
        lrs = lrs * len(specs)
    if len(lrs) != len(specs):
        raise ConfigError(f"--lr {ns.lr!r}: {len(lrs)} values for {len(specs)} compressors")
    if ns.seeds < 1:
        raise ConfigError(f"--seeds {ns.seeds}: need at least 1")
    if ns.noise <= 0:
        raise ConfigError(f"--noise {ns.noise}: the experiment compares r = 0 with some r > 0")
    hidden = ns.hidden if ns.problem in ("mlp-autoencoder", "mlp-ae", "autoencoder") else None
    grid = [RunConfig(problem=ns.problem, dataset=ns.dataset, hidden=hidden, dim=ns.dim, algorithm="ef-sgd",
                      compressor=spec, noise=noise, lr=lr, batch_size=ns.batch_size, iters=ns.iters,
                      log_every=ns.log_every, reset_iters=ns.reset_iters, x0="saddle", seed=seed)
            for spec, lr in zip(specs, lrs) for noise in (0.0, ns.noise) for seed in range(ns.seeds)]
    done = set()
    try:
        for run_id in store.list_runs(ns.out):
            rec = store.read_run(ns.out, run_id)
            if rec.get("status") == "completed":
                done.add(json.dumps(rec["config"], sort_keys=True))
    except (StoreError, FileNotFoundError, OSError):
        pass
    todo = [c for c in grid if json.dumps(c.to_dict(), sort_keys=True) not in done]
    print(f"escape: {len(grid)} runs in the grid, {len(grid) - len(todo)} already in {ns.out}, {len(todo)} to run",
          file=sys.stderr)
    for i, cfg in enumerate(todo, 1):
        tr = run(cfg, out=ns.out, data_dir=ns.data_dir)
        print(f"  [{i}/{len(todo)}] {cfg.compressor:<16} r={cfg.noise:<6g} seed {cfg.seed}: {tr.status}, "
              f"loss {tr.loss[0]:.4f} -> {tr.loss[-1]:.4f}, λ_min {tr.meta.get('sosp', {}).get('lambda_min', float('nan')):.3e}",
              file=sys.stderr)
    figure = ns.plot or str(ns.out).rsplit(".", 1)[0] + ".png"
    summary = plot_escape(ns.out, figure, specs)
    for row in summary:
        print(f"{row['compressor']:<16} r={row['noise']:<6g} final loss mean {row['final_loss_mean']:.4f} "
              f"[{row['final_loss_lo']:.4f}, {row['final_loss_hi']:.4f}]  first iteration below 90% of the "
              f"saddle's loss: {row['escape_iter_median']}")
    print(f"figure: {figure}")
    return 0


def plot_escape(path, out, specs=None, band=(10.0, 90.0)) -> list[dict]:
    """Figure 2 layout: one column per compressor; loss (top) and stochastic ‖∇F‖² (bottom); no noise red, noise green."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = load_groups(path, ("loss", "stoch_grad_norm_sq"))
    by = {}
    for key, runs in groups.items():
        cfg = json.loads(key)
        by[(cfg["compressor"], cfg["noise"])] = runs
    comps = [c for c in dict.fromkeys(k[0] for k in by)]
    if specs:
        from . import compressors
        order = [compressors.parse(s) for s in specs]
        canon = [n + (":" + p if p else "") for n, p in order]
        comps = [c for c in canon if c in comps] + [c for c in comps if c not in canon]
    if not comps:
        raise StoreError(f"{str(path)!r} holds no completed escape runs")
    fig, axes = plt.subplots(2, len(comps), figsize=(4.2 * len(comps), 6), squeeze=False, sharex=True)
    summary = []
    for j, comp in enumerate(comps):
        for (c, noise), runs in sorted(by.items(), key=lambda kv: kv[0][1]):
            if c != comp:
                continue
            color = "tab:green" if noise > 0 else "tab:red"
            label = f"r = {noise:g}" if noise > 0 else "no noise"
            for i, y in enumerate(("loss", "stoch_grad_norm_sq")):
                it, mean, lo, hi = band_stats(runs, y, band)
                axes[i, j].plot(it, mean, color=color, lw=1.3, label=f"{label} ({len(runs)} seeds)")
                axes[i, j].fill_between(it, lo, hi, color=color, alpha=0.2, lw=0)
            final = np.array([r["loss"][-1] for r in runs])
            first = [int(r["iteration"][np.argmax(r["loss"] < 0.9 * r["loss"][0])]) if np.any(r["loss"] < 0.9 * r["loss"][0])
                     else -1 for r in runs]
            summary.append({"compressor": comp, "noise": noise, "seeds": len(runs),
                            "final_loss_mean": float(final.mean()), "final_loss_lo": float(np.percentile(final, band[0])),
                            "final_loss_hi": float(np.percentile(final, band[1])),
                            "escape_iter_median": int(np.median(first)) if min(first) >= 0 else
                            f"not escaped in {sum(f < 0 for f in first)} of {len(first)} runs"})
        axes[0, j].set_title(comp, fontsize=10)
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("iteration")
    axes[0, 0].set_ylabel("loss f(x_t)")
    axes[1, 0].set_ylabel("‖stochastic gradient‖² (mean since last log)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"escaping the saddle: mean over seeds, {band[0]:g}%–{band[1]:g}% band", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return summary
