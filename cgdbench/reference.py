"""NumPy references: the one home of the plain implementations the kernels are checked and timed against.

Two kinds, both written the way a researcher would first write them:

* **twins** — slow and obviously right, line by line from the papers; the tests compare every
  jitted kernel with its twin to rounding (``tests/`` imports this module as ``naive``);
* **timing peers** — the vectorised NumPy/SciPy a user would write (:func:`logistic_loss_grad`,
  :func:`rand1_messages`, :func:`numpy_reference`, :func:`compressor_equivalents`); the CI gate,
  the pytest-benchmark suite, asv and the scripts in ``benchmarks/`` time the kernels against
  them in the same process.
"""
import itertools
import math

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

U64 = np.uint64
GOLDEN, M1, M2 = U64(0x9E3779B97F4A7C15), U64(0xBF58476D1CE4E5B9), U64(0x94D049BB133111EB)


def mix64(z):
    with np.errstate(over="ignore"):
        z = U64(z)
        z = (z ^ (z >> U64(30))) * M1
        z = (z ^ (z >> U64(27))) * M2
        return z ^ (z >> U64(31))


def stream_key(seed, client, iteration):
    with np.errstate(over="ignore"):
        h = mix64(U64(seed) + GOLDEN)
        h = mix64(h ^ (U64(client) * GOLDEN + M1))
        return mix64(h ^ (U64(iteration) * M2 + GOLDEN))


def uniform(key, draw):
    with np.errstate(over="ignore"):
        z = mix64(U64(key) + (U64(draw) + U64(1)) * GOLDEN)
    return float(z >> U64(11)) * 2.0**-53


# --- logistic regression ---------------------------------------------------
def logreg_client(A, b, lam, x):
    """f_i and ∇f_i from dense-free scipy ops, with the plain formulas."""
    z = b * (A @ x)
    loss = np.mean(np.logaddexp(0.0, -z))
    sig = expit(-z)                        # σ(-z)
    g = A.T @ (-b * sig) / A.shape[0]
    reg = lam * np.sum(x**2 / (1 + x**2))
    greg = lam * 2 * x / (1 + x**2) ** 2
    return loss + reg, g + greg


def least_squares_client(A, b, lam, x):
    """Ridge least squares f_i = ‖A x − b‖²/(2m) + (λ/2)‖x‖² and its gradient."""
    r = A @ x - b
    return 0.5 * r @ r / A.shape[0] + 0.5 * lam * x @ x, A.T @ r / A.shape[0] + lam * x


def client_oracle(problem):
    return least_squares_client if problem.name == "least-squares" else logreg_client


def client_blocks(problem):
    A = sp.csr_matrix((problem.values, problem.indices, problem.indptr), shape=(problem.m, problem.d))
    ptr = problem.client_ptr
    return [(A[ptr[i]:ptr[i + 1]], problem.b[ptr[i]:ptr[i + 1]])
            for i in range(problem.n)]


def objective(problem, x):
    """f and ∇f of a CSR-data problem (logistic or least squares) as the mean over clients."""
    oracle = client_oracle(problem)
    parts = [oracle(A, b, problem.lam, x) for A, b in client_blocks(problem)]
    return np.mean([p[0] for p in parts]), np.mean([p[1] for p in parts], axis=0)


def smoothness(problem):
    Ls = []
    for A, _ in client_blocks(problem):
        Ad = A.toarray()
        if problem.name == "least-squares":  # the Hessian
            Ls.append(Ad.T @ Ad / Ad.shape[0] + problem.lam * np.eye(problem.d))
        else:
            Ls.append(Ad.T @ Ad / (4 * Ad.shape[0]) + 2 * problem.lam * np.eye(problem.d))
    return np.mean(Ls, axis=0)


