"""The command line: list, run, one-line errors, exit codes, the README's commands."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cgdbench import store

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cgdbench.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


def test_list_names_everything():
    r = cli("list")
    assert r.returncode == 0
    for name in ("logreg-nonconvex", "a1a", "w8a", "mushrooms", "phishing", "a9a", "synthetic-a1a", "gd",
                 "det-cgd1", "det-cgd2", "dcgd", "identity", "rand-k:K", "rand-1", "importance-rand-1",
                 "block-rand-k", "bern-q", "scalar", "diag-inv", "l-inv", "l-inv-sqrt", "identity-w", "optimal"):
        assert name in r.stdout, name
    assert cli("list", "compressors").stdout.startswith("compressors:")


def test_list_problems_shows_what_a_run_defaults_to():
    """Each problem's second line names its algorithms and the defaults a run resolves (from RunConfig)."""
    from cgdbench import problems
    from cgdbench.config import RunConfig
    lines = problems.describe_long()
    for i, (name, _) in enumerate(lines[::2]):
        cfg = RunConfig(problem=name, algorithm="sgd" if problems.get(name).oracle == "minibatch" else "det-cgd1")
        second = lines[2 * i + 1][1]
        assert f"--iters {cfg.iters}," in second and f"--log-every {cfg.log_every}" in second, (name, second)
        assert ("--noise-schedule " + cfg.noise_schedule in second) == (cfg.algorithm == "sgd"), second
        assert f" {cfg.algorithm}" in second
    assert "--iters 80000" in cli("list", "problems").stdout


def test_help_names_the_choices():
    out = cli("run", "--help").stdout
    for name in ("det-cgd2", "bern-q", "l-inv-sqrt", "contiguous", "shuffled", "ones-over-sqrt-d", "shared-seed"):
        assert name in out


