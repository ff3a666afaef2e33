"""Plots (axis scales, labels, λ_min's own x), the HTML report in a real headless browser, CSV export."""
import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cgdbench
from cgdbench import plot, report, store
from cgdbench.errors import StoreError


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "r.h5"
    for algo, comp in (("det-cgd1", "rand-1"), ("gd", "identity")):
        for seed in (0, 1):
            cgdbench.run(cgdbench.RunConfig(algorithm=algo, compressor=comp, stepsize="diag-inv" if algo != "gd"
                                            else "scalar", clients=2, iters=60, seed=seed), out=out)
    cgdbench.run(cgdbench.RunConfig(problem="saddle-quartic", dim=10, algorithm="ef-sgd", lr=0.05, noise=0.01,
                                    iters=100, sosp_every=25, log_every=5, batch_size=8, x0="saddle"), out=out)
    return out


def test_plot_defaults_log_y_labels_and_title(results, tmp_path):
    fig = plot.plot_file(results, tmp_path / "a.png", ys=("loss", "grad_norm_sq", "G"),
                         where={"problem": "logreg-nonconvex"})
    assert fig["groups"] == 2 and fig["runs"] == 4
    ax_loss, ax_g, ax_G = fig["axes"][:, 0]
    assert ax_loss.get_yscale() == "linear" and ax_g.get_yscale() == "log" and ax_G.get_yscale() == "log"
    assert ax_g.get_ylabel() == r"$\|\nabla f(x^k)\|^2$" and ax_G.get_xlabel() == "iteration $k$"
    assert "logreg-nonconvex on synthetic-a1a, n = 2" in ax_loss.get_title()
    labels = {t.get_text() for t in ax_loss.figure.legends[0].get_texts()}
    assert labels == {"det-cgd1 | rand-1 | diag-inv (2 seeds)", "gd | identity | scalar (2 seeds)"}
    # each method its own dash as well as its colour: identical traces stay visible under each other
    assert len({line.get_linestyle() for line in ax_loss.get_lines()}) == 2
    # the legend below the axes stays on the canvas, and does not overlap the lowest axes' x label
    fig_ = ax_loss.figure
    fig_.canvas.draw()
    leg, xlab = fig_.legends[0].get_window_extent(), ax_G.xaxis.label.get_window_extent()
    assert leg.y0 >= 0 and leg.y1 <= xlab.y0
    fig = plot.plot_file(results, tmp_path / "b.png", x="bits_up", ys=("grad_norm_sq",), log_x=True,
                         where={"algorithm": ["det-cgd1"]})
    assert fig["axes"][0, 0].get_xscale() == "log" and fig["groups"] == 1
    assert fig["axes"][0, 0].get_xlabel() == "bits sent up (cumulative)"


def test_a_file_without_completed_runs_says_so(tmp_path, capsys):
    """plot said 'no completed runs with grad_norm_sq, loss; --y can be one of: loss, ...' (a contradiction)."""
    from cgdbench.cli import main
    out = tmp_path / "f.h5"
    store.write_run(out, store.failed_record(cgdbench.RunConfig(iters=5), "a bug"))
    with pytest.raises(StoreError, match=r"has no completed runs \(it holds 1 failed\); plot draws completed runs"):
        plot.plot_file(out, tmp_path / "p.png")
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert "note: " in capsys.readouterr().err


def test_legend_names_methods_that_draw_the_same_line(tmp_path):
    """GD and det-CGD1 with S = I and a scalar D compute the same iterates: one line hides the other, so the
    legend says which is which; a method with different iterates is not marked."""
    out = tmp_path / "s.h5"
    for algo, comp in (("det-cgd1", "identity"), ("gd", "identity"), ("det-cgd1", "rand-1")):
        cgdbench.run(cgdbench.RunConfig(algorithm=algo, compressor=comp, stepsize="scalar", iters=30), out=out)
    fig = plot.plot_file(out, tmp_path / "s.png", ys=("loss", "grad_norm_sq"))
    labels = [t.get_text() for t in fig["axes"][0, 0].figure.legends[0].get_texts()]
    marked = [t for t in labels if " = " in t]
    assert len(marked) == 1 and marked[0].startswith("gd | identity") and "= det-cgd1 | identity | scalar (the " \
        "same loss, ‖∇f‖²)" in marked[0].replace("\n  ", " ")
    # the same losses at other bit counts (64-bit values) are not the same line on a bits axis
    cgdbench.run(cgdbench.RunConfig(algorithm="gd", compressor="identity", stepsize="scalar", iters=30,
                                    value_bits=64), out=out)
    fig = plot.plot_file(out, tmp_path / "b.png", x="iteration,bits_up", where={"algorithm": "gd"})
    assert not any(" = " in t.get_text() for t in fig["axes"][0, 0].figure.legends[0].get_texts())


