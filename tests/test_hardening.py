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
