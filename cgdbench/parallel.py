"""Threading policy: which compiled path runs each chunk, and a checked threading layer.

Measured on the 2-core machine (``benchmarks/threading_policy.py``, docs/performance.md):
OpenMP's spinning wait is the fastest on a quiet machine (a1a, 100 clients: 34 µs per
iteration with 2 threads against 62 µs with 1) but a parallel region needs every thread
of the team scheduled, so with one competing CPU-bound process a 2-thread iteration cost
1.1-2.3x the 1-thread one, and up to ~100x in the issue's report.  A passive wait
(``OMP_WAIT_POLICY=passive``) costs a futex wake per region: 93 µs quiet, slower than one
thread.  TBB steals work (good under load) but pays ~15 µs per region quiet and needs its
shared library on the loader path; workqueue is slow in both.

So the package keeps the threading layer Numba picks and its default wait policy, and
decides per chunk instead: every ``prange`` kernel is compiled as a parallel and a serial
path (:class:`cgdbench._jit.TwoPath`, bit-identical results), and :class:`PathChooser`
runs whichever measured faster, re-timing the other one now and then (after 2, 4, 8, ...
up to 64 chunks while the choice holds).  A quiet machine runs parallel; a busy one
falls back to serial within a chunk or two.

``CGDBENCH_PATH=auto|parallel|serial`` fixes the choice (default ``auto``); with one
Numba thread only the serial path runs, and so does ``auto`` when an iteration has less work
to split than :data:`PARALLEL_MIN_WORK` (the job's ``parallel_work()``: one client, or the
smoke suite's 20-d saddle with two workers of batch 16, whose serial iteration takes 3-7 µs
and whose parallel one 10-35 µs): there the parallel path never wins, and not compiling it
saves most of a first run (EF-SGD's parallel path: ~50 s).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time

from .errors import ConfigError

_BLAS_LOCK = threading.RLock()


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's BLAS on one thread (the setup's and the final checks' dense algebra, d up to a few thousand).

    Its result then does not depend on the machine's core count (a threaded product sums in another order:
    det-CGD1's L_i^{-1} blocks differed in their last bits with two BLAS threads), and spinning BLAS threads
    do not stall it when another process shares the cores (det-CGD1's optimal D on a1a: 11.7 s beside one busy
    process with two BLAS threads, 4.7 s with one; 3.2-6.2 s and 4.8 s quiet).  The limit is process-wide
    (threadpoolctl), so threads of one process that build at once take turns.
    """
    from threadpoolctl import threadpool_limits
    with _BLAS_LOCK, threadpool_limits(limits=1, user_api="blas"):
        yield


PATH_ENV = "CGDBENCH_PATH"
PATH_CHOICES = ("auto", "parallel", "serial")
#: values Numba accepts for NUMBA_THREADING_LAYER
LAYERS = ("default", "safe", "forksafe", "threadsafe", "tbb", "omp", "workqueue")
PROBE_FIRST, PROBE_MAX = 2, 64
#: the parallel path must look this much faster than the serial one to be chosen
PARALLEL_MARGIN = 1.25
WINDOW, PROBE_ITERS = 6, 2
#: one-iteration parallel chunks before the first timed one of a shape new to the process (the first two
#: discarded, the last the usual warm-up, whose seconds count only in the probe's extra cost): the first
#: parallel chunks start OpenMP's team (a1a, 100 clients: 1.2 ms, then 0.74 ms per iteration for two more,
#: against ~80 µs after); one such sample used to send a run to the serial path for most of its iterations
COLD_WARMUPS = 3
#: a probe waits until PROBE_BUDGET times what the last probe cost (over staying put) has run: <= 5% overhead
PROBE_BUDGET = 20.0
#: below this many operations per iteration (a job's ``parallel_work()``), ``auto`` runs the serial path
#: only: at ~2.5-10 ns an operation that is a 10-40 µs iteration, where waking the team, splitting it and
#: reducing the ranges leave the parallel path short of :data:`PARALLEL_MARGIN`
PARALLEL_MIN_WORK = 4096


