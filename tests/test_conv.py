"""The saddle paper's convolutional autoencoder: layer kernels and the whole kernel against the NumPy
reference (cgdbench.reference) and finite differences; architecture parsing; parameters."""
import numpy as np
import pytest

from cgdbench import reference as naive
from cgdbench.errors import ConfigError
from cgdbench.problems import conv


# --- helpers: run one layer kernel on (N, c, h, w) arrays ----------------------------------
def _nan(n):
    return np.full(n, np.nan)        # temporaries start as NaN: a kernel reading what it did not write shows


def _to_kernel(X):
    return np.ascontiguousarray(np.transpose(X, (1, 0, 2, 3))).ravel()       # (N, c, h, w) -> (c, N, h, w)


def _from_kernel(v, c, n, h, w):
    return v.reshape(c, n, h, w).transpose(1, 0, 2, 3)


def layer_forward(ly, W, b, X):
    nb = X.shape[0]
    geo = ly.geo()
    Wf = np.ascontiguousarray(W).ravel()
    WT = _nan(ly.n_weights)
    conv.transpose_weights(geo, Wf, WT)
    out = _nan(ly.cout * nb * ly.hout * ly.wout)
    t0, t1 = _nan(ly.temp_size(nb)), _nan(ly.temp_size(nb))
    col = _nan(ly.col_size(nb))
    if ly.kind == conv.CONV:
        conv.conv2d_forward(geo, nb, Wf, b, _to_kernel(X), out, col, t1, WT)
    else:
        conv.conv_transpose2d_forward(geo, nb, Wf, b, _to_kernel(X), out, t0, t1)
    return _from_kernel(out, ly.cout, nb, ly.hout, ly.wout), col


def layer_backward(ly, W, X, dZ, gW0, gb0, need_din=True):
    """(din, gW0 + dW, gb0 + db) from the layer's backward kernel (gW in PyTorch's shape)."""
    nb = X.shape[0]
    geo = ly.geo()
    Wf = np.ascontiguousarray(W).ravel()
    WT = _nan(ly.n_weights)
    conv.transpose_weights(geo, Wf, WT)
    _, col = layer_forward(ly, W, np.zeros(ly.cout), X)
    gW = np.ascontiguousarray(gW0).ravel().copy()
    gb = gb0.copy()
    din = _nan(ly.cin * nb * ly.hin * ly.win)
    t0, t1 = _nan(ly.temp_size(nb)), _nan(ly.temp_size(nb))
    if ly.kind == conv.CONV:
        conv.conv2d_backward(geo, nb, Wf, col, _to_kernel(dZ), gW, gb, din, t0, t1, need_din)
    else:
        conv.conv_transpose2d_backward(geo, nb, Wf, _to_kernel(X), _to_kernel(dZ), gW, gb, din, t0, t1, WT, need_din)
    return _from_kernel(din, ly.cin, nb, ly.hin, ly.win), gW.reshape(ly.weight_shape), gb


def ref_forward(ly, W, b, X):
    if ly.kind == conv.CONV:
        return naive.conv2d_ref(X, W, b, ly.s, ly.p)
    return naive.conv_transpose2d_ref(X, W, b, ly.s, ly.p, (ly.op_h, ly.op_w))


def ref_backward(ly, W, X, dZ):
    bwd = naive.conv2d_backward_ref if ly.kind == conv.CONV else naive.conv_transpose2d_backward_ref
    return bwd(X, W, dZ, ly.s, ly.p)


# (kind, cin, cout, k, s, p, hin, win, op)
LAYERS = [
    (conv.CONV, 1, 4, 3, 2, 1, 9, 7, 0),      # stride 2, padding 1, odd non-square
    (conv.CONV, 3, 5, 3, 1, 1, 6, 5, 0),      # stride 1, padding 1
    (conv.CONV, 2, 3, 2, 2, 0, 7, 8, 0),      # even kernel, stride 2, no padding (drops a row)
    (conv.CONV, 4, 6, 5, 1, 0, 5, 5, 0),      # to 1×1 (the bottleneck's shape)
    (conv.CONV, 3, 2, 1, 1, 0, 4, 3, 0),      # 1×1 kernel
    (conv.CONV, 2, 3, 3, 3, 2, 8, 10, 0),     # stride 3, padding 2
    (conv.CONVT, 3, 2, 3, 2, 1, 4, 5, (1, 0)),    # output_padding on rows only
    (conv.CONVT, 4, 2, 5, 1, 0, 1, 1, 0),         # from 1×1
    (conv.CONVT, 2, 3, 3, 2, 1, 3, 4, (1, 1)),
    (conv.CONVT, 2, 2, 2, 2, 0, 3, 3, 0),
    (conv.CONVT, 3, 1, 3, 1, 1, 5, 4, 0),         # stride 1
    (conv.CONVT, 2, 3, 3, 3, 2, 3, 2, (2, 1)),    # stride 3, output_padding 2 and 1
]


