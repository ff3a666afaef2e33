"""RunConfig: the one place that validates what a user asks for.

Everything here is checked without touching data; checks that need the data
(k > d, more clients than rows, a missing file) happen when the engine builds
the run, still before anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from . import algorithms, compressors, problems, stepsizes
from .algorithms.ef_sgd import noise_schedule
from .errors import ConfigError, IncompatibleError, choices_error

X0_CHOICES = ("ones-over-sqrt-d", "zeros", "saddle", "random")
VALUE_BITS = (32, 64)
DOWNLINK = ("per-client", "once", "none")
MAX_SEED = 2**63 - 1
EF21_INIT = ("gradient", "compressed")
OMIT_AT_DEFAULT = {"marina_p": None, "diana_alpha": None, "ef21_init": "gradient", "noise_schedule": "constant",
                   "metrics": "every"}
#: ``--metrics``: the full-gradient metric every iteration (G_{K,D} exact), or on logged iterations only
METRICS_MODES = ("every", "logged")
#: options a problem may default differently (``problem.run_defaults``); else these.  The saddle
#: problems leave --lr and --reset-iters to the build (``ef_sgd.build``): their defaults need d and μ
RUN_DEFAULTS = {"lr": 0.1, "iters": 1000, "eps": 1e-3, "rho": 1.0, "noise_schedule": "constant",
                "reset_iters": 100, "log_every": 1}
BUILD_RESOLVED = ("lr", "reset_iters")
#: the saddle problems' size options (read by the algorithms that run on them)
PROBLEM_SIZE = {"hidden", "dim"}


def not_read(algorithm: str, given) -> list[str]:
    """Of the options ``given`` (names the user set, whatever their value), those ``algorithm`` does not read.

    A config cannot tell a value the user gave from a default it filled in (a det-CGD config stores
    ``lr = 0.1``), so :class:`RunConfig` flags an option only when it differs from the default; the
    command line knows what was typed and asks this too."""
    algo = algorithms.get(algorithm)
    return [k for k in given if k in algorithms.OWN_OPTIONS and k not in algo.reads]


def own_options_error(algo, bad) -> IncompatibleError:
    """The error for options ``bad`` given to ``algo``, which does not read them: who does."""
    readers = [e.name for e in algorithms.REGISTRY.values() if all(k in e.reads for k in bad)]
    where = ", ".join(readers) if readers else "other algorithms"
    if bad == ["blocks"]:
        where = ("the sketch methods (det-CGD, det-MARINA)" if algo.oracle == "full" else
                 "det-CGD methods (the saddle problems bring their own layer blocks)")
    opts = ", ".join("--" + k.replace("_", "-") for k in bad)
    if set(bad) <= PROBLEM_SIZE:  # options of the minibatch problems, which run only with the SGD methods
        mine = [n for n, e in problems.REGISTRY.items() if e.oracle == algo.oracle]
        layered = [n for n, e in problems.REGISTRY.items() if e.oracle != algo.oracle and n != "saddle-quartic"]
        return IncompatibleError(f"{opts} {'is an option' if len(bad) == 1 else 'are options'} of the minibatch "
                                 f"problems (--hidden: the layer widths of {', '.join(layered)}; --dim: "
                                 f"saddle-quartic's dimension), which run with {where}; algorithm {algo.name!r} "
                                 f"runs on {', '.join(mine)}")
    return IncompatibleError(f"{opts} {'does' if len(bad) == 1 else 'do'} not apply to algorithm "
                       f"{algo.name!r}; only to {where}")


def _float(name: str, value, lo: float, strict: bool = False, allow_inf: bool = False) -> float:
    if isinstance(value, bool):  # a TOML `true` is not 1.0
        raise ConfigError(f"--{name} {value!r}: must be a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} {value!r}: must be a number") from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < lo or (strict and v == lo):
        raise ConfigError(f"--{name} {value!r}: must be a {'finite ' if not allow_inf else ''}number "
                          f"{'>' if strict else '>='} {lo:g}")
    return v


def _int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"--{name} {value!r}: must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"--{name} {value}: must be {allowed}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """One run: problem + data + algorithm + compressor + stepsize + budget.

    Names are canonicalised (aliases resolved) on construction.
    """

    problem: str = "logreg-nonconvex"
    dataset: str | None = None          # manifest name, path, or None for the problem's default data
    lam: float | None = None            # None: the problem's default (logreg 0.1, quartic 1, autoencoders 0)
    clients: int = 1
    split: str = "contiguous"
    split_seed: int = 0
    blocks: str | None = None           # None: one block; "3": three equal blocks; "40,40,43": sizes
    x0: str | None = None               # None: the problem's default starting point
    algorithm: str = "det-cgd1"
    compressor: str | None = None       # None: the algorithm's default_compressor (cgdbench list algorithms)
    stepsize: str | None = None         # None: the algorithm's default_stepsize (sgd/ef-sgd: scalar:LR)
    iters: int | None = None            # None: the problem's default (1000 unless it says otherwise)
    eps2: float | None = None           # ε² of Corollary 1 (the stepsizes.DISTRIBUTED rules)
    seed: int = 0
    log_every: int | None = None        # None: the problem's default (1 unless it says otherwise)
    metrics: str = "every"              # det-CGD methods: "logged" computes ‖∇f‖² (and G_{K,D}) on logged rows only
    value_bits: int = 32
    index_mode: str = "explicit"
    downlink: str = "per-client"
    # --- compressed SGD (sgd, ef-sgd) and the saddle problems -------------------
    lr: float | None = None             # η (None: the problem's default, 0.1 unless it says otherwise)
    batch_size: int = 64                # B, rows per worker and iteration (capped by the problem's rows)
    noise: float = 0.0                  # r: ξ ~ N(0, r² I)
    noise_schedule: str | None = None   # "constant" or "step:T[:F]" (None: the problem's default)
    reset_iters: int | None = None      # I (None: ⌈1/(η√(ρε))⌉ on the saddle problems, else 100)
    escape_radius: float | None = None  # R (None: no radius test)
    reset: bool = True                  # False: plain EF-SGD (no reset)
    sosp_every: int = 0                 # λ_min(∇²f) every N iterations (0: only at the end)
    eps: float | None = None            # ε of the ε-SOSP verdict (None: the problem's default, 1e-3)
    rho: float | None = None            # ρ (Hessian Lipschitz constant) of the verdict (None: default, 1)
    hidden: str | None = None           # autoencoder hidden widths, e.g. "32,8,32"
    dim: int | None = None              # saddle-quartic dimension
    # --- the baselines' own options -------------------------------------------------
    marina_p: float | None = None       # MARINA/det-MARINA: probability of a full-gradient round (None: theory)
    diana_alpha: float | None = None    # DIANA: shift stepsize α (None: 1/(1+ω))
    ef21_init: str = "gradient"         # EF21: g_i⁰ = ∇f_i(x⁰) ("gradient") or C(∇f_i(x⁰)) ("compressed")

    def __post_init__(self):
        s = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        s("problem", problems.canonical(self.problem))
        algo = algorithms.get(self.algorithm)
        s("algorithm", algo.name)
        prob = problems.get(self.problem)
        if prob.oracle != algo.oracle:
            fitting = algorithms.REGISTRY.names(oracle=prob.oracle)
            raise IncompatibleError(f"problem {self.problem!r} is not defined for algorithm {algo.name!r}; "
                              f"use one of: {', '.join(fitting)}")
        own = {**RUN_DEFAULTS, **getattr(prob, "run_defaults", {})}
        late = BUILD_RESOLVED if prob.oracle == "minibatch" else ()
        for k in RUN_DEFAULTS:
            if getattr(self, k) is None and k not in late:
                s(k, own[k])
        self._check_own_options(algo, {k: v for k, v in own.items() if k not in late})
        if self.lr is not None:
            s("lr", _float("lr", self.lr, 0.0, strict=True))
        if self.compressor is None:
            s("compressor", algo.default_compressor)
        name, params = compressors.parse(self.compressor, algo.contract)
        s("compressor", name + (":" + params if params else ""))
        from_lr = algo.default_stepsize == "lr"  # compressed SGD: D = ηI from --lr
        if self.stepsize is None:
            s("stepsize", (f"scalar:{self.lr!r}" if self.lr is not None else "scalar") if from_lr
              else algo.default_stepsize)
        sname, param = stepsizes.parse(self.stepsize)
        s("stepsize", stepsizes.canonical(self.stepsize))
        if sname in stepsizes.DISTRIBUTED:
            if self.eps2 is None:
                raise ConfigError(f"stepsize {self.stepsize!r} needs the target ε² of Corollary 1: pass --eps2 "
                                  "(the paper uses 1e-4); K is --iters")
            s("eps2", _float("eps2", self.eps2, 0.0, strict=True))
        elif self.eps2 is not None:
            raise IncompatibleError(f"--eps2 only applies to the stepsizes {', '.join(stepsizes.DISTRIBUTED)}, "
                              f"not to {self.stepsize!r}")
        if from_lr and (sname != "scalar" or (param is not None and param != self.lr)):
            eta = f"η = {self.lr:g}" if self.lr is not None else "default: the problem's"
            raise ConfigError(f"algorithm {algo.name!r} takes its stepsize from --lr ({eta}); "
                              f"drop --stepsize {self.stepsize!r}")
        if algo.rules is not None and not from_lr and sname == "scalar" and param is None:
            raise ConfigError(f"algorithm {algo.name!r}: write --stepsize scalar:GAMMA with an explicit γ, "
                              f"or one of its theory rules: {', '.join(r for r in algo.rules if r != 'scalar')}")
        algorithms.check(algo, self.compressor, self.stepsize)
        if self.marina_p is not None:
            s("marina_p", _float("marina-p", self.marina_p, 0.0, strict=True))
            if self.marina_p > 1:
                raise ConfigError(f"--marina-p {self.marina_p!r}: a probability must be in (0, 1]")
        if self.diana_alpha is not None:
            s("diana_alpha", _float("diana-alpha", self.diana_alpha, 0.0, strict=True))
        if self.ef21_init not in EF21_INIT:
            raise choices_error("--ef21-init", self.ef21_init, EF21_INIT)
        if self.metrics not in METRICS_MODES:
            raise choices_error("--metrics", self.metrics, METRICS_MODES)
        if self.lam is None:
            s("lam", prob.default_lam)
        try:
            if isinstance(self.lam, bool):  # a TOML `true` is not 1.0
                raise TypeError
            lam = float(self.lam)
        except (TypeError, ValueError):
            raise ConfigError(f"--lam {self.lam!r}: λ must be a number >= 0") from None
        if not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"--lam {self.lam!r}: λ must be a finite number >= 0")
        s("lam", lam)
        s("batch_size", _int("batch-size", self.batch_size, 1))
        s("noise", _float("noise", self.noise, 0.0))
        if self.reset_iters is not None:
            s("reset_iters", _int("reset-iters", self.reset_iters, 1))
        if self.escape_radius is not None:
            s("escape_radius", _float("escape-radius", self.escape_radius, 0.0, strict=True, allow_inf=True))
        if not isinstance(self.reset, (bool, np.bool_)):  # a TOML "no" would read as True
            raise ConfigError(f"reset {self.reset!r}: must be true or false (--no-reset on the command line)")
        s("reset", bool(self.reset))
        s("sosp_every", _int("sosp-every", self.sosp_every, 0))
        s("eps", _float("eps", self.eps, 0.0, strict=True))
        s("rho", _float("rho", self.rho, 0.0, strict=True))
        if self.dim is not None:
            s("dim", _int("dim", self.dim, 2))
        if self.hidden is not None:
            s("hidden", str(self.hidden))
        if self.x0 is None:
            s("x0", prob.default_x0)
        if self.x0 not in prob.x0_choices:
            raise choices_error(f"--x0/--init for {self.problem}", self.x0, prob.x0_choices)
        s("clients", _int("clients", self.clients, 1))
        s("iters", _int("iters", self.iters, 1))
        s("noise_schedule", str(self.noise_schedule).strip().lower())
        noise_schedule(self.noise_schedule, self.iters)
        s("seed", _int("seed", self.seed, 0, MAX_SEED))
        s("split_seed", _int("split-seed", self.split_seed, 0, MAX_SEED))
        if not self.reset and self.reset_iters is not None:
            raise ConfigError(f"--reset-iters {self.reset_iters} with --no-reset: a run without resets has no "
                              "reset period (drop one of them)")
        s("log_every", _int("log-every", self.log_every, 1))
        from .algorithms._common import rows_for
        from .environment import check_memory
        # the logged rows (about 10 float64 columns) plus the wall-time marks, allocated before the run
        check_memory(rows_for(self.iters, self.log_every) * 10 * 8.0,
                     f"--iters {self.iters} logged every {self.log_every} (the trace's rows)",
                     "log less often (--log-every) or run fewer iterations")
        if self.split not in problems.SPLITS:
            raise choices_error("split", self.split, problems.SPLITS)
        if self.split_seed != 0 and self.split != "shuffled":
            raise ConfigError(f"--split-seed {self.split_seed}: only the shuffled split draws from a seed; "
                              f"--split {self.split} does not (use --split shuffled)")
        if self.value_bits not in VALUE_BITS:
            raise choices_error("value width (--value-bits)", self.value_bits, VALUE_BITS)
        if self.index_mode not in compressors.INDEX_MODES:
            raise choices_error("index mode", self.index_mode, compressors.INDEX_MODES)
        if self.downlink not in DOWNLINK:
            raise choices_error("downlink model", self.downlink, DOWNLINK)
        if self.dataset is not None:
            s("dataset", str(self.dataset))
        if self.blocks is not None:
            s("blocks", str(self.blocks))

    def _check_own_options(self, algo, own: dict) -> None:
        """An option another algorithm reads, given to this one, is a mistake: name it and who reads it."""
        defaults = {**{f.name: f.default for f in dataclasses.fields(self)}, **own}
        bad = [k for k in algorithms.OWN_OPTIONS if k not in algo.reads and getattr(self, k) != defaults[k]]
        if algo.contract != "sketch" and self.blocks is not None:  # blocks shape sketches and D only
            bad.append("blocks")
        if bad:
            raise own_options_error(algo, bad)

    def to_dict(self) -> dict:
        """All fields, except the newer algorithm options left at their default: a config that does not
        use them keeps the dict, hence the run id, it had before they existed."""
        out = dataclasses.asdict(self)
        for k, default in OMIT_AT_DEFAULT.items():
            if out[k] == default:
                del out[k]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)


def _check_reads(entries=None) -> None:
    """Every option an algorithm declares it reads is a RunConfig field (a typo would make the algorithm
    refuse its own option): every algorithm when the config module loads, a later one when it registers."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for e in (algorithms.REGISTRY.values() if entries is None else entries):
        bad = [k for k in e.reads if k not in fields]
        if bad:
            raise ValueError(f"algorithm {e.name!r} declares reads={bad}, which are not RunConfig fields; "
                             f"choose from: {', '.join(sorted(fields))}")


_check_reads()