# --- sketches: exact distributions for small d ------------------------------
def enumerate_sketch(sk):
    """All outcomes ``(probability, diagonal s)`` of a sketch (small d only)."""
    d, ptr = sk.d, sk.block_ptr
    name = sk.name
    if name == "identity":
        return [(1.0, np.ones(d))]
    if name == "rand-k":
        subsets = list(itertools.combinations(range(d), sk.k))
        out = []
        for J in subsets:
            s = np.zeros(d)
            s[list(J)] = d / sk.k
            out.append((1.0 / len(subsets), s))
        return out
    if name == "importance-rand-1":
        out = []
        for j in range(d):
            s = np.zeros(d)
            s[j] = 1.0 / sk.p[j]
            out.append((sk.p[j], s))
        return out
    blocks = list(zip(ptr[:-1], ptr[1:]))
    if name == "block-rand-k":
        per_block = []
        for (lo, hi), k in zip(blocks, sk.ks):
            subs = list(itertools.combinations(range(lo, hi), k))
            per_block.append([(1.0 / len(subs), J, (hi - lo) / k) for J in subs])
        out = []
        for combo in itertools.product(*per_block):
            s = np.zeros(d)
            prob = 1.0
            for pr, J, sc in combo:
                prob *= pr
                s[list(J)] = sc
            out.append((prob, s))
        return out
    if name == "bern-q":
        out = []
        for eta in itertools.product([0, 1], repeat=len(blocks)):
            s = np.zeros(d)
            prob = 1.0
            for (lo, hi), q, e in zip(blocks, sk.qs, eta):
                prob *= q if e else 1 - q
                if e:
                    s[lo:hi] = 1.0 / q
            out.append((prob, s))
        return out
    raise ValueError(name)


def exact_moments(sk, M):
    """E[S] and E[S M S] by enumeration."""
    ES = np.zeros((sk.d, sk.d))
    ESMS = np.zeros((sk.d, sk.d))
    for prob, s in enumerate_sketch(sk):
        S = np.diag(s)
        ES += prob * S
        ESMS += prob * S @ M @ S
    return ES, ESMS


# --- the algorithms, written the way a researcher would first write them ----
def det_cgd(problem, sketch, D, family, K, seed, x0):
    """Python loop over iterations and clients; returns per-iteration metrics and x_K.

    Uses the dense matrices S_i and D; sketches come from ``sketch.sample`` (the
    sampling kernel is tested on its own against :func:`enumerate_sketch`).
    """
    Dd = D.dense()
    d = problem.d
    clients = client_blocks(problem)
    oracle = client_oracle(problem)
    det_root = math.exp(np.linalg.slogdet(Dd)[1] / d)
    x = x0.copy()
    rows = {"loss": [], "gns": [], "gnsD": [], "nnz": []}
    for k in range(K + 1):
        parts = [oracle(A, b, problem.lam, x) for A, b in clients]
        grad = np.mean([p[1] for p in parts], axis=0)
        rows["loss"].append(np.mean([p[0] for p in parts]))
        rows["gns"].append(grad @ grad)
        rows["gnsD"].append(grad @ Dd @ grad / det_root)
        if k == K:
            break
        msgs, nnz = [], 0
        for i, (_, g_i) in enumerate(parts):
            idx, scale = sketch.sample(seed, i, k)
            S = np.zeros((d, d))
            S[idx, idx] = scale
            nnz += idx.size
            msgs.append(S @ g_i if family == "det-cgd1" else S @ Dd @ g_i)
        rows["nnz"].append(nnz)
        agg = np.mean(msgs, axis=0)
        x = x - (Dd @ agg if family == "det-cgd1" else agg)
    return {k: np.array(v) for k, v in rows.items()}, x


# --- vector compressors (saddle paper) ------------------------------------
def u32_pair(key, i):
    """The 32-bit uniform the kernels use for coordinate i (two per 64-bit draw)."""
    with np.errstate(over="ignore"):
        z = mix64(U64(key) + (U64(i >> 1) + U64(1)) * GOLDEN)
    return int(z >> U64(32)) if i & 1 else int(z & U64(0xFFFFFFFF))


