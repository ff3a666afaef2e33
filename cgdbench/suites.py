"""Named comparison suites: every experiment of the two papers that fits a 2-core machine, and a smoke suite.

Each suite is a function ``(dataset, seeds, iters) -> Sweep``; ``None`` means the suite's
default.  Registered with :func:`suite` (name, aliases, one-line doc); ``cgdbench list
suites`` prints them.  Settings follow ``shared/PAPERS.md`` (the authors' README):
λ = 0.1, x⁰ = 1/√d, single node K = 3000, distributed 100 clients, ε² = 1e-4, K = 2000.
"""
from __future__ import annotations

from . import data
from ._registry import Registry
from .config import RunConfig
from .errors import ConfigError, choices_error
from .sweep import Cell, Sweep


#: traits: ``default_seeds``, ``default_iters``; the factory is ``(dataset, seeds, iters) -> Sweep``
REGISTRY = Registry("suite")


def suite(name, doc, seeds, iters, aliases=(), own_data=False):
    """``own_data``: the suite's problems carry their data (a saddle's MNIST or digits), not the det-CGD datasets."""
    return REGISTRY.register(name, aliases=aliases, doc=doc, default_seeds=seeds, default_iters=iters,
                             own_data=own_data)


def get(name: str):
    return REGISTRY.get(name)


def describe() -> list[tuple[str, str]]:
    return [(s.name + (f" ({', '.join(s.aliases)})" if s.aliases else ""), s.doc) for s in REGISTRY.values()]


#: the det-CGD paper's datasets; ``--dataset all`` runs a suite on each one the data rule finds
PAPER_DATASETS = ("a1a", "a9a", "w8a", "mushrooms", "phishing")


def make(name: str, dataset=None, seeds: int | None = None, iters: int | None = None) -> Sweep:
    s = get(name)
    seeds = s.default_seeds if seeds is None else seeds
    iters = s.default_iters if iters is None else iters
    for opt, v in (("seeds", seeds), ("iters", iters)):
        if v < 1:
            raise ConfigError(f"--{opt} {v}: need at least 1")
    if dataset == "all":
        found = [d for d in PAPER_DATASETS if data.locate(d)]
        if not found:
            raise choices_error("--dataset all: none of the paper's datasets is found; dataset", dataset,
                                list(PAPER_DATASETS))
        if s.own_data:
            raise ConfigError(f"--dataset all applies to the det-CGD suites; {s.name} runs on its own data "
                              "(give --dataset NAME to change it)")
        parts = [s.factory(d, seeds, iters) for d in found]
        cells, seen = [], set()
        for c in (c for p in parts for c in p.cells):  # cells that do not read the dataset appear once
            if c.id not in seen:
                seen.add(c.id)
                cells.append(c)
        sw = Sweep(s.name, cells, target=parts[0].target, notes=[f"datasets: {', '.join(found)}"],
                   figure=parts[0].figure)
    else:
        sw = s.factory(dataset, seeds, iters)
        own = [c for c in sw.cells if c.config.dataset != (None if dataset is None else str(dataset))]
        if dataset is not None and own:  # e.g. smoke's saddle cells, which generate their data
            probs = ", ".join(sorted({c.config.problem for c in own}))
            sw.notes.append(f"--dataset {dataset} applies to {len(sw.cells) - len(own)} of the {len(sw.cells)} "
                            f"cells; the other {len(own)} ({probs}) run on their own data")
    sw.name = s.name
    sw.description = s.doc
    return sw


def _paper_dataset(dataset):
    """The paper's a1a when it is found (data-directory rule), else the bundled default shaped like it."""
    if dataset is not None:
        return dataset
    return "a1a" if data.locate("a1a") else None


def _cells(configs) -> list:
    out, seen = [], set()
    for kw in configs:
        c = Cell(RunConfig(**kw))
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


@suite("smoke", "the two papers' algorithms × every compatible sketch/compressor on small problems (the "
                "synthetic default and a 20-d quartic saddle), 1 seed, 300 iterations (the baselines: --suite "
                "baselines)",
       seeds=1, iters=300, aliases=("registry",))
