"""cgdbench against its peers, side by side in one process: the floor kernel, a JAX implementation
(when JAX is installed; float64 and float32) and the engine, on det-CGD1, rand-1, diag-inv.

    python benchmarks/peers.py [--dataset a1a] [--clients 100] [--log-every 1] [--iters 2000] [--repeats 5]
                               [--precision float64,float32] [--no-jax] [--json]

Each figure is µs per iteration **by the difference of two run lengths** (K and 2K iterations,
the best of ``--repeats`` each, all implementations interleaved per round), so compilation,
start-up and the final metrics cost nothing.  Threads: ``NUMBA_NUM_THREADS`` for the floor and
the engine; JAX uses XLA's own CPU threads (``XLA_FLAGS`` to change them).

* **floor**: z = A x per row, one exp per row, g = Aᵀ s, ``prange`` over the engine's fixed
  client ranges, ranges reduced in order, x ← x − γ g (no metrics, no sketch): what any
  first-order method on this data does per iteration (``threading_policy.py`` has the same).
* **floor-float32**: the same kernel with float32 data, iterate and arithmetic: the most a
  float32 engine could gain (the engine itself is float64 only).
* **jax**: written the way a JAX user would write det-CGD1: clients' rows as dense blocks padded
  to the largest client, the client gradient ``vmap``-ed over clients, the rand-1 draw from
  ``jax.random``, the metrics the engine logs (loss, ‖∇f‖², ‖∇f‖²_D/det(D)^{1/d}) every
  iteration, and ``lax.scan`` over iterations inside one ``jit``.  Its D is the engine's
  diag-inv D, so both run the same method (with different random streams).
* **engine**: ``cgdbench.run`` with ``--log-every`` and ``--metrics`` (``every``: the gradient
  metric every iteration, as the JAX peer; ``logged``: on logged iterations only).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def floor_kernel():
    """The floor kernel (also ``threading_policy.py``'s): two CSR passes and one exp per row, ``prange``
    over fixed client ranges, ranges reduced in order, x ← x − γ g.  Generic in the float type: with
    float32 arrays (and γ) every operation is float32 (the literals take x's type)."""
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def floor_iterations(K, x, indptr, indices, values, b, range_ptr, gbuf, gamma):
        n_ranges = range_ptr.shape[0] - 1
        d = x.shape[0]
        zero, one = x.dtype.type(0.0), x.dtype.type(1.0)
        for k in range(K):
            for r in prange(n_ranges):
                g = gbuf[r]
                for t in range(d):
                    g[t] = zero
                for row in range(range_ptr[r], range_ptr[r + 1]):
                    z = zero
                    for p in range(indptr[row], indptr[row + 1]):
                        z += values[p] * x[indices[p]]
                    s = -b[row] / (one + np.exp(b[row] * z))
                    for p in range(indptr[row], indptr[row + 1]):
                        g[indices[p]] += s * values[p]
            for r in range(n_ranges):
                for t in range(d):
                    x[t] -= gamma * gbuf[r, t]
    return floor_iterations


def jax_det_cgd1(problem, D_diag, det_root, x0, dtype):
    """A jitted ``run(K_static)`` of det-CGD1 (rand-1) in JAX, returning (x, metrics per iteration)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dt = jnp.float64 if dtype == "float64" else jnp.float32
    n, d = problem.n, problem.d
    sizes = np.diff(problem.client_ptr)
    m_max = int(sizes.max())
    import scipy.sparse as sp
    A = sp.csr_matrix((problem.values, problem.indices, problem.indptr), shape=(problem.m, d)).toarray()
    blocks = np.zeros((n, m_max, d))
    bb = np.zeros((n, m_max))
    mask = np.zeros((n, m_max))
    for i in range(n):
        r0, r1 = problem.client_ptr[i], problem.client_ptr[i + 1]
        blocks[i, :r1 - r0] = A[r0:r1]
        bb[i, :r1 - r0] = problem.b[r0:r1]
        mask[i, :r1 - r0] = 1.0
    blocks, bb, mask = (jnp.asarray(a, dtype=dt) for a in (blocks, bb, mask))
    inv_m = jnp.asarray(1.0 / sizes, dtype=dt)
    Dd = jnp.asarray(D_diag, dtype=dt)
    lam = float(problem.lam)

    def client(Ai, bi, mi, inv_mi, x):
        t = bi * (Ai @ x)
        loss = jnp.sum(mi * jax.nn.softplus(-t)) * inv_mi
        s = -bi * jax.nn.sigmoid(-t) * mi * inv_mi
        return loss, Ai.T @ s

    def step(x, key):
        key_i = jax.random.fold_in(key, 0)
        losses, grads = jax.vmap(client, in_axes=(0, 0, 0, 0, None))(blocks, bb, mask, inv_m, x)
        sq = x * x
        reg = lam * jnp.sum(sq / (1.0 + sq))
        reg_grad = 2.0 * lam * x / (1.0 + sq) ** 2
        grad = grads.mean(axis=0) + reg_grad
        j = jax.random.randint(key_i, (n,), 0, d)
        msg = jnp.zeros(d, dt).at[j].add(d * (grads[jnp.arange(n), j] + reg_grad[j])) / n
        metrics = jnp.stack([losses.mean() + reg, grad @ grad, grad @ (Dd * grad) / det_root])
        return x - Dd * msg, metrics

    def run(x, K):
        keys = jax.random.split(jax.random.PRNGKey(0), K)
        return lax.scan(step, x, keys)

    run = jax.jit(run, static_argnums=1)
    x0 = jnp.asarray(x0, dtype=dt)

    def call(K):
        x, m = run(x0, K)
        x.block_until_ready()
        return np.asarray(m)
    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="a1a")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--iters", type=int, default=2000, help="K: runs of K and 2K iterations are timed")
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--metrics", default="every", choices=("every", "logged"), help="the engine's --metrics")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="float64,float32", help="JAX precisions (comma list)")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)

    import numba
    from cgdbench import RunConfig, build, run
    from cgdbench.algorithms._common import client_ranges

    K = ns.iters
    cfg = {k: RunConfig(dataset=ns.dataset, clients=ns.clients, algorithm="det-cgd1", compressor="rand-1",
                        stepsize="diag-inv", iters=k, log_every=ns.log_every, metrics=ns.metrics) for k in (K, 2 * K)}
    b = build(cfg[K], data_dir=ns.data_dir)
    built = {K: b, 2 * K: build(cfg[2 * K], data_dir=ns.data_dir)}
    p = b.problem
    fns = {}

    floor = floor_kernel()
    row_ptr = p.client_ptr[client_ranges(p.n)]
    gbuf = np.zeros((row_ptr.size - 1, p.d))

    for prec in ("float64", "float32"):  # the float32 floor: what single precision could gain at best
        dt = np.dtype(prec).type
        fargs = (p.indptr, p.indices, p.values.astype(dt), p.b.astype(dt), row_ptr, gbuf.astype(dt), dt(1e-3))

        def run_floor(k, fargs=fargs, dt=dt):
            x = np.zeros(p.d, dt)
            t = time.perf_counter()
            floor(k, x, *fargs)
            return time.perf_counter() - t
        fns["floor" if prec == "float64" else "floor-float32"] = run_floor

    def run_engine(k):
        return run(cfg[k], built=built[k]).meta["run_seconds"]
    fns["engine"] = run_engine

    jax_note = None
    if not ns.no_jax:
        try:
            import jax  # noqa: F401
        except ImportError:
            jax_note = "JAX not installed (pip install jax): its rows are skipped"
        else:
            diag = np.diag(b.D.dense())
            for prec in ns.precision.split(","):
                call = jax_det_cgd1(p, diag, b.D.det_root(), b.x0, prec)

                def run_jax(k, call=call):
                    t = time.perf_counter()
                    call(k)
                    return time.perf_counter() - t
                fns[f"jax-{prec}"] = run_jax

    for f in fns.values():  # compile every length once
        f(K), f(2 * K)
    best = {name: {K: math.inf, 2 * K: math.inf} for name in fns}
    for _ in range(ns.repeats):
        for name, f in fns.items():
            for k in (K, 2 * K):
                best[name][k] = min(best[name][k], f(k))
    us = {name: (v[2 * K] - v[K]) / K * 1e6 for name, v in best.items()}
    out = {"dataset": ns.dataset, "clients": ns.clients, "log_every": ns.log_every, "metrics": ns.metrics, "K": K,
           "threads": numba.get_num_threads(), "us_per_iteration": us, "note": jax_note}
    if ns.json:
        print(json.dumps(out))
        return
    print(f"{ns.dataset}, {ns.clients} clients, det-CGD1 rand-1 diag-inv, log every {ns.log_every} "
          f"(engine: --metrics {ns.metrics}), "
          f"{numba.get_num_threads()} Numba thread(s); µs/iteration by the difference of {K} and {2 * K} "
          f"iterations, best of {ns.repeats}")
    for name, v in us.items():
        ratio = "" if name == "engine" else f"   {v / us['engine']:.2f}x the engine's time"
        print(f"  {name:14s} {v:9.1f}{ratio}")
    if jax_note:
        print(f"  ({jax_note})")


if __name__ == "__main__":
    from cgdbench.errors import CgdbenchError
    try:
        sys.exit(main())
    except CgdbenchError as exc:  # bad data or options: one line, not a traceback
        sys.exit(f"{sys.argv[0]}: error: {exc}")