def top_k(v, k):
    """k largest |v_j|, ties to the smaller index, by a full stable sort."""
    order = np.lexsort((np.arange(v.size), -np.abs(v)))
    J = np.sort(order[:k])
    out = np.zeros_like(v)
    out[J] = v[J]
    return out


def scaled_sign(v):
    return np.abs(v).sum() / v.size * np.where(v < 0, -1.0, 1.0)


def qsgd(v, s, key):
    """Level ⌊a + u/2³²⌋ for a = |x| s/‖x‖: up with probability frac(a).

    u/2³² is exact, so is the sum's floor up to one rounding.
    """
    norm = np.linalg.norm(v)
    if norm == 0:
        return np.zeros_like(v)
    f = s / norm
    out = np.empty_like(v)
    for i, x in enumerate(v):
        lev = math.floor(abs(x) * f + u32_pair(key, i) / 2.0**32)
        out[i] = math.copysign(lev, x) if lev else 0.0
    return out * norm / s


def natural(v, key):
    """Round |x| = m 2^e (m in [1, 2)) to 2^e or 2^(e+1), up when u/2³² >= 1 - (m - 1) (probability m - 1, to 2⁻³²)."""
    out = np.zeros_like(v)
    for i, x in enumerate(v):
        if x == 0 or abs(x) < np.finfo(float).tiny:
            continue
        m, e = math.frexp(abs(x))           # |x| = m 2^e, m in [0.5, 1)
        lo = 2.0 ** (e - 1)
        frac_bits = int(np.float64(abs(x)).view(np.uint64)) & ((1 << 52) - 1)
        up = frac_bits + (u32_pair(key, i) << 20) >= 1 << 52
        out[i] = math.copysign(lo * (2.0 if up else 1.0), x)
    return out


# --- Algorithm 1 of the saddle paper ---------------------------------------
def ef_sgd(problem, comp, x0, iters, seed, lr, batch, noise=0.0, use_ef=True, use_reset=False, reset_iters=100,
           escape_radius=math.inf, noise_decay_at=math.inf, noise_factor=1.0):
    """Algorithm 1 line by line; returns (x_K, losses f(x_t) for t=0..K, number of resets).

    The noise schedule: r until iteration ``noise_decay_at``, r·``noise_factor`` from there on.

    Minibatch rows and the noise come from the same streams as the engine
    (``RandK(m_i, B).sample`` is Floyd's algorithm on the worker's rows), so the
    two must agree to rounding.
    """
    from cgdbench.algorithms.ef_sgd import gaussian_vector
    from cgdbench.compressors import RandK
    W, d = problem.n, problem.d
    x = x0.copy()
    e = np.zeros((W, d))
    x_anchor, f_anchor, t_anchor = x.copy(), problem.f(x), 0
    resets, losses = 0, []
    for t in range(iters + 1):
        if use_reset and t > 0:
            x_tilde = x - lr * e.mean(axis=0)
            if t - t_anchor > reset_iters or np.linalg.norm(x_anchor - x_tilde) > escape_radius:
                f_tilde = problem.f(x_tilde)
                if f_tilde < f_anchor:
                    x, f_anchor = x_tilde, f_tilde
                else:
                    x = x_anchor.copy()
                x_anchor, t_anchor, resets = x.copy(), t, resets + 1
                e[:] = 0.0
        losses.append(problem.f(x))
        if t == iters:
            break
        xi = np.zeros(d)
        r_t = noise if t < noise_decay_at else noise * noise_factor
        if r_t > 0:
            gaussian_vector(np.uint64(seed), t, r_t, xi)
        g = np.zeros(d)
        for i in range(W):
            lo, hi = problem.worker_ptr[i], problem.worker_ptr[i + 1]
            rows = lo + RandK(int(hi - lo), np.array([0, hi - lo]), batch).sample(seed, i, t)[0]
            v = problem.batch_f_and_grad(x, rows)[1] + xi + (e[i] if use_ef else 0.0)
            c = comp(v, seed=seed, iteration=t)
            if use_ef:
                e[i] = v - c
            g += c
        x = x - lr * g / W
    return x, np.array(losses), resets