def _smoke(dataset, seeds, iters):
    det = [("gd", "identity", "scalar", None), ("dcgd", "rand-1", "scalar", None),
           ("dcgd", "rand-k:10", "scalar", None)]
    for algo in ("det-cgd1", "det-cgd2"):
        det += [(algo, "identity", "diag-inv", None), (algo, "rand-1", "diag-inv", None),
                (algo, "rand-k:10", "l-inv", None), (algo, "importance-rand-1", "diag-inv", None),
                (algo, "block-rand-k:4", "l-inv", "3"), (algo, "bern-q:0.5", "l-inv", "3")]
    det += [("det-cgd2", "rand-1", "optimal", None), ("det-cgd1", "rand-1", "optimal-diag", None)]
    configs = [dict(dataset=dataset, clients=4, algorithm=a, compressor=c, stepsize=s, blocks=b, iters=iters,
                    seed=seed, log_every=1) for a, c, s, b in det for seed in range(seeds)]
    vec = ["identity", "rand-k:0.25", "rand-k-unscaled:0.25", "top-k:0.25", "sign", "qsgd:4", "natural",
           "sketch-top-k:0.25"]
    configs += [dict(problem="saddle-quartic", dim=20, algorithm=a, compressor=c, lr=0.05, noise=0.01, clients=2,
                     batch_size=16, iters=iters, seed=seed, log_every=5, x0="saddle")
                for a in ("sgd", "ef-sgd") for c in vec for seed in range(seeds)]
    return Sweep("smoke", _cells(configs), target=1e-2)


@suite("detcgd-scalar-vs-matrix", "det-CGD D.1.1: scalar vs matrix stepsizes, single node, rand-1, λ = 0.1, "
                                  "K = 3000 (DCGD γI; det-CGD1 diag⁻¹, L⁻¹, optimal; det-CGD2 diag⁻¹, optimal)",
       seeds=3, iters=3000, aliases=("d.1.1", "scalar-vs-matrix"))
def _d11(dataset, seeds, iters):
    methods = [("dcgd", "scalar"), ("det-cgd1", "diag-inv"), ("det-cgd1", "l-inv"), ("det-cgd1", "optimal"),
               ("det-cgd2", "diag-inv"), ("det-cgd2", "optimal")]
    ds = _paper_dataset(dataset)
    return Sweep("detcgd-scalar-vs-matrix", _cells(
        dict(dataset=ds, lam=0.1, algorithm=a, compressor="rand-1", stepsize=s, iters=iters, seed=seed, log_every=1)
        for a, s in methods for seed in range(seeds)), target=1e-2)


@suite("detcgd-same-stepsize", "det-CGD D.1.2: det-CGD1 vs det-CGD2 with the same stepsize rule (L⁻¹, γ by "
                               "Theorem 2 for each), rand-τ with τ ≈ d/4, d/2, 3d/4, single node, K = 3000",
       seeds=3, iters=3000, aliases=("d.1.2", "same-stepsize"))
def _d12(dataset, seeds, iters):
    ds = _paper_dataset(dataset)
    configs = [dict(dataset=ds, lam=0.1, algorithm=a, compressor=f"rand-k:{frac}", stepsize="l-inv", iters=iters,
                    seed=seed, log_every=1)
               for frac in (0.25, 0.5, 0.75) for a in ("det-cgd1", "det-cgd2") for seed in range(seeds)]
    return Sweep("detcgd-same-stepsize", _cells(configs), target=1e-2)


@suite("detcgd-distributed", "det-CGD D.2.1: 100 clients, rand-1, ε² = 1e-4, K = 2000: DCGD with the "
                             "Khaled-Richtárik γ and with matrix smoothness, det-CGD1 and det-CGD2 with the "
                             "Corollary 1 stepsizes (first build of corollary1 ≈ 1.5 min, then cached)",
       seeds=3, iters=2000, aliases=("d.2.1", "distributed"))
def _d21(dataset, seeds, iters):
    ds = _paper_dataset(dataset)
    methods = [("dcgd", "khaled-richtarik"), ("dcgd", "matrix-smoothness"), ("det-cgd1", "corollary1"),
               ("det-cgd2", "corollary1")]
    sw = Sweep("detcgd-distributed", _cells(
        dict(dataset=ds, lam=0.1, clients=100, algorithm=a, compressor="rand-1", stepsize=s, eps2=1e-4,
             iters=iters, seed=seed, log_every=1) for a, s in methods for seed in range(seeds)), target=1e-4)
    # the paper's Figure 1: G_{K,D} against iterations and bits, with the ε² level
    sw.figure = {"x": ("iteration", "bits_up"), "ys": ("G",), "log_x": True, "target_on": ("G",)}
    return sw


