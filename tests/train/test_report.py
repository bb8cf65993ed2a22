"""The end-of-run summary table and curves.png."""
import math
import os
import sys

import numpy as np
import pytest

from distrain.errors import ArgumentError
from distrain.train import report
from distrain.train.report import plot_curves, summary_table

TWO_RANKS = {"ranks": 2, "steps": 500, "epochs": 10, "seconds": 3725.04, "accuracy": 0.97778,
             "best_accuracy": 0.98056, "best_step": 450, "samples_per_s_per_rank": [1534.26, 1530.01],
             "compute_s_per_rank": [38.0, 37.0], "comm_wait_s_per_rank": [2.0, 3.0]}


def test_summary_table_rounds_as_documented():
    table = summary_table(TWO_RANKS)
    lines = table.splitlines()
    assert lines[:6] == ["Run summary",
                         "  final accuracy  97.78%",
                         "  best accuracy   98.06% (step 450)",
                         "  steps           500",
                         "  epochs          10",
                         "  wall time       1:02:05 (3725.0 s)"]
    assert lines[7:11] == ["   rank  samples/s  compute s  comm wait s",
                           "      0     1534.3       38.0          2.0",
                           "      1     1530.0       37.0          3.0",
                           "  total     3064.3"]  # 1534.26 + 1530.01


def test_asynchronous_training_shows_each_ranks_staleness_and_the_whole_jobs():
    table = summary_table({**TWO_RANKS, "staleness_bound": math.inf, "staleness_mean_per_rank": [0.875, 1.5],
                           "staleness_max_per_rank": [2, 4]})
    lines = table.splitlines()
    assert lines[6] == "  staleness       mean 1.19, max 4 (asynchronous, K = inf)"  # (0.875 + 1.5) / 2
    assert lines[8:11] == ["   rank  samples/s  compute s  comm wait s  staleness mean  staleness max",
                           "      0     1534.3       38.0          2.0            0.88              2",
                           "      1     1530.0       37.0          3.0            1.50              4"]
    assert "K = 2)" in summary_table({**TWO_RANKS, "staleness_bound": 2, "staleness_mean_per_rank": [1.0, 1.0],
                                      "staleness_max_per_rank": [1, 1]})
    assert "staleness" not in summary_table(TWO_RANKS)  # synchronous training: nothing about it


def test_scaling_efficiency_estimate_is_the_share_not_spent_waiting_for_communication():
    table = summary_table(TWO_RANKS)
    # (38 + 37) / (38 + 37 + 2 + 3) = 75 / 80
    assert "  scaling efficiency  93.8% (estimate: compute / (compute + exposed communication wait)," in table
    assert "summed over the 2 ranks; a 1-rank run of the same job measures it)" in table


def test_scaling_efficiency_measured_against_one_rank_when_given():
    table = summary_table({**TWO_RANKS, "single_rank_samples_per_s": 1700.0})
    # 3064.27 / (2 x 1700) = 0.90131...
    assert "  scaling efficiency  90.1% (measured: 3064.3 samples/s / (2 x 1700.0 samples/s of 1 rank))" in table
    assert "estimate" not in table


def test_one_rank_has_no_efficiency_and_no_total():
    table = summary_table({"ranks": 1, "steps": 20, "seconds": 1.25, "samples_per_s_per_rank": [99.96]})
    assert table.splitlines() == ["Run summary", "  steps      20", "  wall time  0:01 (1.2 s)", "",
                                  "  rank  samples/s", "     0      100.0"]


def test_summary_table_names_what_is_missing_or_mismatched():
    with pytest.raises(ArgumentError, match="results lack seconds, samples_per_s_per_rank"):
        summary_table({"ranks": 2, "steps": 5})
    with pytest.raises(ArgumentError, match=r"results\['comm_wait_s_per_rank'\] has 1 values for 2 ranks"):
        summary_table({**TWO_RANKS, "comm_wait_s_per_rank": [1.0]})


