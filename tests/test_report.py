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
    assert dom.count("data:image/png;base64,") == 2 and dom.count("<tr>") == 1 + 5
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    assert img[..., :3].std() > 0.05  # text, tables and figures, not a blank page
