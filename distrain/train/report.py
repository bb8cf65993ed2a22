"""What a run leaves for a person at its end: the summary table it prints and run_dir/curves.png.

Both take plain data (a dict the trainer fills, the lines of metrics.jsonl), so they can also
be run later on the files of a finished run::

    from distrain.train.metrics import read_metrics
    from distrain.train.report import plot_curves
    plot_curves(read_metrics("runs/digits"), "runs/digits/curves.png")
"""
from __future__ import annotations

import math

from ..durable import replace_file
from ..errors import ArgumentError
from .progress import duration_text

_REQUIRED = ("ranks", "steps", "seconds", "samples_per_s_per_rank")
_PER_RANK = ("samples_per_s_per_rank", "compute_s_per_rank", "comm_wait_s_per_rank", "data_wait_s_per_rank",
             "staleness_mean_per_rank", "staleness_max_per_rank")


def summary_table(results) -> str:
    """The end-of-run table: accuracy, steps, time, samples/s per rank and in total, scaling efficiency.

    `results` is a plain dict:
        ranks: the number of ranks n.
        steps: optimizer steps taken; epochs (optional): epochs run (an int, or a float for a part).
        seconds: wall time of the training, seconds.
        accuracy, best_accuracy (optional): the final and the best eval accuracy, fractions
            in [0, 1]; best_step (optional): the step of the best one.
        samples_per_s_per_rank: n numbers, rank 0 first; the total is their sum.
        compute_s_per_rank, comm_wait_s_per_rank, data_wait_s_per_rank (optional): per rank,
            the seconds spent computing (forward, backward, optimizer: step time without
            the two waits), waiting for communication that did not overlap computation, and
            waiting for the loader.
        single_rank_samples_per_s (optional): samples/s of a 1-rank run of the same job.
        staleness_bound, staleness_mean_per_rank, staleness_max_per_rank (optional, asynchronous
            parameter-server training): K (an int, or math.inf) and, per rank, the mean and the
            largest staleness of its gradients (train/asynchronous.py).

    Scaling efficiency (n > 1) is total samples/s / (n x single_rank_samples_per_s) when that
    was measured. Otherwise it is estimated as the share of the ranks' step time not spent
    waiting for communication, sum(compute) / sum(compute + comm wait): what the job would
    reach if one rank ran its steps at this job's compute speed; the table says which it is.
    Percentages are rounded to 2 decimals (efficiency 1), samples/s and seconds to 1.

    Example::

        print(summary_table({"ranks": 1, "steps": 500, "seconds": 12.5, "accuracy": 0.978,
                             "samples_per_s_per_rank": [2560.0]}))
    """
    _check(results)
    ranks = results["ranks"]
    lines = ["Run summary"]
    facts = []
    if results.get("accuracy") is not None:
        facts.append(("final accuracy", _percent(results["accuracy"], 2)))
    if results.get("best_accuracy") is not None:
        best_step = results.get("best_step")
        facts.append(("best accuracy", _percent(results["best_accuracy"], 2)
                      + ("" if best_step is None else f" (step {best_step})")))
    facts.append(("steps", str(results["steps"])))
    if results.get("epochs") is not None:
        facts.append(("epochs", f"{results['epochs']:g}"))
    facts.append(("wall time", f"{duration_text(results['seconds'])} ({results['seconds']:.1f} s)"))
    if results.get("staleness_mean_per_rank") is not None:
        facts.append(("staleness", _staleness_text(results)))
    lines += _aligned(facts, right=False)
    lines.append("")
    lines += _aligned(_rank_rows(results), right=True)
    if ranks > 1:
        first, *more = _efficiency(results)
        label = "scaling efficiency"
        lines += ["", f"  {label}  {first}"] + [" " * (len(label) + 4) + line for line in more]
    return "\n".join(lines)


def _staleness_text(results):
    """'mean 0.98, max 2 (asynchronous, K = 2)': over every rank's gradients (each rank takes every step)."""
    means = [mean for mean in results["staleness_mean_per_rank"] if not math.isnan(mean)]
    mean = sum(means) / len(means) if means else math.nan
    bound = results.get("staleness_bound")
    bound = "" if bound is None else f", K = {'inf' if bound == math.inf else bound}"
    return f"mean {mean:.2f}, max {max(results['staleness_max_per_rank'])} (asynchronous{bound})"


def _rank_rows(results):
    columns = [("samples/s", "samples_per_s_per_rank", ".1f"), ("compute s", "compute_s_per_rank", ".1f"),
               ("comm wait s", "comm_wait_s_per_rank", ".1f"), ("data wait s", "data_wait_s_per_rank", ".1f"),
               ("staleness mean", "staleness_mean_per_rank", ".2f"),
               ("staleness max", "staleness_max_per_rank", "d")]
    columns = [column for column in columns if results.get(column[1]) is not None]
    rows = [("rank",) + tuple(title for title, _, _ in columns)]
    for rank in range(results["ranks"]):
        rows.append((str(rank),) + tuple(format(results[key][rank], form) for _, key, form in columns))
    if results["ranks"] > 1:
        rows.append(("total", f"{sum(results['samples_per_s_per_rank']):.1f}") + ("",) * (len(columns) - 1))
    return rows