# --- the baselines: EF21, DIANA, MARINA, det-MARINA --------------------------
SHARED_COIN = 2**62 + 3


def vector_compress(comp, v, seed, client, k):
    """C(v) with client ``client``'s stream at iteration k, from the plain definitions.

    rand-k's coordinates come from ``RandK(d, k).sample`` (the same Floyd draw, tested
    on its own against :func:`enumerate_sketch`).
    """
    from cgdbench.compressors import RandK
    key = stream_key(seed, client, k)
    if comp.name == "identity":
        return comp.scale * v
    if comp.name in ("rand-k", "rand-k-unscaled"):
        J = RandK(comp.d, np.array([0, comp.d]), comp.k).sample(seed, client, k)[0]
        out = np.zeros_like(v)
        out[J] = comp.scale * v[J]
        return out
    if comp.name == "top-k":
        return comp.scale * top_k(v, comp.k)
    if comp.name == "sign":
        return comp.scale * scaled_sign(v)
    if comp.name == "qsgd":
        return comp.scale * qsgd(v, comp.s, key)
    if comp.name == "natural":
        return comp.scale * natural(v, key)
    raise ValueError(comp.name)


def _metrics(rows, parts, D=None, det_root=1.0):
    grad = np.mean([p[1] for p in parts], axis=0)
    rows["loss"].append(np.mean([p[0] for p in parts]))
    rows["gns"].append(grad @ grad)
    rows["gnsD"].append(grad @ (D @ grad if D is not None else grad) / det_root)


def ef21(problem, comp, gamma, K, seed, x0, init="gradient", value_bits=32):
    """EF21 (Algorithm 1 of Richtárik et al. 2021) with the server's recursion g ← g + mean c_i."""
    oracle, clients = client_oracle(problem), client_blocks(problem)
    n, d = problem.n, problem.d
    G = np.zeros((n, d))
    x, g, bits = x0.copy(), None, 0
    rows = {"loss": [], "gns": [], "gnsD": [], "bits_up": []}
    for k in range(K + 1):
        parts = [oracle(A, b, problem.lam, x) for A, b in clients]
        _metrics(rows, parts)
        rows["bits_up"].append(bits)
        if k == K:
            break
        if k == 0 and init == "gradient":
            G = np.array([p[1] for p in parts])
            g = G.mean(axis=0)
            bits += n * d * value_bits
        else:
            c = np.array([vector_compress(comp, parts[i][1] - G[i], seed, i, k) for i in range(n)])
            G = G + c
            g = c.mean(axis=0) if g is None else g + c.mean(axis=0)
            bits += n * comp.bits_up(value_bits)
        x = x - gamma * g
    return {k: np.array(v) for k, v in rows.items()}, x


def diana(problem, comp, gamma, alpha, K, seed, x0, value_bits=32):
    """DIANA: q_i = Q(∇f_i − h_i), g = h + mean q_i, h_i += α q_i, h += α mean q_i."""
    oracle, clients = client_oracle(problem), client_blocks(problem)
    n, d = problem.n, problem.d
    H, h, x, bits = np.zeros((n, d)), np.zeros(d), x0.copy(), 0
    rows = {"loss": [], "gns": [], "gnsD": [], "bits_up": []}
    for k in range(K + 1):
        parts = [oracle(A, b, problem.lam, x) for A, b in clients]
        _metrics(rows, parts)
        rows["bits_up"].append(bits)
        if k == K:
            break
        q = np.array([vector_compress(comp, parts[i][1] - H[i], seed, i, k) for i in range(n)])
        g = h + q.mean(axis=0)
        H = H + alpha * q
        h = h + alpha * q.mean(axis=0)
        bits += n * comp.bits_up(value_bits)
        x = x - gamma * g
    return {k: np.array(v) for k, v in rows.items()}, x


