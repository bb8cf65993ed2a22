"""python -m distrain.scaling: predict data-parallel step time and scaling efficiency for 1..1024 ranks.

    python -m distrain.scaling                                   # the trainer's CNN here, a 10 Gbit/s link
    python -m distrain.scaling --measure-link --backend mpi      # alpha and beta measured on 2 local ranks
    python -m distrain.scaling --forward-ms 60 --backward-ms 120 --gradient-mb 97.5 \\
        --link-gbit 25 --latency-us 10 --png resnet50.png        # a workload measured elsewhere (a GPU's)

It times one rank's step of a model here (or takes the step you give), prices each gradient
bucket's exchange with the alpha-beta model of the ring and recursive-halving allreduces and
of a parameter server with as many servers as ranks (costs.py), overlaps the exchanges with
backward (overlap.py), and prints a table of step time and efficiency per rank count, and,
with --png, a plot (matplotlib: the viz extra).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from . import fit, model
from .costs import Link

DEFAULT_RANKS = tuple(2 ** k for k in range(11))  # 1 .. 1024


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m distrain.scaling", description=__doc__.split("\n\n")[0])
    what = parser.add_argument_group("the workload (default: measured here)")
    what.add_argument("--model", default="cnn", help="a distrain.models name (default cnn, the trainer's)")
    what.add_argument("--input", default="1,8,8", help="C,H,W of one sample (default 1,8,8: digits)")
    what.add_argument("--classes", type=int, default=10)
    what.add_argument("--batch", type=int, default=64, help="samples per rank per step (default 64)")
    what.add_argument("--forward-ms", type=float, help="give the step instead of measuring it: forward ms ...")
    what.add_argument("--backward-ms", type=float, help="... backward ms ...")
    what.add_argument("--optimizer-ms", type=float, default=0.0, help="... optimizer ms ...")
    what.add_argument("--gradient-mb", type=float, help="... and the gradient's size in MiB")
    what.add_argument("--bucket-mb", type=float, default=25.0, help="DistributedDataParallel's bucket_cap_mb (25)")
    link = parser.add_argument_group("the link (default: 10 Gbit/s, 20 us)")
    link.add_argument("--link-gbit", type=float, default=10.0, help="each rank's bandwidth in Gbit/s")
    link.add_argument("--latency-us", type=float, default=20.0, help="one message's latency in microseconds")
    link.add_argument("--measure-link", action="store_true",
                      help="measure alpha and beta instead: allreduces on --probe-ranks local ranks")
    link.add_argument("--backend", default="ps", choices=["ps", "mpi"], help="for --measure-link (default ps)")
    link.add_argument("--probe-ranks", type=int, default=2, help="for --measure-link (default 2)")
    link.add_argument("--probe-max-mb", type=float, default=64.0, help="for --measure-link: the largest allreduce")
    parser.add_argument("--ranks", default=",".join(map(str, DEFAULT_RANKS)), help="rank counts (1,2,4,...,1024)")
    parser.add_argument("--servers", type=int, help="parameter servers (default: as many as ranks)")
    parser.add_argument("--no-overlap", action="store_true", help="exchanges only after backward")
    parser.add_argument("--png", help="write the efficiency plot here")
    parser.add_argument("--json", help="write the predictions here")
    args = parser.parse_args(argv)
    try:
        ranks = [int(part) for part in args.ranks.split(",")]
        if not ranks or min(ranks) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--ranks must be positive whole numbers separated by commas, got {args.ranks!r}")
    given = [args.forward_ms, args.backward_ms, args.gradient_mb]
    if any(value is not None for value in given) and None in given:
        parser.error("--forward-ms, --backward-ms and --gradient-mb go together (a workload measured elsewhere)")
    if None in given:
        workload = _workload(args)
    else:
        workload = model.Workload(args.forward_ms / 1e3, args.backward_ms / 1e3, args.optimizer_ms / 1e3,
                                  int(args.gradient_mb * 2 ** 20), int(args.bucket_mb * 2 ** 20))
    if args.measure_link:
        try:
            the_link = measured_link(args.backend, args.probe_ranks, int(args.probe_max_mb * 2 ** 20))
        except (OSError, ValueError) as error:
            parser.exit(1, f"python -m distrain.scaling: could not measure the link: {error}\n")
        where = f"measured: {args.probe_ranks} ranks over {args.backend} here"
    else:
        the_link = Link.of(args.latency_us / 1e6, args.link_gbit)
        where = "given"
    rows = {algorithm: model.table(workload, ranks, algorithm, the_link, args.servers, None, not args.no_overlap)
            for algorithm in model.ALGORITHMS}
    print(f"one rank's step: forward {workload.forward_s * 1e3:.3g} ms, backward {workload.backward_s * 1e3:.3g} ms, "
          f"optimizer {workload.optimizer_s * 1e3:.3g} ms; gradient {workload.gradient_bytes / 2 ** 20:.3g} MiB in "
          f"buckets of {workload.bucket_bytes / 2 ** 20:.3g} MiB")
    print(f"link ({where}): {the_link.describe()}")
    print(render(rows, args.servers))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"link": vars(the_link), "workload": vars(workload),
                       "predictions": {name: [vars(row) for row in table] for name, table in rows.items()}},
                      handle, indent=1)
    if args.png:
        plot(rows, args.png, the_link, workload)
        print(f"plot: {args.png}")
    return 0


def _workload(args):
    from .. import models, randn, tensor
    from .measure import compute
    import numpy

    shape = tuple(int(part) for part in args.input.split(","))
    accepts = models.arguments_of(args.model)
    given = {key: value for key, value in (("input_shape", shape), ("num_classes", args.classes)) if key in accepts}
    module = models.create(args.model, **given)
    inputs = randn(args.batch, *shape)
    targets = tensor(numpy.random.default_rng(0).integers(0, args.classes, args.batch))
    return compute(module, inputs, targets, bucket_bytes=args.bucket_mb * 2 ** 20)


def measured_link(backend, ranks, largest_bytes=64 * 2 ** 20):
    """Alpha and beta of this machine's `backend` between `ranks` local ranks (a launcher job of probe.py)."""
    probe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
    result = subprocess.run([sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--backend", backend, probe,
                             str(largest_bytes)],
                            capture_output=True, text=True, timeout=600)
    for line in result.stdout.splitlines():
        if "scaling-probe " in line:
            found = json.loads(line.split("scaling-probe ", 1)[1])
            sizes = [int(size) for size in found["times"]]
            return fit.ring_link(sizes, [found["times"][str(size)] for size in sizes], found["ranks"])
    raise OSError(f"the probe job printed no times (exit {result.returncode}): {result.stderr[-2000:]}")