def _efficiency(results):
    """The efficiency's value and how it was found, as lines of text."""
    ranks, total = results["ranks"], sum(results["samples_per_s_per_rank"])
    single = results.get("single_rank_samples_per_s")
    if single is not None:
        return [f"{_percent(total / (ranks * single), 1)} (measured: {total:.1f} samples/s / "
                f"({ranks} x {single:.1f} samples/s of 1 rank))"]
    compute, comm_wait = results.get("compute_s_per_rank"), results.get("comm_wait_s_per_rank")
    if compute is None or comm_wait is None or sum(compute) + sum(comm_wait) <= 0:
        return ["unknown (neither a 1-rank run's samples/s nor compute and communication times)"]
    share = sum(compute) / (sum(compute) + sum(comm_wait))
    return [f"{_percent(share, 1)} (estimate: compute / (compute + exposed communication wait),",
            f"summed over the {ranks} ranks; a 1-rank run of the same job measures it)"]


def _check(results):
    missing = [key for key in _REQUIRED if results.get(key) is None]
    if missing:
        raise ArgumentError(f"summary_table: results lack {', '.join(missing)}; it needs {', '.join(_REQUIRED)} "
                            "(see its docstring for the optional keys)")
    for key in _PER_RANK:
        values = results.get(key)
        if values is not None and len(values) != results["ranks"]:
            raise ArgumentError(f"summary_table: results['{key}'] has {len(values)} values for "
                                f"{results['ranks']} ranks; give one per rank, rank 0 first")


def _aligned(rows, right):
    """Rows of cells as text lines, each column as wide as its widest cell (numbers right-aligned)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    if right:
        return ["  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return ["  " + "  ".join((cell.ljust(width) if column == 0 else cell)
                             for column, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _percent(fraction, decimals):
    return f"{100 * fraction:.{decimals}f}%"


def plot_curves(metrics, path, *, title=None) -> bool:
    """Write `path` (run_dir/curves.png): training loss and eval accuracy against step.

    `metrics` are the lines of metrics.jsonl (`read_metrics`). Left: the loss of every step,
    light, with a smoothed line over it (a centred moving average over about a 20th of the
    run), on a log axis when the loss spans more than two decades. Right: the eval
    accuracy in percent, one marker per evaluation, the best one annotated. Non-finite
    losses are left out. The file is written atomically (a crash leaves the old picture).

    Returns False and writes nothing when matplotlib is not installed (the trainer says so);
    matplotlib's global backend is left alone (no pyplot: the figure renders itself with Agg).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    losses = [(record["step"], float(record["loss"])) for record in metrics
              if record.get("kind") == "train" and _is_finite(record.get("loss"))]
    accuracies = [(record["step"], 100.0 * float(record["accuracy"])) for record in metrics
                  if record.get("kind") == "eval" and _is_finite(record.get("accuracy"))]
    figure = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2, sharex=True)  # one step scale: compare the panels by eye
    _plot_loss(loss_axes, losses)
    _plot_accuracy(accuracy_axes, accuracies)
    if title:
        figure.suptitle(title)
    replace_file(path, lambda file: figure.savefig(file, format="png"))
    return True


def _plot_loss(axes, losses):
    axes.set_title("Training loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(True, which="major", alpha=0.4)
    if not losses:
        _say_empty(axes, "no training steps recorded")
        return
    steps, values = zip(*losses)
    logarithmic = min(values) > 0 and max(values) / min(values) > 100
    if logarithmic:
        axes.set_yscale("log")
        axes.grid(True, which="minor", alpha=0.15)
        smoothed = [math.exp(value) for value in _moving_average([math.log(value) for value in values])]
    else:
        smoothed = _moving_average(values)
    axes.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8, label="every step")
    axes.plot(steps, smoothed, color="tab:blue", linewidth=2.0, label="smoothed")
    axes.legend(loc="upper right")


def _plot_accuracy(axes, accuracies):
    axes.set_xlabel("step")
    axes.set_ylabel("accuracy (%)")
    axes.grid(True, alpha=0.4)
    if not accuracies:
        axes.set_title("Evaluation accuracy")
        _say_empty(axes, "no evaluation recorded")
        return
    steps, values = zip(*accuracies)
    axes.set_title(f"Evaluation accuracy (final {values[-1]:.2f}%)")
    axes.plot(steps, values, color="tab:green", marker="o", markersize=4, linewidth=1.5, label="eval accuracy")
    best = max(range(len(values)), key=values.__getitem__)  # the first of equal bests
    # The best point is ringed and named in the legend, which matplotlib places where the curve
    # is not (text beside the point would cross the curve).
    axes.plot([steps[best]], [values[best]], marker="o", markersize=10, markerfacecolor="none",
              markeredgecolor="tab:red", markeredgewidth=1.5, linestyle="none",
              label=f"best {values[best]:.2f}% (step {steps[best]})")
    axes.legend(loc="best")
    bottom, top = axes.get_ylim()
    axes.set_ylim(max(bottom, 0.0), min(top, 101.0))  # matplotlib's margins would show 102%, or -2%


def _say_empty(axes, text):
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="gray")


def _moving_average(values):
    """A centred moving average over about len/20 points (clipped at the ends): it goes through the data.

    A trailing average (an exponential one) lags behind a falling loss and draws the curve
    above the points it summarises.
    """
    half = max(1, len(values) // 20) // 2
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    averaged = []
    for index in range(len(values)):
        low, high = max(0, index - half), min(len(values), index + half + 1)  # clipped at the ends
        averaged.append((sums[high] - sums[low]) / (high - low))
    return averaged


def _is_finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