def marina(problem, comp, gamma, p, K, seed, x0, value_bits=32, sketch=None, D=None):
    """MARINA (and det-MARINA: ``sketch`` S_i and matrix ``D``, x ← x − D g).

    The coin of round k is ``uniform(stream_key(seed, SHARED_COIN, k), 0) < p`` (round 0 is full).
    """
    oracle, clients = client_oracle(problem), client_blocks(problem)
    n, d = problem.n, problem.d
    Dd = D.dense() if D is not None else gamma * np.eye(d)
    det_root = math.exp(np.linalg.slogdet(Dd)[1] / d)
    x, g, prev, bits = x0.copy(), None, None, 0
    rows = {"loss": [], "gns": [], "gnsD": [], "bits_up": []}
    for k in range(K + 1):
        parts = [oracle(A, b, problem.lam, x) for A, b in clients]
        _metrics(rows, parts, Dd, det_root)
        rows["bits_up"].append(bits)
        if k == K:
            break
        grads = np.array([pt[1] for pt in parts])
        if k == 0 or uniform(stream_key(seed, SHARED_COIN, k), 0) < p:
            g = grads.mean(axis=0)
            bits += n * d * value_bits
        elif sketch is None:
            g = g + np.mean([vector_compress(comp, grads[i] - prev[i], seed, i, k) for i in range(n)], axis=0)
            bits += n * comp.bits_up(value_bits)
        else:
            msgs = []
            for i in range(n):
                idx, scale = sketch.sample(seed, i, k)
                s = np.zeros(d)
                s[idx] = scale
                msgs.append(s * (grads[i] - prev[i]))
                bits += value_bits * idx.size + sketch.index_bits("explicit")
            g = g + np.mean(msgs, axis=0)
        prev = grads
        x = x - Dd @ g
    return {k: np.array(v) for k, v in rows.items()}, x


# --- timing peers --------------------------------------------------------------------
def logistic_loss_grad(A, b, x):
    """Logistic loss and gradient over all rows of the CSR matrix ``A`` (what the gate times the kernel against)."""
    z = b * (A @ x)
    return np.mean(np.logaddexp(0, -z)), A.T @ (-b * expit(-z)) / A.shape[0]


def rand1_messages(g, n_msg, seed, out):
    """``out`` = the sum of ``n_msg`` rand-1 messages of ``g`` (``out`` reused: no page faults in the timing)."""
    d = g.size
    idx = np.random.default_rng(seed).integers(d, size=n_msg)
    out[:] = 0.0
    np.add.at(out, idx, d * g[idx])


def numpy_reference(problem, D_diag, det_root, K, seed):
    """Algorithm 1 with rand-1, one Python iteration per step and per client."""
    A = sp.csr_matrix((problem.values, problem.indices, problem.indptr), shape=(problem.m, problem.d))
    ptr = problem.client_ptr
    parts = [(A[ptr[i]:ptr[i + 1]], problem.b[ptr[i]:ptr[i + 1]])
             for i in range(problem.n)]
    lam, d, n = problem.lam, problem.d, problem.n
    rng = np.random.default_rng(seed)
    x = problem.x0()
    loss, gns, gnsD, bits = [], [], [], [0]
    for k in range(K + 1):
        grads, f = [], 0.0
        for Ai, bi in parts:
            z = bi * (Ai @ x)
            f += np.mean(np.logaddexp(0, -z))
            grads.append(Ai.T @ (-bi / (1 + np.exp(z))) / Ai.shape[0])
        reg_g = 2 * lam * x / (1 + x**2) ** 2
        g = np.mean(grads, axis=0) + reg_g
        loss.append(f / n + lam * np.sum(x**2 / (1 + x**2)))
        gns.append(g @ g)
        gnsD.append(g @ (D_diag * g) / det_root)
        if k == K:
            break
        agg = np.zeros(d)
        for gi in grads:
            j = rng.integers(d)
            agg[j] += d * (gi[j] + reg_g[j])
        x = x - D_diag * agg / n
        bits.append(bits[-1] + n * (32 + int(np.ceil(np.log2(d)))))
    return x, np.array(loss)