def test_several_problems_get_a_figure_each(tmp_path, capsys):
    """`cgdbench plot` of the README's smoke file drew a logistic loss and a quartic saddle on one axis."""
    from cgdbench.cli import main
    out = tmp_path / "m.h5"
    cgdbench.run(cgdbench.RunConfig(iters=10), out=out)
    cgdbench.run(cgdbench.RunConfig(problem="saddle-quartic", algorithm="ef-sgd", x0="saddle", iters=10), out=out)
    assert main(["plot", str(out), "-o", str(tmp_path / "f.png")]) == 0
    captured = capsys.readouterr()
    assert "one figure each" in captured.err and not (tmp_path / "f.png").exists()
    assert "--y grad_norm_sq: no positive value" in captured.err  # ef-sgd without noise stays at the saddle
    for problem in ("logreg-nonconvex", "saddle-quartic"):
        assert (tmp_path / f"f-{problem}.png").stat().st_size and f"f-{problem}.png" in captured.out
    assert main(["plot", str(out), "-o", str(tmp_path / "q.png"), "--where", "problem=saddle-quartic"]) == 0
    assert (tmp_path / "q.png").stat().st_size  # one problem asked for: the file named
    # a series only one problem has: that problem's figure, under the name asked for
    assert main(["plot", str(out), "-o", str(tmp_path / "l.png"), "--y", "lambda_min"]) == 0
    assert (tmp_path / "l.png").stat().st_size
    # f* only on the saddle: its figure, and a note for the other
    assert main(["plot", str(out), "-o", str(tmp_path / "s.png"), "--y", "suboptimality"]) == 0
    assert (tmp_path / "s-saddle-quartic.png").stat().st_size and not (tmp_path / "s-logreg-nonconvex.png").exists()
    assert "no figure for logreg-nonconvex: --y suboptimality needs f*" in capsys.readouterr().err


def test_legend_gives_fractions_as_percentages():
    """Figure 1's columns are fractions of the coordinates: the legend says 0.1%, not only rand-k:0.001."""
    t = plot.compressor_text
    assert t("rand-k:0.001") == "rand-k:0.001 (0.1%)" and t("rand-k:1.0") == "rand-k:1.0 (100%)"
    assert t("top-k:0.01") == "top-k:0.01 (1%)" and t("bern-q:0.5") == "bern-q:0.5 (50%)"
    for spec in ("rand-k:3", "identity", "qsgd:4", "qsgd:1.0", "bern-q:0.5,0.2", "sketch-top-k:2,5,40"):
        assert t(spec) == spec  # a count of coordinates, a level or a list: as written


def test_every_label_renders_as_mathtext():
    """Labels are matplotlib mathtext (f(x^k) set as maths, not as the characters '^k'): each one parses."""
    import matplotlib.pyplot as plt
    for name, text in plot.LABELS.items():
        fig = plt.figure()
        t = fig.text(0.1, 0.5, text)
        fig.canvas.draw()  # a malformed $...$ raises ValueError here
        assert t.get_window_extent().width > 0, name
        plt.close(fig)


def test_lambda_min_is_drawn_against_its_own_iterations(results, tmp_path):
    fig = plot.plot_file(results, tmp_path / "l.png", ys=("lambda_min",), where={"problem": "saddle-quartic"})
    line = fig["axes"][0, 0].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [0, 25, 50, 75, 100])


