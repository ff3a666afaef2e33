"""Plain NumPy implementations, written the way a researcher would first write them.

Benchmarks and the CI gate time the jitted kernels against these in the same process.
"""
import numpy as np
import scipy.sparse as sp


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