def synthetic_metrics(steps=500, seed=0):
    """A run as the trainer writes it: a noisy decaying loss, accuracy rising to 0.98 every 50 steps."""
    rng = np.random.default_rng(seed)
    metrics = []
    for step in range(1, steps + 1):
        loss = (2.3 * math.exp(-step / 60) + 0.01) * math.exp(rng.normal(0, 0.3))
        metrics.append({"kind": "train", "step": step, "epoch": step // 50, "loss": loss, "lr": 0.1,
                        "samples_per_s": 1500.0})
        if step % 50 == 0:
            metrics.append({"kind": "eval", "step": step, "epoch": step // 50,
                            "accuracy": 0.98 - 0.88 * math.exp(-step / 70)})
    metrics.append({"kind": "train", "step": steps + 1, "loss": float("nan"), "lr": 0.1, "samples_per_s": 1.0})
    return metrics


def test_plot_curves_writes_a_1200_by_500_png(tmp_path):
    import matplotlib.image
    path = tmp_path / "curves.png"
    pyplot_before = "matplotlib.pyplot" in sys.modules
    assert plot_curves(synthetic_metrics(), path) is True
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape == (500, 1200, 4)
    assert os.listdir(tmp_path) == ["curves.png"]  # written through a temporary, none left
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before  # the user's backend choice is left alone


def test_plot_curves_returns_false_and_writes_nothing_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert plot_curves(synthetic_metrics(), tmp_path / "curves.png") is False
    assert os.listdir(tmp_path) == []


def axes():
    from matplotlib.figure import Figure
    return Figure().subplots()


@pytest.mark.parametrize("span, scale", [(99.0, "linear"), (101.0, "log")])
def test_loss_axis_is_logarithmic_when_the_loss_spans_more_than_two_decades(span, scale):
    loss_axes = axes()
    report._plot_loss(loss_axes, [(1, span), (2, 3.0), (3, 1.0)])
    assert loss_axes.get_yscale() == scale
    raw, smoothed = loss_axes.get_lines()
    assert list(raw.get_ydata()) == [span, 3.0, 1.0]


def test_accuracy_panel_is_in_percent_with_the_best_named():
    accuracy_axes = axes()
    report._plot_accuracy(accuracy_axes, [(50, 90.0), (100, 98.5), (150, 98.5), (200, 97.25)])
    line, best = accuracy_axes.get_lines()
    assert list(line.get_ydata()) == [90.0, 98.5, 98.5, 97.25]
    assert (list(best.get_xdata()), list(best.get_ydata())) == ([100], [98.5])  # the first of equal bests
    legend = [text.get_text() for text in accuracy_axes.get_legend().get_texts()]
    assert legend == ["eval accuracy", "best 98.50% (step 100)"]
    assert accuracy_axes.get_title() == "Evaluation accuracy (final 97.25%)"


def test_accuracy_axis_stops_at_101_percent():
    accuracy_axes = axes()
    report._plot_accuracy(accuracy_axes, [(50, 50.0), (100, 100.0)])
    assert accuracy_axes.get_ylim()[1] == 101.0  # not matplotlib's 102.5


def test_smoothing_follows_a_constant_and_a_ramp_without_lag():
    assert report._moving_average([0.7] * 200) == pytest.approx([0.7] * 200, rel=1e-12)
    values = [float(step % 2) for step in range(400)]  # 0, 1, 0, 1, ...: the average is 1/2, ends included
    assert report._moving_average(values)[0] == pytest.approx(0.5, abs=0.1)
    assert report._moving_average(values)[-1] == pytest.approx(0.5, abs=0.1)
    ramp = [float(step) for step in range(400)]  # a centred window lies on a straight line (a trailing one lags)
    assert report._moving_average(ramp)[20:380] == pytest.approx(ramp[20:380], abs=1e-9)