def compressor_equivalents(d, k, rng):
    """NumPy versions producing the same kind of message (values + indices, bits, levels, codes)."""
    def top_k(v):
        idx = np.argpartition(np.abs(v), d - k)[d - k:]
        return idx, v[idx]

    def rand_k(v):
        idx = rng.choice(d, k, replace=False)
        return idx, v[idx]

    def sign(v):
        return np.abs(v).sum() / d, np.packbits(v < 0)

    def qsgd(v, s=4):
        norm = np.linalg.norm(v)
        a = np.abs(v) * (s / norm)
        lv = np.floor(a)
        lv += rng.random(d) < (a - lv)
        return norm / s, np.copysign(lv, v).astype(np.int32)

    def natural(v):
        m, e = np.frexp(np.abs(v))
        up = rng.random(d) < (2 * m - 1)
        return np.where(v < 0, -1, 1).astype(np.int32) * (e + up).astype(np.int32)

    def sketch_top_k(v, r=5, c=None):
        c = c or max(10 * k, 64)
        h = rng.integers(0, c, (r, d))
        sg = rng.choice(np.array([-1.0, 1.0]), (r, d))
        table = np.stack([np.bincount(h[j], weights=sg[j] * v, minlength=c) for j in range(r)])
        est = np.median(sg * table[np.arange(r)[:, None], h], axis=0)
        cand = np.argpartition(np.abs(est), d - 2 * k)[d - 2 * k:]
        keep = cand[np.argpartition(np.abs(v[cand]), k)[k:]]
        return keep, v[keep]

    return {"top-k": top_k, "rand-k": rand_k, "sign": sign, "qsgd:4": qsgd, "natural": natural,
            "sketch-top-k": sketch_top_k}


# --- the saddle paper's convolutional autoencoder ---
# Batched over N, PyTorch layouts: activations (N, c, h, w); Conv2d weights (cout, cin, k, k), ConvTranspose2d
# weights (cin, cout, k, k).  A conv is a sum over kernel offsets of strided slices of the zero-padded input;
# its transpose scatters each offset's contribution into strided slices of a zero output; the backward passes
# are the adjoint relations (the input gradient of a conv is a transposed conv with the same weights, and
# vice versa).  Also the timing peer of cgdbench.problems.conv's kernels.
def conv_ae_layers(arch):
    """Plain ``[(kind, cin, cout, k, s, p, (op_h, op_w), relu)]`` (kind ``"conv"``/``"convT"``) of an ``Arch``."""
    return [("conv" if ly.kind == 0 else "convT", ly.cin, ly.cout, ly.k, ly.s, ly.p, (ly.op_h, ly.op_w), ly.relu)
            for ly in arch.layers]


def _conv_patches(xp, k, s, ho, wo):
    """The strided slice of the padded input seen by each kernel offset: ``{(kh, kw): (N, c, ho, wo)}``."""
    return {(kh, kw): xp[:, :, kh:kh + s * (ho - 1) + 1:s, kw:kw + s * (wo - 1) + 1:s]
            for kh in range(k) for kw in range(k)}


