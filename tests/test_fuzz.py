"""Property-based fuzzing (Hypothesis) of what users type and the files they point at: every input either
works or raises the package's own error (:class:`cgdbench.errors.CgdbenchError`), never another exception.

Derandomized (a fixed example sequence), so the suite is the same on every run and machine.
"""
import gzip
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdbench import RunConfig, compressors, data, stepsizes
from cgdbench.algorithms.ef_sgd import noise_schedule
from cgdbench.errors import CgdbenchError
from cgdbench.problems import parse_blocks
from cgdbench.problems.conv import parse_arch
from cgdbench.problems.saddles import _hidden, read_idx_images, read_idx_labels

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: pieces users type: names, numbers (incl. nan/inf/huge/negative), separators, junk
NUMBERS = st.sampled_from(["0", "1", "-1", "0.5", "1.0", "1e308", "1e-320", "nan", "inf", "-inf", "10", "0.001",
                           "999999999999999999999", "2", "3", "", " ", "1,2", "x"])
NAMES = st.sampled_from(sorted(compressors.REGISTRY) + ["", "foo", "RAND-K", " top-k ", "rand_k"])


def _spec(parts):
    name, params = parts
    return name if not params else name + ":" + ",".join(params)


SPECS = st.one_of(st.tuples(NAMES, st.lists(NUMBERS, max_size=4)).map(_spec), st.text(max_size=30))


def _ok_or_ours(fn, *args):
    try:
        fn(*args)
    except CgdbenchError:
        pass


@FUZZ
@given(SPECS, st.integers(min_value=-3, max_value=5000))
def test_compressor_specs(spec, d):
    _ok_or_ours(compressors.parse, spec)
    if d >= 1:
        _ok_or_ours(compressors.make_vector, spec, d)
        _ok_or_ours(compressors.make, spec, d)


@FUZZ
@given(st.one_of(st.tuples(st.sampled_from(["scalar", "diag-inv", "l-inv", "optimal", "corollary1", "lr", "x"]),
                           st.lists(NUMBERS, max_size=2)).map(_spec), st.text(max_size=20)))
def test_stepsize_specs(spec):
    _ok_or_ours(stepsizes.parse, spec)


@FUZZ
@given(st.one_of(st.lists(NUMBERS, max_size=4).map(lambda p: "step:" + ":".join(p)), st.text(max_size=20),
                 st.just("constant")), st.integers(min_value=1, max_value=10**6))
def test_noise_schedules(spec, iters):
    try:
        T, F = noise_schedule(spec, iters)
    except CgdbenchError:
        return
    assert (T == math.inf or 1 <= T <= iters) and F >= 0 and math.isfinite(F)


@FUZZ
@given(st.one_of(st.lists(NUMBERS, max_size=5).map(",".join), st.text(max_size=20), st.none()),
       st.integers(min_value=1, max_value=300))
def test_blocks_and_hidden_and_arch(spec, d):
    _ok_or_ours(parse_blocks, spec, d)
    _ok_or_ours(_hidden, spec, (8,))
    arch = None if spec is None else ",".join(":".join([t, "3", "2", "1"]) for t in spec.split(",") if t)
    _ok_or_ours(parse_arch, arch or spec, 28, 28)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "problem": st.sampled_from(["logreg-nonconvex", "saddle-quartic", "mlp-classifier", "linear-ae", "nope", ""]),
    "algorithm": st.sampled_from(["det-cgd1", "ef-sgd", "sgd", "diana", "marina", "gd", "what"]),
    "compressor": SPECS, "stepsize": st.sampled_from(["scalar:0.1", "diag-inv", "lr", "scalar:nan", "x"]),
    "iters": st.one_of(st.integers(min_value=-5, max_value=10**13), st.floats(allow_nan=True)),
    "log_every": st.integers(min_value=-2, max_value=10**6), "clients": st.integers(min_value=-1, max_value=10**7),
    "lr": st.floats(allow_nan=True, allow_infinity=True), "noise": st.floats(allow_nan=True, allow_infinity=True),
    "seed": st.integers(min_value=-1, max_value=2**70), "split": st.sampled_from(["by-label", "shuffled", "zig"]),
    "noise_schedule": st.text(max_size=12), "value_bits": st.sampled_from([16, 32, 64, 7]),
    "batch_size": st.integers(min_value=-1, max_value=10**9), "x0": st.sampled_from(["saddle", "zeros", "moon"]),
}))
def test_run_configs(fields):
    _ok_or_ours(lambda: RunConfig(**fields))


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.sampled_from(["+1 1:1 3:0.5", "-1 2:1", "1 qid:3 1:2", "0 1:nan", "2 1:inf", "# comment", "",
                     "1 0:1", "1 3:1 2:1", "1 1:1e400", "x 1:1", "1 1", "1 a:b", "-1 5:-2 # tail", "3 1:1"]),
    st.text(alphabet=" \t:#+-.0123456789eEnaif\n", max_size=25)), max_size=8), st.booleans())
def test_libsvm_reader(tmp_path, lines, binary_junk):
    path = tmp_path / "f.svm"
    text = "\n".join(lines) + "\n"
    path.write_bytes(text.encode() + (b"\x00\xff\xfe" if binary_junk else b""))
    try:
        A, y = data.read_libsvm(path)
    except CgdbenchError:
        return
    assert A.shape[0] == y.size and np.all(np.isfinite(A.data)) and np.all(np.isfinite(y))


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.sampled_from([2051, 2049, 0, 7]), st.lists(st.integers(0, 6), min_size=3,
                                                                              max_size=3),
       st.booleans())
def test_idx_readers(tmp_path, payload, magic, dims, gz):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in dims)
    raw = header + payload
    path = tmp_path / ("t-images-idx3-ubyte" + (".gz" if gz else ""))
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)
    for reader in (read_idx_images, read_idx_labels):
        try:
            out = reader(path)
        except CgdbenchError:
            continue
        assert out.ndim in (1, 2)
    junk = tmp_path / "junk-idx3-ubyte.gz"
    junk.write_bytes(payload)              # not gzip at all, or a truncated stream
    _ok_or_ours(read_idx_images, junk)


def test_fuzz_settings_are_deterministic():
    """derandomize: the same examples in every run (the brief: every output, randomized checks too)."""
    assert FUZZ.derandomize and FUZZ.database is None
    with pytest.raises(CgdbenchError):
        compressors.parse("rand-k:nan")