def render(rows, servers):
    """The predictions as a text table: per rank count, each algorithm's step time and efficiency."""
    names = {"ring": "ring", "halving-doubling": "halving-doubling",
             "ps": "ps, S = ranks" if servers is None else f"ps, S = {servers}"}
    width = 22
    lines = [f"{'ranks':>6}" + "".join(f" | {names[name]:^{width}}" for name in rows),
             f"{'':>6}" + "".join(f" | {'step ms':>12} {'eff.':>9}" for _ in rows)]
    lines.insert(1, "-" * len(lines[0]))
    for index, first in enumerate(next(iter(rows.values()))):
        cells = "".join(f" | {table[index].step_s * 1e3:12.2f} {100 * table[index].efficiency:8.1f}%"
                        for table in rows.values())
        lines.append(f"{first.ranks:>6}{cells}")
    lines.append("efficiency: one rank's step over the N-rank step, each rank keeping its batch")
    return "\n".join(lines)


def plot(rows, path, link, workload):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.2))
    for name, table in rows.items():
        axes.plot([row.ranks for row in table], [100 * row.efficiency for row in table], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_ylim(0, 105)
    axes.set_xlabel("ranks")
    axes.set_ylabel("scaling efficiency (%)")
    axes.set_title(f"{workload.gradient_bytes / 2 ** 20:.3g} MiB gradient, {workload.compute_s * 1e3:.3g} ms step; "
                   f"{link.describe()}", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


if __name__ == "__main__":
    sys.exit(main())