@suite("compression-for-free", "det-CGD Table 1 rows 9/12: det-CGD2 with Bern-q (q = 1/2 per layer, 3 layers) "
                               "against uncompressed det-CGD2, optimal D, single node, K = 3000",
       seeds=3, iters=3000, aliases=("for-free",))
def _free(dataset, seeds, iters):
    ds = _paper_dataset(dataset)
    return Sweep("compression-for-free", _cells(
        dict(dataset=ds, lam=0.1, blocks="3", algorithm="det-cgd2", compressor=c, stepsize="optimal", iters=iters,
             seed=seed, log_every=1) for c in ("identity", "bern-q:0.5") for seed in range(seeds)), target=1e-2)


@suite("saddle-escape", "saddle paper Figure 2 (in spirit, on the MLP autoencoder of 8×8 digits): from the saddle, "
                        "ef-sgd without and with noise r = 0.01 × uncompressed / TopK 0.1% / RandomK 0.1% "
                        "(η = 0.1, 0.1, 0.0005), 10 seeds",
       seeds=10, iters=3000, aliases=("escape", "figure2"), own_data=True)
def _escape(dataset, seeds, iters):
    comps = [("identity", 0.1), ("top-k:0.001", 0.1), ("rand-k:0.001", 0.0005)]
    return Sweep("saddle-escape", _cells(
        dict(problem="mlp-autoencoder", dataset=dataset, hidden="32", algorithm="ef-sgd", compressor=c, noise=r,
             lr=lr, batch_size=64, iters=iters, log_every=25, reset_iters=100, x0="saddle", seed=seed)
        for c, lr in comps for r in (0.0, 0.01) for seed in range(seeds)), target=1e-2)


@suite("saddle-randomk-classes", "saddle paper Figure 1 (on the MLP classifier of 8×8 digits instead of ResNet34 on "
                                 "CIFAR-10): 10 workers holding one class each, ef-sgd with RandomK keeping 100%, "
                                 "10%, 1%, 0.1% of the coordinates, η = 0.1, batch 8 per worker; loss and test "
                                 "accuracy against iterations and bits (--plot)",
       seeds=3, iters=3000, aliases=("figure1", "randomk-classes"), own_data=True)
def _randomk_classes(dataset, seeds, iters):
    sw = Sweep("saddle-randomk-classes", _cells(
        dict(problem="mlp-classifier", dataset=dataset, split="by-label", clients=10, algorithm="ef-sgd",
             compressor=f"rand-k:{frac}", lr=0.1, batch_size=8, iters=iters, log_every=25, seed=seed)
        for frac in ("1.0", "0.1", "0.01", "0.001") for seed in range(seeds)), target=1e-2)
    sw.figure = {"x": ("iteration", "bits_up"), "ys": ("loss", "test_accuracy"), "log_x": True}
    return sw


@suite("baselines", "the field's baselines against det-CGD, 100 clients, one coordinate per message, each method's "
                    "theory stepsize: GD, det-CGD1 (rand-1, diag⁻¹), det-MARINA (rand-1), EF21 (top-1), DIANA and "
                    "MARINA (rand-1), K = 2000",
       seeds=3, iters=2000, aliases=("ef21-diana-marina",))
def _baselines(dataset, seeds, iters):
    ds = _paper_dataset(dataset)
    methods = [("gd", "identity", "scalar"), ("det-cgd1", "rand-1", "diag-inv"), ("det-marina", "rand-1", "det-marina"),
               ("ef21", "top-k:1", "ef21"), ("diana", "rand-k:1", "diana"), ("marina", "rand-k:1", "marina")]
    return Sweep("baselines", _cells(
        dict(dataset=ds, lam=0.1, clients=100, algorithm=a, compressor=c, stepsize=s, iters=iters, seed=seed,
             log_every=1) for a, c, s in methods for seed in range(seeds)), target=1e-2)