def _layer_case(spec, small, seed=0, nb=3):
    kind, cin, cout, k, s, p, h, w, op = spec
    ly = conv.make_layer(kind, cin, cout, k, s, p, h, w, op=op, small=small)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(ly.weight_shape)
    b = rng.standard_normal(cout)
    X = rng.standard_normal((nb, cin, h, w))
    return ly, W, b, X, rng


@pytest.mark.parametrize("spec", LAYERS)
def test_layer_forward_matches_reference(spec):
    outs = []
    for small in (False, True):
        ly, W, b, X, _ = _layer_case(spec, small)
        out, _ = layer_forward(ly, W, b, X)
        ref = ref_forward(ly, W, b, X)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])   # both paths: the same sums in the same order


@pytest.mark.parametrize("spec", LAYERS)
def test_layer_backward_matches_reference(spec):
    res = []
    for small in (False, True):
        ly, W, b, X, rng = _layer_case(spec, small)
        dZ = rng.standard_normal((X.shape[0], ly.cout, ly.hout, ly.wout))
        gW0, gb0 = rng.standard_normal(ly.weight_shape), rng.standard_normal(ly.cout)
        din, gW, gb = layer_backward(ly, W, X, dZ, gW0, gb0)
        rdin, rdW, rdb = ref_backward(ly, W, X, dZ)
        np.testing.assert_allclose(din, rdin, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gW - gW0, rdW, rtol=1e-10, atol=1e-11)     # added to what was there
        np.testing.assert_allclose(gb - gb0, rdb, rtol=1e-10, atol=1e-11)
        res.append((din, gW, gb))
    for a, c in zip(*res):
        np.testing.assert_array_equal(a, c)