def path_setting() -> str:
    value = os.environ.get(PATH_ENV, "auto").strip().lower() or "auto"
    if value not in PATH_CHOICES:
        raise ConfigError(f"{PATH_ENV}={os.environ[PATH_ENV]!r}: choose one of {', '.join(PATH_CHOICES)}")
    return value


class PathChooser:
    """Picks ``"parallel"`` or ``"serial"`` for each chunk from the seconds per iteration it saw.

    A path's cost is the mean over its last :data:`WINDOW` timed chunks, the largest left
    out: on a loaded machine parallel chunks are often many times slower (one thread of
    the team waits a whole time slice for a core), and it is that tail that costs, so a
    mean (not a median) is kept; but one outlier on a quiet machine (an interrupt, a page
    fault) must not send a run to the serial path for the rest of it.  Parallel is chosen only when it looks
    :data:`PARALLEL_MARGIN` times faster.  The path not in use is timed again after
    ``gap`` chunks, on a short chunk of :data:`PROBE_ITERS` iterations (a probe that
    hits the tail costs little), and not before :data:`PROBE_BUDGET` times the last probe's
    extra cost over the path in use has run (so probing costs at most ~5%: waking a
    sleeping team on a busy machine costs milliseconds); ``gap`` doubles (up to :data:`PROBE_MAX`) each
    time the probe leaves the choice as it was, and drops back to :data:`PROBE_FIRST`
    when it flips.
    """

    #: what earlier runs in this process learnt, per kernel, problem shape and thread count (an
    #: in-process sweep or benchmark does not pay a first probe per run on a busy machine)
    _memory: dict = {}
    #: the shapes whose parallel path has run in this process (past its cold start, :data:`COLD_WARMUPS`)
    _warmed: set = set()

    @classmethod
    def forget(cls) -> None:
        """Drop what earlier runs learnt (the next run of each shape times both paths afresh)."""
        cls._memory.clear()

    def __init__(self, threads: int, setting: str | None = None, key=None, clock=time.perf_counter,
                 work: int | None = None):
        setting = setting or path_setting()
        self._clock = clock
        #: why ``auto`` runs one path only (None: it chooses)
        self.why = None
        if setting == "auto" and threads > 1 and work is not None and work < PARALLEL_MIN_WORK:
            self.why = f"{work} operations per iteration to split, below {PARALLEL_MIN_WORK}: serial only"
        if threads <= 1 or setting == "serial" or self.why:
            self.paths = ("serial",)
        elif setting == "parallel":
            self.paths = ("parallel",)
        else:
            self.paths = ("parallel", "serial")
        self.samples: dict[str, list[float]] = {p: [] for p in self.paths}
        self.chunks = {"parallel": 0, "serial": 0}
        self.iterations = {"parallel": 0, "serial": 0}
        self.switches = 0
        self._i = 0
        self._gap = PROBE_FIRST
        self._next_probe = PROBE_FIRST
        self._next_probe_at = 0.0  # no probe before this clock()
        self._best = self.paths[0]
        #: a parallel probe under way: None (none), "pending" (its untimed first iteration is running),
        #: or that iteration's seconds (the timed part comes next)
        self._warm = None
        self._key = (key, self.paths, threads)
        #: untimed warm-up chunks the parallel path still needs before one is timed
        self._cold = 0 if self._key in self._warmed else COLD_WARMUPS
        seen = self._memory.get(self._key)
        if seen is not None:
            self.samples = {p: list(v) for p, v in seen["samples"].items()}
            self._best, self._next_probe_at, self._gap = seen["best"], seen["next_probe_at"], seen["gap"]
            self._next_probe = self._gap

    def cost(self, path: str) -> float:
        """Mean seconds per iteration over the window, its largest sample left out once there are 4 or more."""
        v = self.samples[path]
        if len(v) >= 4:
            return (sum(v) - max(v)) / (len(v) - 1)
        return sum(v) / len(v) if v else math.nan

    def pick(self) -> tuple[str, int | None]:
        """The path of the next chunk, and a cap on its iterations (``None``: the engine's chunk)."""
        if len(self.paths) == 1:
            return self.paths[0], None
        if isinstance(self._warm, float):  # the timed part of a parallel probe
            return "parallel", PROBE_ITERS
        probe = next((p for p in self.paths if not self.samples[p]), None)
        if probe is None and self._i >= self._next_probe and self._clock() >= self._next_probe_at:
            probe = next(p for p in self.paths if p != self._best)
        if probe == "parallel" and (self._best != "parallel" or not self.samples["parallel"]):
            # one untimed iteration first: it wakes the sleeping team, a cost paid once per switch
            self._warm = "pending"
            return "parallel", 1
        if probe is not None:
            return probe, PROBE_ITERS
        return self._best, None

    def record(self, path: str, seconds: float, iterations: int) -> None:
        self._i += 1
        self.chunks[path] += 1
        self.iterations[path] += iterations
        if iterations <= 0:
            return
        if self._warm == "pending" and path == "parallel":
            self._cold = max(0, self._cold - 1)
            if self._cold:  # still starting the team: the next chunk warms up again
                self._warm = None
                return
            self._warmed.add(self._key)
            self._warm = seconds
            return
        v = self.samples[path]
        v.append(seconds / iterations)
        del v[:-WINDOW]
        if len(self.paths) == 1:  # nothing to choose; the cost still sizes the engine's chunks
            return
        warmed = isinstance(self._warm, float)
        warm, self._warm = (self._warm if warmed else 0.0), None
        probe = path != self._best
        other = "serial" if path == "parallel" else "parallel"
        # what this chunk cost over the other path's estimate
        excess = (warm + seconds - (iterations + warmed) * self.cost(other)
                  if self.samples[other] else 0.0)
        if not all(self.samples.values()):
            return
        best = "parallel" if PARALLEL_MARGIN * self.cost("parallel") < self.cost("serial") else "serial"
        # after a probe, or a chunk that made its own path lose (a stall), the next probe waits PROBE_BUDGET
        # times that chunk's excess: probing costs at most ~1/PROBE_BUDGET.  Chunks on the path in use
        # that keep it in use never push the probe back (else a stale estimate could stop probing for good).
        if excess > 0 and (probe or best != path):
            self._next_probe_at = max(self._next_probe_at, self._clock() + PROBE_BUDGET * excess)
        if probe or best != self._best:  # a probe (or a flip): reschedule the next one
            if best != self._best:
                self.switches += 1
                self._gap = PROBE_FIRST
            else:
                self._gap = min(2 * self._gap, PROBE_MAX)
            self._best = best
            self._next_probe = self._i + self._gap
        self._memory[self._key] = {"samples": {p: list(v) for p, v in self.samples.items()}, "best": self._best,
                                   "next_probe_at": self._next_probe_at, "gap": self._gap}

    def report(self) -> dict:
        return {"setting": "auto" if len(self.paths) > 1 else self.paths[0], **({"why": self.why} if self.why else {}),
                "chunks": dict(self.chunks),
                "iterations": dict(self.iterations), "switches": self.switches,
                "us_per_iteration": {p: 1e6 * self.cost(p) for p in self.paths if self.samples[p]}}


def check_threading_layer() -> str:
    """Start Numba's thread pool, or raise a one-line error naming the bad setting and the usable layers."""
    import numba
    from numba.np.ufunc import parallel as _p
    requested = os.environ.get("NUMBA_THREADING_LAYER", "default").strip().lower() or "default"
    if requested not in LAYERS:
        raise ConfigError(f"NUMBA_THREADING_LAYER={requested!r} is not a Numba threading layer; "
                          f"choose one of {', '.join(LAYERS)} (or unset it)")
    try:
        _p._launch_threads()
    except (ValueError, RuntimeError, ImportError) as exc:
        usable = available_layers()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"NUMBA_THREADING_LAYER={requested!r} cannot be used here ({first}); "
                          f"layers that load here: {', '.join(usable) or 'none'} (or unset it)") from None
    return numba.threading_layer()


def available_layers() -> list[str]:
    out = []
    for name, mod in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            __import__(f"numba.np.ufunc.{mod}")
            out.append(name)
        except ImportError:
            pass
    return out