def test_plot_errors(results, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        plot.plot_file(results, tmp_path / "no" / "x.png")
    with pytest.raises(StoreError, match="unknown figure format '.xyz'"):
        plot.plot_file(results, tmp_path / "x.xyz")
    with pytest.raises(StoreError, match="--y can be one of: loss, grad_norm_sq, .*G") as err:
        plot.plot_file(results, tmp_path / "x.png", ys=("nope",))
    assert "x_final" not in str(err.value)
    with pytest.raises(StoreError, match="no completed run matches --where algorithm=nosuch; its runs have "
                                         "algorithm: .*det-cgd1"):
        plot.plot_file(results, tmp_path / "x.png", where={"algorithm": "nosuch"})
    r = subprocess.run([sys.executable, "-m", "cgdbench.cli", "plot", str(results), "-o", str(tmp_path / "n" / "x.png")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_band_line_is_the_median_over_seeds():
    """The plotted line is the median over seeds (the summary tables' statistic): one seed that blows up moves
    the band's top, not the line."""
    runs = [{"iteration": np.arange(3), "loss": np.array(v, dtype=float)}
            for v in ([1.0, 0.5, 0.25], [1.0, 0.6, 0.3], [1.0, 50.0, 1e6])]
    it, line, lo, hi = plot.band_stats(runs, "loss", (10, 90))
    np.testing.assert_array_equal(line, [1.0, 0.6, 0.3])
    assert hi[2] > 1e5 and lo[2] < 0.3


def test_csv_round_trip(results, tmp_path):
    out = tmp_path / "r.csv"
    n = report.export_csv(results, out)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    for run_id in store.list_runs(results):
        rec = store.read_run(results, run_id)
        mine = [r for r in rows if r["run_id"] == run_id]
        assert len(mine) == rec["iteration"].size
        np.testing.assert_array_equal([float(r["loss"]) for r in mine], rec["loss"])  # repr: exact
        np.testing.assert_array_equal([int(r["bits_up"]) for r in mine], rec["bits_up"])
        assert {r["algorithm"] for r in mine} == {rec["config"]["algorithm"]}
        # SGD's own options are blank on det-CGD rows (not read there), filled on the SGD run's rows
        sgd = rec["config"]["algorithm"] == "ef-sgd"
        assert {(r["batch_size"] != "", r["noise"] != "", r["lr"] != "") for r in mine} == {(sgd,) * 3}
    with pytest.raises(StoreError, match="expected a .csv"):
        report.export_csv(results, tmp_path / "r.txt")
    # "-": the same CSV on standard output, the count on standard error
    r = subprocess.run([sys.executable, "-m", "cgdbench.cli", "export", str(results), "--csv", "-"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.replace("\r\n", "\n") == out.read_text().replace("\r\n", "\n")
    assert f"export: {n} rows -> standard output" in r.stderr


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed to check the HTML report: apt-get install chromium (.ci/run does)")


def test_html_report_renders_in_headless_chromium(results, tmp_path):
    page = tmp_path / "r.html"
    info = report.write_report(results, page)
    assert info["runs"] == 5 and info["figures"] == 2 and info["methods"] == 3
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # self-contained
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "id=\"summary-table\"" in dom and "det-cgd1 | rand-1 | diag-inv" in dom
    # the summary is a table of its own (a header and one row per method), then the runs' table
    summary, runs = dom.split("id=\"summary-table\"")[1].split("id=\"runs-table\"")
    assert summary.count("<tr>") == 1 + info["methods"] and "<th>final loss</th>" in summary
    assert dom.count("data:image/png;base64,") == 2 and runs.count("<tr>") == 1 + 5
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    assert img[..., :3].std() > 0.05  # text, tables and figures, not a blank page


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, results):
    """least-squares (exact f*) on two datasets, two seeds; copied next to the logistic and saddle runs."""
    out = tmp_path_factory.mktemp("mixed") / "m.h5"
    shutil.copy(results, out)
    for ds in (None, "mushrooms"):
        for seed in (0, 1):
            cgdbench.run(cgdbench.RunConfig(problem="least-squares", dataset=ds, algorithm="dcgd",
                                            compressor="rand-1", stepsize="matrix-smoothness", eps2=1e-3, clients=2,
                                            iters=40, seed=seed), out=out)
    return out


def test_suboptimality_uses_the_exact_minimum_and_leaves_out_who_has_none(mixed, tmp_path):
    """least-squares records f* as its exact f_lower; a file mixing it with logistic runs (no f*) draws the
    runs that have it and says which were left out."""
    fig = plot.plot_file(mixed, tmp_path / "s.png", ys=("suboptimality",))
    assert fig["groups"] == 3  # least-squares on two datasets, the quartic saddle: the logistic runs left out
    assert fig["notes"] == ["--y suboptimality: 2 of 5 methods left out (no exact f* for logreg-nonconvex)"]
    ls = [r for r in map(lambda i: store.read_run(mixed, i), store.list_runs(mixed))
          if r["config"]["problem"] == "least-squares"]
    assert min(float(np.min(r["loss"] - r["meta"]["f_lower"])) for r in ls) >= -1e-12  # f* really is a minimum
    drawn = sorted(float(ln.get_ydata()[-1]) for ln in fig["axes"][0, 0].get_lines())
    want = sorted([float(np.median([r["loss"][-1] - r["meta"]["f_lower"] for r in ls
                                    if r["config"].get("dataset") == ds])) for ds in (None, "mushrooms")]
                  + [float(r["loss"][-1] - r["meta"]["f_star"]) for r in map(lambda i: store.read_run(mixed, i),
                     store.list_runs(mixed)) if r["config"]["problem"] == "saddle-quartic"])
    np.testing.assert_allclose(drawn, want, rtol=1e-12)
    with pytest.raises(StoreError, match="needs f\\*"):
        plot.plot_file(mixed, tmp_path / "t.png", ys=("suboptimality",), where={"problem": "logreg-nonconvex"})


def test_titles_bands_and_labels_say_what_is_drawn(mixed, results, tmp_path):
    # two datasets on one axes: the title does not name one of them; the legend names each
    fig = plot.plot_file(mixed, tmp_path / "d.png", ys=("loss",), where={"problem": "least-squares"})
    ax = fig["axes"][0, 0]
    assert "least-squares on several datasets" in ax.get_title()
    assert {"mushrooms" in t.get_text() for t in ax.figure.legends[0].get_texts()} == {True, False}
    # one seed per line: no band is claimed in the title, none is drawn
    fig = plot.plot_file(results, tmp_path / "o.png", ys=("loss",), where={"problem": "saddle-quartic"})
    ax = fig["axes"][0, 0]
    assert "one seed per line" in ax.get_title() and "band" not in ax.get_title() and not ax.collections
    # a label names only the options its algorithm reads (no SGD batch size on a det-CGD line)
    fig = plot.plot_file(results, tmp_path / "a.png", ys=("loss",))
    texts = [t.get_text() for t in fig["axes"][0, 0].figure.legends[0].get_texts()]
    det = [t for t in texts if t.startswith("det-cgd1")][0]
    assert "batch_size" not in det and "noise" not in det and "lr=" not in det
    assert "batch_size=8" in [t for t in texts if t.startswith("ef-sgd")][0]
    # G from rows logged every 5 iterations is not G_{K,D} over every iterate: the label says so
    assert "(over the logged rows)" in plot.plot_file(results, tmp_path / "g.png", ys=("G",), where={
        "problem": "saddle-quartic"})["axes"][0, 0].get_ylabel()
    assert "(over the logged rows)" not in plot.plot_file(results, tmp_path / "g.png", ys=("G",), where={
        "problem": "logreg-nonconvex"})["axes"][0, 0].get_ylabel()
    # --log-x on the iteration axis alone: symlog from 0, no empty negative half
    fig = plot.plot_file(results, tmp_path / "l.png", ys=("loss",), log_x=True, where={"algorithm": "gd"})
    assert fig["axes"][0, 0].get_xscale() == "symlog" and fig["axes"][0, 0].get_xlim()[0] == 0


def test_x_axis_is_the_median_over_seeds(results, tmp_path):
    """Wall time differs between seeds: a point's x is the seeds' median, not the first seed's."""
    fig = plot.plot_file(results, tmp_path / "w.png", x="wall_time", ys=("loss",), where={"algorithm": "gd"})
    runs = list(plot.load_groups(results, ("loss", "wall_time"), {"algorithm": "gd"}).values())[0]
    want = np.median(np.stack([r["wall_time"] for r in runs]), axis=0)
    np.testing.assert_array_equal(fig["axes"][0, 0].get_lines()[0].get_xdata(), want)


def test_many_methods_get_a_colour_and_dash_pair_each(tmp_path):
    """More methods than colours: the dash moves on each time the colours wrap, so no two lines share both."""
    out = tmp_path / "many.h5"
    for k in range(1, 24):
        cgdbench.run(cgdbench.RunConfig(algorithm="det-cgd1", compressor=f"rand-k:{k}", stepsize="diag-inv",
                                        clients=1, iters=3), out=out)
    fig = plot.plot_file(out, tmp_path / "m.png", ys=("loss",))
    lines = fig["axes"][0, 0].get_lines()
    assert len(lines) == 23 and len({(ln.get_color(), ln.get_linestyle()) for ln in lines}) == 23
    # the legend (long labels wrap, one column) stays on the canvas
    f = fig["axes"][0, 0].figure
    f.canvas.draw()
    box = f.legends[0].get_window_extent()
    assert box.x0 >= 0 and box.x1 <= f.bbox.width and box.y0 >= 0


def test_report_target_and_warnings(mixed, tmp_path):
    """The report's "to ε²" target is the runs' common ε² unless given; each warning is listed once."""
    from cgdbench import sweep
    runs = [store.read_run(mixed, i) for i in store.list_runs(mixed)]
    # only some runs have an ε² (the least-squares ones): not shared, so the default
    assert sweep.default_target([r["config"] for r in runs]) == (1e-2, "the default; --target sets another")
    ls = [r["config"] for r in runs if r["config"]["problem"] == "least-squares"]
    assert sweep.default_target(ls) == (1e-3, "the ε² (--eps2) every run shares")
    # compare on a grid without [compare] target uses the same rule: its table and the report agree
    assert sweep.expand({"problem": "least-squares", "algorithm": "dcgd", "compressor": "rand-1",
                         "stepsize": "matrix-smoothness", "eps2": 1e-3, "clients": 2, "iters": 5}).target == 1e-3
    page = tmp_path / "r.html"
    report.write_report(mixed, page)
    text = page.read_text()
    assert "running mean of ‖∇f‖²_D is ≤ ε² = 0.01 (the default; --target sets another)" in text
    warned = [w for r in runs for w in r["meta"].get("warnings", [])]
    assert text.count("<li>") == len(set(warned))
    # two seeds of a stepsize that violates its condition: the same warning, listed once for both runs
    bad = tmp_path / "bad.h5"
    for seed in (0, 1):
        cgdbench.run(cgdbench.RunConfig(algorithm="det-cgd1", compressor="rand-1", stepsize="scalar:1000",
                                        clients=2, iters=20, seed=seed), out=bad)
    report.write_report(bad, page)
    text = page.read_text()
    assert text.count("violates the stepsize condition (7)") == 1 and "(2 runs: " in text
    report.write_report(mixed, page, target=0.5)
    assert "ε² = 0.5 (--target)" in page.read_text()


def test_reference_level_and_the_d21_suite_figure(results, tmp_path):
    """A suite's ε² is drawn as a level on its G panels and named in the legend (detcgd-distributed: the
    paper's Figure 1, G_{K,D} against iterations and bits)."""
    from cgdbench import suites
    fig = plot.plot_file(results, tmp_path / "h.png", x=("iteration", "bits_up"), ys=("G",),
                         hlines={"G": (1e-4, "ε² = 0.0001 (the target)")}, where={"problem": "logreg-nonconvex"})
    for ax in fig["axes"][0]:
        assert any(list(ln.get_ydata()) == [1e-4, 1e-4] for ln in ax.get_lines())
    assert "ε² = 0.0001 (the target)" in [t.get_text() for t in fig["axes"][0, 0].figure.legends[0].get_texts()]
    sw = suites.make("detcgd-distributed", seeds=1, iters=10)
    assert sw.figure["ys"] == ("G",) and sw.figure["target_on"] == ("G",) and sw.target == 1e-4
