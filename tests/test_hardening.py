"""Issue 19 (hardening), the parts done so far: non-finite spec parameters, theory's inputs, corrupt caches."""
import subprocess
import sys

import numpy as np
import pytest

from cgdbench import RunConfig, compressors, engine
from cgdbench.errors import ConfigError


@pytest.mark.parametrize("spec", ["rand-k:nan", "rand-k:inf", "rand-k:-inf", "top-k:nan", "qsgd:nan", "qsgd:inf",
                                  "bern-q:nan", "block-rand-k:inf", "sketch-top-k:2,nan", "rand-k-unscaled:inf"])
def test_non_finite_spec_parameters_are_one_line_errors(spec):
    with pytest.raises(ConfigError, match="not a finite number"):
        compressors.parse(spec)
    name = spec.split(":")[0]
    with pytest.raises(ConfigError, match="not a finite number"):
        if compressors.VECTOR in compressors.REGISTRY[name].uses:
            compressors.make_vector(spec, 50)
        else:
            compressors.make(spec, 50)


def test_parse_k_refuses_non_finite_directly():
    from cgdbench.compressors.vector import parse_k
    for tok in ("nan", "inf"):
        with pytest.raises(ConfigError, match="not finite"):
            parse_k("rand-k", tok, 10)


@pytest.mark.parametrize("args,msg", [
    (["theory", "--compressor", "rand-k:nan"], "not a finite number"),
    (["theory", "--compressor", "rand-k:200"], "out of range"),
    (["theory", "--compressor", "bern-q:1.5"], "probability q in (0, 1]"),
    (["theory", "--check", "5", "--seeds", "0"], "--seeds 0: need at least 1"),
    (["theory", "--check", "-1"], "--check -1"),
    (["run", "--compressor", "rand-k:inf"], "not a finite number"),
    (["compressors", "qsgd:nan"], "not a finite number"),
])
def test_cli_one_line_errors(args, msg, capsys):
    from cgdbench.cli import main
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cgdbench: error:") and msg in err[0], err


def test_theory_takes_a_fraction_for_rand_k(capsys):
    from cgdbench.cli import main
    assert main(["theory", "--compressor", "rand-k:0.5", "--json"]) == 0


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"\x93NUMPY garbage"])
def test_corrupt_stepsize_cache_is_reported_removed_and_recomputed(tmp_path, monkeypatch, capsys, content):
    monkeypatch.setenv("CGDBENCH_CACHE", str(tmp_path))
    cfg = RunConfig(clients=1, algorithm="det-cgd1", compressor="rand-1", stepsize="optimal", iters=2)
    first = engine.build(cfg)
    entries = list((tmp_path / "stepsizes").glob("*.npz"))
    assert len(entries) == 1
    entries[0].write_bytes(content)                        # a half-written entry from an interrupted run
    again = engine.build(cfg)
    err = capsys.readouterr().err
    assert "is unreadable" in err and "removed, recomputing" in err
    assert np.array_equal(again.D.dense(), first.D.dense())
    assert np.load(entries[0])["D"].shape == first.D.dense().shape   # rewritten, readable


def test_corrupt_json_cache_entry(tmp_path, monkeypatch, capsys):
    from cgdbench import data, problems
    from cgdbench.stepsizes.distributed import estimate_inf
    monkeypatch.setenv("CGDBENCH_CACHE", str(tmp_path))
    p = problems.LogRegNonconvex(data.load(None), lam=0.1, clients=3)
    a = estimate_inf(p, p.x0(), maxiter=30)
    (entry,) = (tmp_path / "stepsizes").glob("inf-*.json")
    entry.write_text("{not json")
    b = estimate_inf(p, p.x0(), maxiter=30)
    assert "is unreadable" in capsys.readouterr().err and b["f_inf"] == a["f_inf"]


def test_no_traceback_for_non_finite_spec_from_the_command_line():
    r = subprocess.run([sys.executable, "-m", "cgdbench", "run", "--compressor", "rand-k:nan"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a finite number" in r.stderr


@pytest.mark.parametrize("body,msg", [
    ("+1 1:0.5 2:nan\n-1 1:1 3:2\n", "line 1: value '2:nan' is not a finite number"),
    ("+1 1:0.5\n-1 1:inf 3:2\n", "line 2: value '1:inf' is not a finite number"),
    ("+1 1:1e308\n-1 1:1\n", "line 1: value '1:1e308'"),
    ("# only comments\n# more\n", "has no rows"),
])
def test_libsvm_values_and_comments(tmp_path, body, msg):
    from cgdbench import data
    from cgdbench.errors import DataError
    f = tmp_path / "x.svm"
    f.write_text(body)
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        data.read_libsvm(f)


def test_libsvm_trailing_comment_and_qid_are_read(tmp_path):
    from cgdbench import data
    f = tmp_path / "x.svm"
    f.write_text("+1 1:0.5 2:1\n-1 1:1 3:2\n# trailing comment\n")
    A, y = data.read_libsvm(f)
    assert A.shape == (2, 3)
    g = tmp_path / "q.svm"
    g.write_text("+1 qid:3 1:0.5 2:1\n-1 qid:3 1:1 3:2\n")
    A, y = data.read_libsvm(g)
    assert A.shape == (2, 3) and y.tolist() == [1.0, -1.0]


def test_dataset_that_is_a_directory(tmp_path):
    from cgdbench import data
    from cgdbench.errors import DataError
    with pytest.raises(DataError, match="is a directory"):
        data.load(str(tmp_path))


def test_importance_probabilities_from_a_bad_file(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 2)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for f in (junk, obj):
        with pytest.raises(ConfigError, match="cannot read probabilities"):
            compressors.make(f"importance-rand-1:{f}", 10)


def test_theory_names_the_problems_it_takes(capsys):
    from cgdbench.cli import main
    assert main(["theory", "--problem", "saddle-quartic"]) == 2
    assert "needs a finite-sum problem" in capsys.readouterr().err


def test_run_json_is_strict_json(tmp_path):
    """--json never prints NaN or Infinity (strict parsers reject them): non-finite numbers are null."""
    import json
    r = subprocess.run([sys.executable, "-m", "cgdbench", "run", "--iters", "3", "--stepsize", "scalar:1e300",
                        "--json"], capture_output=True, text=True)
    out = r.stdout.strip().splitlines()[-1]
    assert "NaN" not in out and "Infinity" not in out
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_compare_exit_code_counts_diverged_cells(tmp_path):
    """A sweep whose cells diverged exits 1 and says how many, like a failed one."""
    grid = tmp_path / "g.toml"
    grid.write_text('problem = "saddle-quartic"\nalgorithm = "sgd"\nlr = [100.0, 0.05]\niters = 50\n')
    r = subprocess.run([sys.executable, "-m", "cgdbench", "compare", "--config", str(grid), "--out",
                        str(tmp_path / "r.h5"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1 and "1 diverged" in r.stdout, r.stdout + r.stderr