def test_run_writes_and_summarises(tmp_path, data_dir):
    r = cli("run", "--dataset", "a1a", "--data-dir", str(data_dir), "--clients", "5", "--iters", "50",
            "--compressor", "rand-k:4", "--stepsize", "l-inv", "--out", "r.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for key in ("final loss", "‖∇f‖²", "G_{K,D}", "bits sent", "wall time", "saved"):
        assert key in r.stdout
    assert len(store.list_runs(tmp_path / "r.h5")) == 1


@pytest.mark.parametrize("args,msg", [
    (["--algorithm", "nope"], "unknown algorithm 'nope'; choose one of: gd, det-cgd1, det-cgd2, dcgd"),
    (["--problem", "nope"], "unknown problem"),
    (["--compressor", "rand-k:0"], "k = 0 is out of range"),
    (["--compressor", "rand-k:500"], "need an integer 1 <= k <= d = 123"),
    (["--compressor", "bern-q:1.5"], "need 0 < q <= 1"),
    (["--stepsize", "nope"], "unknown stepsize"),
    (["--lam", "-1"], "λ must be"),
    (["--clients", "0"], "--clients 0: must be >= 1"),
    (["--clients", "100000"], "more clients than rows"),
    (["--iters", "0"], "must be >= 1"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "a1a", "--data-dir", "/nonexistent"], "not found (looked for /nonexistent/a1a)"),
    (["--out", "/nonexistent/dir/r.h5"], "output directory '/nonexistent/dir' does not exist"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, msg, cli_main):
    rc, _, err = cli_main(["run", "--iters", "5", *args], cwd=tmp_path)
    assert rc == 2
    assert msg in err, err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_input_from_the_command_is_one_line_without_traceback(tmp_path):
    """The same through a real process (``python -m cgdbench.cli``), for one bad value and one bad syntax."""
    for args, msg in [(["--algorithm", "nope"], "unknown algorithm 'nope'"), (["--iters"], "expected one argument")]:
        r = cli("run", "--iters", "5", *args, cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_sha_mismatch_from_the_cli(tmp_path, data_dir, cli_main):
    (tmp_path / "a1a").write_text((data_dir / "a1a").read_text().replace("+1", "-1", 1))
    run = ["run", "--dataset", "a1a", "--data-dir", str(tmp_path), "--iters", "2"]
    rc, _, err = cli_main(run, cwd=tmp_path)
    assert rc == 2 and "sha256 mismatch" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli_main(run + ["--allow-hash-mismatch"], cwd=tmp_path)
    assert rc == 0, err


def test_diverged_run_exits_nonzero_and_is_stored(tmp_path):
    r = cli("run", "--algorithm", "gd", "--compressor", "identity", "--stepsize", "scalar:1e308", "--x0", "zeros",
            "--iters", "100", "--out", "r.h5", cwd=tmp_path)
    assert r.returncode == 1 and "diverged" in r.stdout and "Traceback" not in r.stderr
    assert store.read_run(tmp_path / "r.h5")["status"] == "diverged"


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_main_command_runs(tmp_path):
    cmds = readme_commands()
    install = cmds[0]
    assert "pip install" in install and "cgdbench compare" in install
    args = shlex.split(install[install.index("cgdbench compare"):])[2:]
    r = cli("compare", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / args[args.index("--out") + 1]
    ids = store.list_runs(out)
    assert len(ids) > 20 and all(store.read_run(out, i)["status"] == "completed" for i in ids)
    assert "det-cgd1 | rand-1 | diag-inv" in r.stdout and "ef-sgd | top-k:0.25" in r.stdout  # the summary table


def test_readme_test_command_is_what_ci_runs():
    test_cmd = readme_commands()[1]
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci


def test_saddle_cli_commands(tmp_path, capsys):
    from cgdbench.cli import main
    out = tmp_path / "s.h5"
    rc = main(["run", "--problem", "saddle-quartic", "--dim", "6", "--algorithm", "ef-sgd", "--compressor",
               "top-k:2", "--noise", "0.05", "--init", "saddle", "--iters", "60", "--batch-size", "8",
               "--sosp-every", "20", "--eps", "0.1", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "ε-SOSP" in text and "f* = -0.25" in text
    assert main(["run", "--problem", "saddle-quartic", "--algorithm", "ef-sgd", "--noise", "-1"]) == 2
    assert "--noise -1.0: must be a finite number >= 0" in capsys.readouterr().err
    assert main(["run", "--problem", "mlp-autoencoder", "--algorithm", "det-cgd1"]) == 2
    assert "not defined for algorithm 'det-cgd1'" in capsys.readouterr().err
    assert main(["compressors", "top-k:5", "qsgd:2", "--d", "100", "--samples", "20"]) == 0
    text = capsys.readouterr().out
    assert "top-k:5" in text and ">= 0.05" in text
    fig = tmp_path / "f.png"
    assert main(["plot", str(out), "-o", str(fig), "--y", "loss,stoch_grad_norm_sq"]) == 0 and fig.stat().st_size
    assert main(["plot", str(out), "-o", str(fig), "--band", "90,10"]) == 2


def test_escape_experiment_resumes(tmp_path, capsys):
    from cgdbench.cli import main
    args = ["escape", "--problem", "saddle-quartic", "--dim", "5", "--compressors", "identity,top-k:1",
            "--seeds", "2", "--iters", "40", "--log-every", "5", "--batch-size", "8", "--out", str(tmp_path / "e.h5")]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "8 to run" in first.err and (tmp_path / "e.png").stat().st_size
    assert "over seeds: final loss mean [10th, 90th percentile]" in first.out  # the summary's brackets, said
    assert main(args) == 0
    assert "8 already completed in" in capsys.readouterr().err        # nothing redone
    assert main(args[:-2] + ["--lr", "0.1,0.2,0.3", "--out", str(tmp_path / "x.h5")]) == 2


@pytest.mark.parametrize("problem,hidden,stored", [("MLP-AE", None, "32"), ("mlp-ae", "4", "4"),
                                                   ("linear-autoencoder", "3", "3")])
def test_escape_reads_hidden_for_any_spelling(tmp_path, problem, hidden, stored):
    """--hidden was dropped unless the problem was spelt exactly as one of the MLP's names."""
    from cgdbench import store
    from cgdbench.escape import run_escape
    out = tmp_path / "e.h5"
    run_escape(out, problem=problem, hidden=hidden, compressors="identity", seeds=1, iters=4, log_every=2,
               batch_size=8, plot=str(tmp_path / "e.png"))
    configs = [store.read_run(out, i)["config"] for i in store.list_runs(out)]
    assert len(configs) == 2 and {c["hidden"] for c in configs} == {stored}


def test_a_closed_pipe_ends_quietly():
    """`cgdbench list compressors | head -1`: the reader has gone; exit 141 (128 + SIGPIPE) without a traceback."""
    import os
    r, w = os.pipe()
    os.close(r)
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a buffered stdout, as usual
        p = subprocess.run([sys.executable, "-m", "cgdbench.cli", "list", "compressors"], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(w)
    assert p.returncode == 141 and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


@pytest.mark.parametrize("args, words", [
    # typed options an algorithm does not read are refused even at the value the config fills in
    (["run", "--algorithm", "det-cgd1", "--lr", "0.1"], "--lr does not apply to algorithm 'det-cgd1'; only to sgd"),
    (["run", "--algorithm", "det-cgd1", "--eps", "0.001"], "--eps does not apply"),
    (["run", "--algorithm", "det-cgd1", "--batch-size", "64"], "--batch-size does not apply"),
    # the saddle problems' size options name those problems and where det-CGD runs instead
    (["run", "--algorithm", "det-cgd1", "--hidden", "4"], "--hidden is an option of the minibatch problems "
     "(--hidden: the layer widths of linear-autoencoder, "),
    (["run", "--algorithm", "ef21", "--dim", "4"], "which run with sgd, ef-sgd; algorithm 'ef21' runs on logreg-nonconvex"),
    (["run", "--problem", "saddle-quartic", "--algorithm", "ef-sgd", "--metrics", "every"], "--metrics does not apply"),
    (["run", "--clients", "4", "--split-seed", "3"], "--split-seed 3: only the shuffled split draws from a seed"),
    (["run", "--problem", "saddle-quartic", "--algorithm", "ef-sgd", "--no-reset", "--reset-iters", "50"],
     "--reset-iters 50 with --no-reset"),
    (["escape", "--problem", "logreg-nonconvex", "--out", "e.h5"],
     "escape --problem 'logreg-nonconvex': the experiment starts at a saddle of one of: saddle-quartic"),
    (["plot", "x.h5", "-o", "x.png", "--log-y", "--linear-y"], "not allowed with argument --log-y"),
    (["run", "--iter", "5"], "unrecognized arguments: --iter 5"),  # no prefixes: a script's --iter stays an error
    # an unknown compressor lists what this algorithm takes (no det-CGD sketch for SGD, no top-k for det-CGD)
    (["run", "--problem", "saddle-quartic", "--algorithm", "sgd", "--compressor", "foo"],
     "this algorithm takes a vector compressor C(x): choose one of: identity, rand-k:K, rand-1, rand-k-unscaled:K"),
    (["run", "--algorithm", "det-cgd1", "--compressor", "foo"],
     "choose one of: identity, rand-k:K, rand-1, importance-rand-1:[FILE], block-rand-k:K[,K2,...], bern-q:Q[,Q2,...]\n"),
])
def test_contradictory_or_unread_options_are_refused(cli_main, tmp_path, args, words):
    rc, out, err = cli_main(args, cwd=tmp_path)
    assert rc == 2 and words in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_the_summary_splits_setup_into_data_and_stepsize_and_compile(cli_main, tmp_path):
    rc, out, err = cli_main(["run", "--iters", "5"], cwd=tmp_path)
    assert rc == 0 and re.search(r"s setup \([0-9.]+ s data and stepsize, the rest compile/load", out), out