def conv2d_ref(inp, W, b, s, p):
    """PyTorch's Conv2d: ``out[n, o, i, j] = b[o] + Σ_{c,kh,kw} W[o, c, kh, kw]·inp_pad[n, c, i·s + kh, j·s + kw]``."""
    N, cin, h, w = inp.shape
    cout, _, k, _ = W.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    xp = np.pad(inp, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((N, ho, wo, cout))
    for (kh, kw), patch in _conv_patches(xp, k, s, ho, wo).items():
        out += np.tensordot(patch, W[:, :, kh, kw], axes=([1], [1]))
    return out.transpose(0, 3, 1, 2) + b[None, :, None, None]


def conv_transpose2d_ref(inp, W, b, s, p, op=(0, 0)):
    """PyTorch's ConvTranspose2d, the adjoint of conv2d: input pixel (i, j) adds ``inp[n, c, i, j] · W[c, o]`` into
    the output window at (i·s − p, j·s − p); output ``(h−1)·s − 2p + k + op`` high."""
    N, cin, h, w = inp.shape
    _, cout, k, _ = W.shape
    op_h, op_w = (op, op) if np.isscalar(op) else op
    ho, wo = (h - 1) * s - 2 * p + k + op_h, (w - 1) * s - 2 * p + k + op_w
    full = np.zeros((N, cout, (h - 1) * s + k + op_h, (w - 1) * s + k + op_w))
    contrib = np.tensordot(inp, W, axes=([1], [0]))            # (N, h, w, cout, k, k)
    for kh in range(k):
        for kw in range(k):
            window = full[:, :, kh:kh + s * (h - 1) + 1:s, kw:kw + s * (w - 1) + 1:s]       # a view
            window += contrib[..., kh, kw].transpose(0, 3, 1, 2)
    return full[:, :, p:p + ho, p:p + wo] + b[None, :, None, None]


def conv2d_weight_grad_ref(inp, dout, k, s, p):
    """∂L/∂W of conv2d: ``dW[o, c, kh, kw] = Σ_{n,i,j} dout[n, o, i, j] · inp_pad[n, c, i·s + kh, j·s + kw]``."""
    ho, wo = dout.shape[2:]
    xp = np.pad(inp, ((0, 0), (0, 0), (p, p), (p, p)))
    dW = np.zeros((dout.shape[1], inp.shape[1], k, k))
    for (kh, kw), patch in _conv_patches(xp, k, s, ho, wo).items():
        dW[:, :, kh, kw] = np.tensordot(dout, patch, axes=([0, 2, 3], [0, 2, 3]))
    return dW


def conv2d_backward_ref(inp, W, dout, s, p):
    """(∂L/∂inp, ∂L/∂W, ∂L/∂b) of conv2d given ∂L/∂out; ∂L/∂inp is the transposed conv of ``dout``."""
    h, w = inp.shape[2:]
    k = W.shape[2]
    ho, wo = dout.shape[2:]
    op = (h - ((ho - 1) * s - 2 * p + k), w - ((wo - 1) * s - 2 * p + k))
    din = conv_transpose2d_ref(dout, W, np.zeros(W.shape[1]), s, p, op)
    return din, conv2d_weight_grad_ref(inp, dout, k, s, p), dout.sum(axis=(0, 2, 3))


def conv_transpose2d_backward_ref(inp, W, dout, s, p):
    """(∂L/∂inp, ∂L/∂W, ∂L/∂b) of conv_transpose2d: ∂L/∂inp is the conv of ``dout`` with the same weights, and
    ∂L/∂W that conv's weight gradient with the roles of input and output swapped."""
    k = W.shape[2]
    din = conv2d_ref(dout, W, np.zeros(W.shape[0]), s, p)
    dW = conv2d_weight_grad_ref(dout, inp, k, s, p)         # (cin, cout, k, k): already the convT layout
    return din, dW, dout.sum(axis=(0, 2, 3))


def _conv_ae_params(layers, x):
    params, off = [], 0
    for kind, cin, cout, k, s, p, op, relu in layers:
        shape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
        size = int(np.prod(shape))
        params.append((x[off:off + size].reshape(shape), x[off + size:off + size + cout]))
        off += size + cout
    assert off == x.size, (off, x.size)
    return params


def conv_ae_loss_grad_ref(layers, x, Y, shape=None):
    """Mean over the N images of MSE(g(y), y) and its gradient w.r.t. the flat parameters ``x``.

    ``layers``: :func:`conv_ae_layers` tuples or an ``Arch``; ``Y``: (N, h, w), (N, 1, h, w), or (N, h·w) with
    ``shape = (h, w)`` (taken from an ``Arch`` when given one).
    """
    if not isinstance(layers, (list, tuple)):
        shape = shape or (layers.height, layers.width)
        layers = conv_ae_layers(layers)
    Y = np.asarray(Y, dtype=np.float64)
    N = Y.shape[0]
    Y = Y.reshape((N, 1) + (tuple(shape) if Y.ndim == 2 else Y.shape[-2:]))
    params = _conv_ae_params(layers, x)
    acts = [Y]
    for (kind, cin, cout, k, s, p, op, relu), (W, b) in zip(layers, params):
        z = conv2d_ref(acts[-1], W, b, s, p) if kind == "conv" else conv_transpose2d_ref(acts[-1], W, b, s, p, op)
        acts.append(np.maximum(z, 0.0) if relu else z)
    r = acts[-1] - Y
    loss = np.mean(r ** 2)
    grads = []
    delta = 2.0 * r / r.size
    for l in range(len(layers) - 1, -1, -1):
        kind, cin, cout, k, s, p, op, relu = layers[l]
        W, b = params[l]
        if relu:
            delta = delta * (acts[l + 1] > 0)
        if l == 0 and kind == "conv":             # no gradient for the images themselves
            dW, db = conv2d_weight_grad_ref(acts[0], delta, k, s, p), delta.sum(axis=(0, 2, 3))
        else:
            bwd = conv2d_backward_ref if kind == "conv" else conv_transpose2d_backward_ref
            delta, dW, db = bwd(acts[l], W, delta, s, p)
        grads[:0] = [dW.ravel(), db]
    return loss, np.concatenate(grads)


# --- the MLP classifier (saddle paper, Figure 1) -----------------------------
def mlp_classifier_loss_grad_ref(widths, x, X, y, wd=0.0):
    """Mean softmax cross-entropy of a tanh MLP (linear logits) and its gradient, by plain backpropagation.

    ``widths = (p, h₁, ..., C)``; ``x`` holds, per layer, W (n_out × n_in, row-major) then b.
    """
    Ws, bs, po = [], [], 0
    for nin, nout in zip(widths[:-1], widths[1:]):
        Ws.append(x[po:po + nout * nin].reshape(nout, nin))
        bs.append(x[po + nout * nin:po + nout * nin + nout])
        po += nout * nin + nout
    acts = [X]
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = acts[-1] @ W.T + b
        acts.append(np.tanh(z) if i < len(Ws) - 1 else z)
    z = acts[-1]
    lse = np.log(np.sum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)) + z.max(axis=1)
    m = X.shape[0]
    loss = np.mean(lse - z[np.arange(m), y]) + 0.5 * wd * np.sum(x * x)
    P = np.exp(z - lse[:, None])
    delta = P.copy()
    delta[np.arange(m), y] -= 1.0
    delta /= m
    grads = []
    for i in range(len(Ws) - 1, -1, -1):
        grads.append((delta.T @ acts[i], delta.sum(axis=0)))
        if i > 0:
            delta = (delta @ Ws[i]) * (1.0 - acts[i] ** 2)
    g = np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in reversed(grads)]) + wd * x
    return loss, g


def mlp_predict_ref(widths, x, X):
    """Class of each row of ``X``: the largest logit of the same network (first index on ties)."""
    a, po = X, 0
    for i, (nin, nout) in enumerate(zip(widths[:-1], widths[1:])):
        W = x[po:po + nout * nin].reshape(nout, nin)
        b = x[po + nout * nin:po + nout * nin + nout]
        a = a @ W.T + b
        a = np.tanh(a) if i < len(widths) - 2 else a
        po += nout * nin + nout
    return np.argmax(a, axis=1)