def test_first_layer_skips_dinput():
    ly, W, b, X, rng = _layer_case(LAYERS[0], False)
    dZ = rng.standard_normal((X.shape[0], ly.cout, ly.hout, ly.wout))
    din, gW, gb = layer_backward(ly, W, X, dZ, np.zeros(ly.weight_shape), np.zeros(ly.cout), need_din=False)
    assert np.isnan(din).all()                         # not written
    np.testing.assert_allclose(gW, ref_backward(ly, W, X, dZ)[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", [LAYERS[0], LAYERS[3], LAYERS[6], LAYERS[7]])
def test_layer_backward_finite_differences(spec):
    """L = Σ out·R; every entry of ∂L/∂W, ∂L/∂b and ∂L/∂inp against central differences (L is linear in each)."""
    ly, W, b, X, rng = _layer_case(spec, None, seed=1, nb=2)
    R = rng.standard_normal((2, ly.cout, ly.hout, ly.wout))

    def L(W_, b_, X_):
        return float(np.sum(layer_forward(ly, W_, b_, X_)[0] * R))

    din, gW, gb = layer_backward(ly, W, X, R, np.zeros(ly.weight_shape), np.zeros(ly.cout))
    e = 1e-3
    for arr, grad, which in ((W, gW, 0), (b, gb, 1), (X, din, 2)):
        fd = np.zeros(arr.size)
        for t in range(arr.size):
            args = [W, b, X]
            for sgn, store in ((1, 0), (-1, 1)):
                a = arr.copy().ravel()
                a[t] += sgn * e
                args[which] = a.reshape(arr.shape)
                fd[t] += sgn * L(*args)
        np.testing.assert_allclose(grad.ravel(), fd / (2 * e), rtol=1e-7, atol=1e-8)


# --- the architecture ----------------------------------------------------------------------
def test_default_arch_on_mnist():
    arch = conv.parse_arch(None, 28, 28)
    assert arch.d == 160 + 4640 + 100416 + 100384 + 4624 + 145 == 210369
    assert list(arch.block_ptr) == [0, 160, 4800, 105216, 205600, 210224, 210369]
    assert arch.describe() == ("1×28×28 → conv16 k3s2p1 → 16×14×14 → conv32 k3s2p1 → 32×7×7 → conv64 k7s1p0 → "
                               "64×1×1 → convT32 k7s1p0 → 32×7×7 → convT16 k3s2p1 op1 → 16×14×14 → "
                               "convT1 k3s2p1 op1 → 1×28×28")
    assert [ly.relu for ly in arch.layers] == [True] * 5 + [False]
    assert [ly.weight_shape for ly in arch.layers] == [(16, 1, 3, 3), (32, 16, 3, 3), (64, 32, 7, 7),
                                                       (64, 32, 7, 7), (32, 16, 3, 3), (16, 1, 3, 3)]
    assert conv.parse_arch("", 28, 28).spec == conv.parse_arch(" 16:3:2:1, 32:3:2:1 ,64:7:1:0", 28, 28).spec
    assert arch.scratch_size() > 0 and arch.Iv.dtype == np.int64 and arch.Iv[conv.H_L] == 6


def test_decoder_output_padding_restores_sizes():
    arch = conv.parse_arch("3:3:2:1,4:2:2:0", 11, 8)      # 11×8 → 6×4 → 3×2 → 6×4 → 11×8
    shapes = [(ly.cout, ly.hout, ly.wout) for ly in arch.layers]
    assert shapes == [(3, 6, 4), (4, 3, 2), (3, 6, 4), (1, 11, 8)]
    assert [(ly.op_h, ly.op_w) for ly in arch.layers[2:]] == [(0, 0), (0, 1)]


@pytest.mark.parametrize("spec,h,w,words", [
    (None, 8, 8, ["encoder layer 3", "64 ch, k7 s1 p0", "2×2", "7×7", "8×8"]),
    ("4:5:1:0", 9, 4, ["encoder layer 1", "9×4", "5×5"]),
    ("4:3:1:0,4:3:1:0", 4, 5, ["encoder layer 2", "2×3"]),
])
def test_arch_that_does_not_fit(spec, h, w, words):
    with pytest.raises(ConfigError) as e:
        conv.parse_arch(spec, h, w)
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("spec,words", [
    ("16:3:2", ["layer 1", "'16:3:2'", "channels:kernel:stride:padding"]),
    ("16:3:2:1,a:3:2:1", ["layer 2", "'a:3:2:1'", "channels:kernel:stride:padding"]),
    ("16:3:2:1,,32:3:2:1", ["channels:kernel:stride:padding"]),
    ("0:3:2:1", ["channels", "got 0"]),
    ("16:0:2:1", ["kernel", "got 0"]),
    ("16:3:0:1", ["stride", "got 0"]),
    ("16:3:2:-1", ["padding", "got -1"]),
    ("16:3.5:2:1", ["'16:3.5:2:1'"]),
])
def test_bad_spec_tokens(spec, words):
    with pytest.raises(ConfigError) as e:
        conv.parse_arch(spec, 28, 28)
    for word in words:
        assert word in str(e.value)


def test_bad_image_size():
    with pytest.raises(ConfigError, match="height"):
        conv.parse_arch(None, 0, 28)


# --- the whole kernel -----------------------------------------------------------------------
def _data(arch, m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((m, arch.height * arch.width)), rng


def _rows_grad(arch, x, F, rows, lo, hi, g0=None):
    g = np.zeros(arch.d) if g0 is None else g0.copy()
    scratch = np.full(arch.scratch_size(), np.nan)
    f = conv.conv_ae_rows(arch.Iv, x, F, np.asarray(rows, dtype=np.int64), lo, hi, g, scratch)
    return f, g


@pytest.mark.parametrize("spec,h,w,m", [("3:3:2:1,4:3:1:0", 9, 7, 5), ("2:3:2:1,3:2:1:0,4:3:1:1", 10, 9, 4),
                                        (None, 28, 28, 3)])
def test_rows_match_reference(spec, h, w, m):
    arch = conv.parse_arch(spec, h, w, block=2)
    F, rng = _data(arch, m + 3)
    x = conv.init_params(arch, rng)
    rows = rng.permutation(m + 3)[:m]
    g0 = rng.standard_normal(arch.d)
    f, g = _rows_grad(arch, x, F, rows, 0, m, g0)
    loss, grad = naive.conv_ae_loss_grad_ref(arch, x, F[rows])
    assert f == pytest.approx(m * loss, rel=1e-13)
    np.testing.assert_allclose(g - g0, m * grad, rtol=1e-9, atol=1e-12 * np.abs(grad).max())
    assert conv.conv_ae_rows_loss(arch.Iv, x, F, rows.astype(np.int64), 0, m,
                                  np.zeros(arch.scratch_size())) == f


def test_rows_finite_differences():
    arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7)
    F, rng = _data(arch, 4, seed=2)
    x = conv.init_params(arch, rng)
    rows = np.arange(4, dtype=np.int64)
    f, g = _rows_grad(arch, x, F, rows, 0, 4)
    sc = np.zeros(arch.scratch_size())
    e = 1e-5
    for _ in range(3):
        v = rng.standard_normal(arch.d)
        fd = (conv.conv_ae_rows_loss(arch.Iv, x + e * v, F, rows, 0, 4, sc)
              - conv.conv_ae_rows_loss(arch.Iv, x - e * v, F, rows, 0, 4, sc)) / (2 * e)
        assert g @ v == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_chunks_add_up():
    arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7, block=3)
    F, rng = _data(arch, 10, seed=3)
    x = conv.init_params(arch, rng)
    rows = rng.permutation(10)[:8]
    f, g = _rows_grad(arch, x, F, rows, 0, 8)
    fa, ga = _rows_grad(arch, x, F, rows, 0, 4)
    fb, gb = _rows_grad(arch, x, F, rows, 4, 8)
    assert fa + fb == pytest.approx(f, rel=1e-14)
    np.testing.assert_allclose(ga + gb, g, rtol=1e-12, atol=1e-15)
    assert not np.allclose(ga, gb)
    assert _rows_grad(arch, x, F, rows, 4, 4) == (0.0, pytest.approx(np.zeros(arch.d)))


@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_pass_reduces_chunks_in_order_and_leaves_its_buffers_zero(path):
    """conv_pass = its fixed chunks' gradients summed in chunk order (from NumPy-summed chunks of
    conv_ae_rows); it zeroes the chunk rows as it reduces them, so passes reusing the buffers repeat bit for
    bit, and a bad row index is refused before any chunk writes (the next pass is still right)."""
    arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7, block=2)
    F, rng = _data(arch, 12, seed=6)
    x = conv.init_params(arch, rng)
    rows = rng.permutation(12)[:11].astype(np.int64)
    fn = getattr(conv.conv_pass, path)
    P, S, Lc = conv.pass_buffers(arch, chunks=4, slots=2)
    runs = []
    for _ in range(3):
        g = np.full(arch.d, np.nan)
        runs.append((fn(arch.Iv, F, 0.0, x, rows, 11, g, P, S, Lc), g))
        assert not P.any()
    # reference: chunk c holds rows[c·11//4 : (c+1)·11//4], its gradient from zero, chunks added in order
    s, f = np.zeros(arch.d), 0.0
    for c in range(4):
        fc, gc = _rows_grad(arch, x, F, rows, c * 11 // 4, (c + 1) * 11 // 4)
        s, f = s + gc, f + fc
    np.testing.assert_array_equal(runs[0][1], s * (1.0 / 11))     # the kernel multiplies by 1/nb
    assert runs[0][0] == pytest.approx(f / 11, rel=1e-14)
    for r in runs[1:]:
        assert r[0] == runs[0][0]
        np.testing.assert_array_equal(r[1], runs[0][1])
    bad = rows.copy()
    bad[-1] = 12
    with pytest.raises(ValueError, match="row index"):
        fn(arch.Iv, F, 0.0, x, bad, 11, np.zeros(arch.d), P, S, Lc)
    with pytest.raises(ValueError, match="same length"):  # a longer x would make the reduction write past P
        fn(arch.Iv, F, 0.0, np.append(x, 0.0), rows, 11, np.zeros(arch.d + 1), P, S, Lc)
    assert not P.any()
    g = np.zeros(arch.d)
    assert fn(arch.Iv, F, 0.0, x, rows, 11, g, P, S, Lc) == runs[0][0]
    np.testing.assert_array_equal(g, runs[0][1])


def test_result_does_not_depend_on_block_or_path():
    """Every sum runs one term at a time in sample order: blocks of 1, 3, 8 and the small/not-small paths agree
    bit for bit (and so equal processing the samples one after the other)."""
    F, rng = _data(conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7), 7, seed=4)
    base = None
    for block in (1, 3, 8):
        for small_pixels in (conv.SMALL_PIXELS, 0, 10**9):
            arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7, block=block, small_pixels=small_pixels)
            x = conv.init_params(arch, 5)
            f, g = _rows_grad(arch, x, F, np.arange(7), 0, 7)
            if base is None:
                base = (f, g)
            assert f == base[0]
            np.testing.assert_array_equal(g, base[1])


def test_saddle_point_has_zero_gradient():
    arch = conv.parse_arch(None, 28, 28)
    F, rng = _data(arch, 6, seed=6)
    x = conv.saddle_point(arch, F)
    last = arch.layers[-1]
    assert x[last.b_off] == F.mean() and np.count_nonzero(x) == 1
    f, g = _rows_grad(arch, x, F, np.arange(6), 0, 6)
    assert f == pytest.approx(np.sum(np.mean((F - F.mean()) ** 2, axis=1)), rel=1e-12)
    assert np.count_nonzero(g[:last.b_off]) == 0          # every weight and every hidden bias: exactly 0
    assert abs(g[last.b_off]) < 1e-12                     # the output bias: 0 up to rounding (over all of F)
    # the same kernel off the saddle: gradients everywhere
    _, g2 = _rows_grad(arch, conv.init_params(arch, rng), F, np.arange(6), 0, 6)
    for l in range(arch.n_layers):
        assert np.count_nonzero(g2[arch.block_ptr[l]:arch.block_ptr[l + 1]]) > 0


def test_init_params_pytorch_bounds():
    arch = conv.parse_arch(None, 28, 28)
    x = conv.init_params(arch, np.random.default_rng(7))
    fan = {0: 9, 1: 144, 2: 1568, 3: 32 * 49, 4: 16 * 9, 5: 9}    # ConvTranspose2d: weight.size(1)·k·k = cout·k·k
    for l, ly in enumerate(arch.layers):
        bound = 1 / np.sqrt(fan[l])
        assert ly.fan_in == fan[l]
        w, b = arch.weights(x, l), arch.bias(x, l)
        assert w.shape == ly.weight_shape
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
        if w.size > 1000:
            assert np.abs(w).max() > 0.99 * bound and abs(np.std(w) - bound / np.sqrt(3)) < 0.02 * bound
    np.testing.assert_array_equal(x, conv.init_params(arch, np.random.default_rng(7)))


def test_kernel_checks_its_arguments():
    arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7)
    F, _ = _data(arch, 3)
    x, g = np.zeros(arch.d), np.zeros(arch.d)
    rows = np.arange(3, dtype=np.int64)
    with pytest.raises(ValueError, match="scratch"):
        conv.conv_ae_rows(arch.Iv, x, F, rows, 0, 3, g, np.zeros(arch.scratch_size() - 1))
    with pytest.raises(ValueError, match="height"):
        conv.conv_ae_rows(arch.Iv, x, F[:, :-1], rows, 0, 3, g, np.zeros(arch.scratch_size()))
    with pytest.raises(ValueError, match="row index"):
        conv.conv_ae_rows(arch.Iv, x, F, rows + 1, 0, 3, g, np.zeros(arch.scratch_size()))


def test_serial_path_runs_a_serial_pass_with_the_same_bits(monkeypatch):
    """The engine's serial path calls conv_pass's serial twin (no parallel region nested in it: a loaded
    machine gets a truly serial chunk), and both paths give the same bits."""
    from cgdbench import RunConfig, engine
    from cgdbench.algorithms.ef_sgd import ef_sgd_chunk__conv as chunk, full_loss_grad__conv as full
    assert chunk.serial.py_func.__globals__["conv_pass"] is conv.conv_pass.serial
    assert chunk.serial.py_func.__globals__["full_loss_grad"] is full.serial
    assert chunk.parallel.py_func.__globals__["full_loss_grad"] is full.parallel
    assert chunk.parallel.py_func.__globals__["conv_pass"] is conv.conv_pass.parallel
    assert full.serial.py_func.__globals__["conv_pass"] is conv.conv_pass.serial
    assert chunk.serial.py_func.__globals__["CONV"] and full.serial.py_func.__globals__["CONV"]
    cfg = RunConfig(problem="conv-autoencoder", hidden="2:3:2:1,3:7:1:0", algorithm="ef-sgd",
                    compressor="top-k:0.05", iters=9, batch_size=12, log_every=3, seed=3, noise=0.01, reset_iters=4)
    runs = {}
    for path in ("serial", "parallel"):
        monkeypatch.setenv("CGDBENCH_PATH", path)
        tr = engine.run(cfg)
        assert tr.meta["paths"]["chunks"]["serial" if path == "parallel" else "parallel"] == 0
        runs[path] = np.concatenate([tr.x_final, tr.loss, tr.grad_norm_sq])
    np.testing.assert_array_equal(runs["serial"], runs["parallel"])
    F, rng = _data(conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7), 10, seed=5)
    arch = conv.parse_arch("3:3:2:1,4:3:1:0", 9, 7)
    x = conv.init_params(arch, rng)
    out = []
    for fn in (conv.conv_pass.serial, conv.conv_pass.parallel):
        g = np.empty(arch.d)
        out.append((fn(arch.Iv, F, 0.0, x, np.arange(10), 10, g, *conv.pass_buffers(arch)), g))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
