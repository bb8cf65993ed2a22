"""The trainer (distrain.train) beside a hand-written distrain loop, and beside PyTorch, in one run.

    python benchmarks/bench_trainer.py              # both parts, ~5 minutes on 2 cores: table + one JSON line per case
    python benchmarks/bench_trainer.py --quick      # a sanity run of about 2 minutes
    python benchmarks/bench_trainer.py --record     # also append the JSON lines to benchmarks/results/
    python benchmarks/bench_trainer.py --only resnet   # cases whose name contains the text (overhead, cnn, 2rank, ...)

Part 1, the trainer's step overhead (target: at most 2% slower than the hand-written loop).
The Trainer runs its real loop (metrics.jsonl lines every step, TensorBoard as configured,
the plain progress display, which prints nothing until the end, no timeline) for `steps`
optimizer steps of the default job (cnn on digits, batch 32, Adam, cosine schedule,
workers=0), with evaluation and checkpoints set beyond the run so that none falls inside
it; once with the defaults (TensorBoard on) and once with tensorboard=false, which shows
TensorBoard's share. Beside them, the loop a user writes with distrain: the same model and
seed (so the same initial weights), the same shard data, DistributedSampler and DataLoader
settings, the same lr schedule, and loss.item() every step. All are timed over their whole
loop (first batch to last update: the trainer's own `seconds`), per step, in one process,
the order rotating every round; `paired_ratio_median` is the median over rounds of the
ratio of runs seconds apart. They compute the same thing: the script checks that the
hand-written losses equal the trainer's metrics.jsonl bit for bit (`same_losses`).

Part 2, samples/s against PyTorch (target: distrain >= 1.0x with 2 ranks). Each case runs
the trainer through the launcher (`python -m distrain.launch -n R --set ...`, MPI backend)
and the same job in PyTorch, started by this script: a plain loop for 1 rank, DDP over gloo
(localhost TCP store) for 2. Same model (torch layers with distrain's parameter names,
loaded strictly with distrain's initial weights), same data (the trainer's shard cache,
read into memory and batched by torch's DataLoader over its DistributedSampler), same batch
per rank, Adam with the same lr and schedule, DDP's defaults on both sides (25 MB buckets,
buffers broadcast every forward). A step is timed alike on both sides, from asking for the
batch to the end of the optimizer and scheduler steps (the trainer's step_s in rank 0's
metrics.jsonl); the first steps of every run (warm-up) are left out. samples/s = ranks x
batch / median step time. Runs alternate distrain / PyTorch, the first of each pair rotating.

Threads, the same for both peers (OPENBLAS/OMP/MKL_NUM_THREADS, and torch.set_num_threads):
1 per rank with 2 ranks on 2 cores, all cores for 1 rank; part 1 uses --overhead-threads
(default 1: on a shared 2-core machine two BLAS threads are at the mercy of any other
process; measured: the cnn's step 5-30 ms instead of 5 ms).
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]  # this checkout's distrain, here and (PYTHONPATH) in every process started
import harness  # stdlib only

RESULTS_DIR = os.path.join(HERE, "results")
NEVER = 10 ** 9  # eval_every / checkpoint_every / print_every beyond any run: nothing of the kind inside it
QUIET = [f"eval_every={NEVER}", f"checkpoint_every={NEVER}", f"print_every={NEVER}", "plot=false"]
RUN_TIMEOUT_SECONDS = 600
# part 1's trainer runs: as configured by default (TensorBoard on when tensorboardX is installed), and without
# TensorBoard, which shows its share of the overhead
OVERHEAD_VARIANTS = {"trainer_overhead": [], "trainer_overhead_no_tensorboard": ["tensorboard=false"]}


@dataclass(frozen=True)
class Job:
    """One training job: the trainer's --set assignments, the batch per rank, and how long each run is."""

    name: str
    assignments: tuple
    batch: int
    steps: int  # optimizer steps per run
    warmup: int  # first steps of each run left out of the statistics
    rounds: int  # distrain/PyTorch pairs of runs


def jobs(quick):
    cifar = ("model=resnet18", "model_args.stem=cifar", "dataset=synthetic", "synthetic.shape=[3, 32, 32]",
             "synthetic.classes=10", "synthetic.samples=1024", "synthetic.eval_samples=64")
    return [Job("cnn_digits", ("model=cnn", "dataset=digits"), 32, 100 if quick else 300, 10, 1 if quick else 4),
            Job("resnet18_cifar", cifar, 16, 5 if quick else 12, 2, 1 if quick else 3)]


def assignments(job, steps, run_dir):
    return [*job.assignments, f"batch_size={job.batch}", f"steps={steps}", f"run_dir={run_dir}", *QUIET]


def schedule(config, total_steps):
    """The trainer's lr factor per step (a pure function of the step: the same cost in any loop), so the
    losses of the loops can be compared bit for bit."""
    from distrain.train.optimization import LearningRateFactor

    return LearningRateFactor(config["schedule"], config["warmup_steps"], total_steps)


def thread_environment(threads):
    environment = {name: value for name, value in os.environ.items() if name != "DISTRAIN_TIMELINE"}
    environment.update({variable: str(threads) for variable in harness.BLAS_THREAD_VARIABLES})
    environment["DISTRAIN_INTERACTIVE"] = "0"
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    return environment


# ---------------------------------------------------------------- part 1: in one process (--worker overhead)
def overhead_worker(spec):
    import numpy

    import distrain
    import distrain.distributed as dist
    from distrain.data import DataLoader, DistributedSampler
    from distrain.train import load_config, train
    from distrain.train.datasets import build
    from distrain.train.metrics import read_metrics

    job, steps = Job(**spec["job"]), spec["steps"]
    comm = dist.init()
    scratch = tempfile.mkdtemp(prefix="bench-trainer-")

    def trainer_run(extra):
        run_dir = tempfile.mkdtemp(dir=scratch)
        config = load_config(assignments=assignments(job, steps, run_dir) + extra)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            seconds = train(config, comm=comm)["seconds"]
        losses = [line["loss"] for line in read_metrics(run_dir) if line["kind"] == "train"]
        shutil.rmtree(run_dir)
        return seconds, losses

    def handwritten_run():
        config = load_config(assignments=assignments(job, steps, scratch))
        splits = build(config)
        distrain.manual_seed(config["seed"])
        model = distrain.models.create(config["model"], input_shape=splits.input_shape, num_classes=splits.classes,
                                       **config["model_args"])
        optimizer = distrain.optim.Adam(model.parameters(), lr=config["lr"])
        scheduler = distrain.optim.lr_scheduler.LambdaLR(optimizer, schedule(config, steps))
        sampler = DistributedSampler(splits.train, num_replicas=1, rank=0, shuffle=True, seed=config["seed"],
                                     drop_last=True)
        loader = DataLoader(splits.train, batch_size=job.batch, sampler=sampler, num_workers=config["workers"],
                            drop_last=True)
        losses, epoch = [], 0
        started = time.perf_counter()
        while len(losses) < steps:
            sampler.set_epoch(epoch)
            for inputs, labels in loader:
                loss = distrain.nn.functional.cross_entropy(model(inputs), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
                losses.append(loss.item())
                if len(losses) == steps:
                    break
            epoch += 1
        return time.perf_counter() - started, losses

    runs = {name: lambda extra=extra: trainer_run(extra) for name, extra in OVERHEAD_VARIANTS.items()}
    runs["handwritten"] = handwritten_run
    first = {name: run()[1] for name, run in runs.items()}  # warm-up, and the losses to compare
    per_step = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(spec["rounds"]):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            per_step[name].append(runs[name]()[0] / steps)
    shutil.rmtree(scratch, ignore_errors=True)
    same = {name: bool(numpy.array_equal(numpy.array(first[name]), numpy.array(first["handwritten"])))
            for name in OVERHEAD_VARIANTS}
    with open(spec["out"], "w") as out:
        json.dump({"per_step_s": per_step, "same_losses": same}, out)


def overhead_case(job, args, scratch):
    steps, rounds = (100, 3) if args.quick else (150, 20)
    out = os.path.join(scratch, "overhead.json")
    spec = {"job": job.__dict__, "steps": steps, "rounds": rounds, "out": out}
    load_before = os.getloadavg()
    run_processes([[sys.executable, __file__, "--worker", "overhead", "--spec", json.dumps(spec)]],
                  thread_environment(args.overhead_threads), os.path.join(scratch, "overhead.log"))
    with open(out) as file:
        measured = json.load(file)
    results = []
    for variant, extra in OVERHEAD_VARIANTS.items():
        result = summary(f"{variant}_{job.name}", measured["per_step_s"][variant],
                         measured["per_step_s"]["handwritten"], target=1.02, peer="hand-written distrain loop",
                         ranks=1, batch=job.batch, threads=args.overhead_threads, load=(load_before, os.getloadavg()))
        result["same_losses"] = measured["same_losses"][variant]
        pairs = zip(measured["per_step_s"][variant], measured["per_step_s"]["handwritten"])  # one round's runs
        result["paired_ratio_median"] = round(statistics.median(mine / theirs for mine, theirs in pairs), 4)
        result["note"] = (f"Trainer ({' '.join(extra) or 'default settings'}) vs hand-written distrain loop, per step "
                          f"over whole {steps}-step runs ({rounds} runs each); same_losses: identical loss every step")
        results.append(result)
    return results


# ---------------------------------------------------------------- part 2: PyTorch's side (--worker torch)
def torch_cnn(nn, in_channels, size, classes, width=32):
    """distrain.models.cnn in torch layers, with its parameter names (features.i.0/1, classifier)."""
    from collections import OrderedDict

    from distrain.models.cnn import SMALLEST_MAP

    def block(inputs, outputs, stride):
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                             nn.BatchNorm2d(outputs), nn.ReLU())

    blocks = [block(in_channels, width, 1)]
    while size > SMALLEST_MAP:
        blocks.append(block(width, 2 * width, 2))
        width, size = 2 * width, (size + 1) // 2
    return nn.Sequential(OrderedDict(features=nn.Sequential(*blocks), pool=nn.AdaptiveAvgPool2d(1),
                                     flatten=nn.Flatten(), classifier=nn.Linear(width, classes)))


def torch_model(torch, config, splits):
    """The torch twin of the configured model, holding the distrain model's initial weights (strict load)."""
    import numpy

    import distrain

    distrain.manual_seed(config["seed"])
    reference = distrain.models.create(config["model"], input_shape=splits.input_shape, num_classes=splits.classes,
                                       **config["model_args"])
    channels, height, width = splits.input_shape
    if config["model"] == "cnn":
        model = torch_cnn(torch.nn, channels, min(height, width), splits.classes)
    else:
        sys.path.insert(0, os.path.join(REPO, "tests", "models"))
        from torchvision_twin import TwinResNet

        model = TwinResNet(config["model"], num_classes=splits.classes, stem=config["model_args"]["stem"],
                           in_channels=channels)
    model.load_state_dict({name: torch.from_numpy(numpy.array(value.numpy()))
                           for name, value in reference.state_dict().items()}, strict=True)
    return model


def torch_worker(spec):
    import datetime

    import numpy
    import torch

    from distrain.train import load_config
    from distrain.train.datasets import build

    torch.set_num_threads(spec["threads"])
    job, steps, rank, world = Job(**spec["job"]), spec["steps"], spec["rank"], spec["world"]
    config = load_config(assignments=assignments(job, steps, spec["out"]))
    splits = build(config)
    images, labels = splits.train.get_batch(numpy.arange(len(splits.train)))
    model = torch_model(torch, config, splits)
    forward = model
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{spec['port']}", rank=rank,
                                             world_size=world, timeout=datetime.timedelta(seconds=120))
        forward = torch.nn.parallel.DistributedDataParallel(model)

    class Batches(torch.utils.data.Dataset):  # a list of indices in, a batch out: one fancy index per field
        def __init__(self):
            self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, indices):
            return self.images[indices], self.labels[indices]

    dataset = Batches()
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=config["seed"], drop_last=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=config["workers"],
                                         sampler=torch.utils.data.BatchSampler(sampler, job.batch, drop_last=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config, steps))
    step_seconds, losses, epoch = [], [], 0
    while len(step_seconds) < steps:
        sampler.set_epoch(epoch)
        batches = iter(loader)
        while len(step_seconds) < steps:
            started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            loss = torch.nn.functional.cross_entropy(forward(batch[0]), batch[1])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            step_seconds.append(time.perf_counter() - started)
            losses.append(loss.detach())
        epoch += 1
    if rank == 0:
        with open(os.path.join(spec["out"], "torch.json"), "w") as out:
            json.dump({"step_s": step_seconds, "loss": [float(loss) for loss in losses]}, out)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        sys.stdout.flush()
        os._exit(0)  # measured: gloo's threads sometimes abort the interpreter's exit ("terminate called ...")


# ---------------------------------------------------------------- part 2: the runs and the statistics
def run_processes(commands, environment, log_path, timeout=RUN_TIMEOUT_SECONDS):
    """Run the commands together (each in a process group of its own); all must exit 0 within `timeout`."""
    with open(log_path, "w") as log:
        processes = [subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True) for command in commands]
        deadline = time.monotonic() + timeout
        try:
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            for process in processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    codes = [process.returncode for process in processes]
    if any(codes):
        with open(log_path) as log:
            tail = log.read()[-4000:]
        raise RuntimeError(f"bench_trainer: {commands[0][:6]}... exited with {codes} (timeout {timeout} s); "
                           f"the end of {log_path}:\n{tail}")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def distrain_run(job, ranks, threads, scratch):
    """Rank 0's per-step seconds (and communication waits) of one trainer run under the launcher."""
    from distrain.train.metrics import read_metrics

    run_dir = tempfile.mkdtemp(dir=scratch)
    command = [sys.executable, "-m", "distrain.launch", "-n", str(ranks), "--no-prefix"]
    for assignment in assignments(job, job.steps, run_dir):
        command += ["--set", assignment]
    run_processes([command], thread_environment(threads), os.path.join(run_dir, "log.txt"))
    lines = [line for line in read_metrics(run_dir) if line["kind"] == "train"]
    shutil.rmtree(run_dir)
    return [line["step_s"] for line in lines], [line["comm_s"] for line in lines]


def torch_run(job, ranks, threads, scratch):
    run_dir = tempfile.mkdtemp(dir=scratch)
    port = free_port()
    commands = [[sys.executable, __file__, "--worker", "torch", "--spec",
                 json.dumps({"job": job.__dict__, "steps": job.steps, "rank": rank, "world": ranks, "port": port,
                             "threads": threads, "out": run_dir})] for rank in range(ranks)]
    run_processes(commands, thread_environment(threads), os.path.join(run_dir, "log.txt"))
    with open(os.path.join(run_dir, "torch.json")) as file:
        step_seconds = json.load(file)["step_s"]
    shutil.rmtree(run_dir)
    return step_seconds


def throughput_case(job, ranks, scratch):
    threads = max(1, len(os.sched_getaffinity(0)) // ranks)
    times, comm_waits = {"distrain": [], "peer": []}, []
    load_before = os.getloadavg()
    for round_index in range(job.rounds):
        order = ("distrain", "peer") if round_index % 2 == 0 else ("peer", "distrain")
        for name in order:
            if name == "distrain":
                step_seconds, comm_seconds = distrain_run(job, ranks, threads, scratch)
                comm_waits += comm_seconds[job.warmup:]
            else:
                step_seconds = torch_run(job, ranks, threads, scratch)
            times[name] += step_seconds[job.warmup:]
    result = summary(f"trainer_{job.name}_{ranks}rank", times["distrain"], times["peer"],
                     target=1.0 if ranks > 1 else None,
                     peer="PyTorch " + ("DDP (gloo)" if ranks > 1 else "plain loop"), ranks=ranks, batch=job.batch,
                     threads=threads, load=(load_before, os.getloadavg()))
    result["distrain_comm_wait_ms"] = round(statistics.median(comm_waits) * 1e3, 3)
    result["note"] = (f"samples/s of {job.name} ({' '.join(job.assignments)}), {ranks} rank(s) x batch {job.batch}: "
                      f"distrain's trainer (launcher, MPI) vs {result['peer']}; per-step times of rank 0 over "
                      f"{job.rounds} run(s) of {job.steps} steps each, first {job.warmup} left out")
    return result


def summary(name, distrain_seconds, peer_seconds, *, target, peer, ranks, batch, threads, load):
    """The result line: medians, p10/p90, ratio distrain/peer of step times (<= target passes), samples/s."""
    result = {"name": name}
    medians = {}
    for label, values in (("distrain", sorted(distrain_seconds)), ("peer", sorted(peer_seconds))):
        medians[label] = statistics.median(values)
        result[f"{label}_ms"] = round(medians[label] * 1e3, 4)
    result["ratio"] = round(medians["distrain"] / medians["peer"], 4)
    result["target"] = target
    result["pass"] = None if target is None else result["ratio"] <= target
    result["peer"] = peer
    for label, values in (("distrain", sorted(distrain_seconds)), ("peer", sorted(peer_seconds))):
        result[f"{label}_p10_ms"] = round(harness.percentile(values, 0.10) * 1e3, 4)
        result[f"{label}_p90_ms"] = round(harness.percentile(values, 0.90) * 1e3, 4)
        result[f"{label}_calls"] = len(values)
        result[f"{label}_samples_per_s"] = round(ranks * batch / medians[label], 2)
    result["samples_per_s_ratio"] = round(medians["peer"] / medians["distrain"], 4)
    result.update(ranks=ranks, batch_per_rank=batch, threads_per_rank=threads,
                  load_average=[round(load[0][0], 2), round(load[1][0], 2)])
    return result


def format_row(result):
    def cell(label):
        return (f"{result[label + '_ms']:.4g} ({result[label + '_p10_ms']:.4g}-{result[label + '_p90_ms']:.4g}) "
                f"{result[label + '_samples_per_s']:.0f}/s").rjust(30)

    target = "-" if result["target"] is None else f"<={result['target']:.2f}"
    verdict = {None: "", True: "PASS", False: "FAIL"}[result["pass"]]
    return (f"{result['name']:<32}{cell('distrain')}{cell('peer')}{result['ratio']:8.3f}"
            f"{result['samples_per_s_ratio']:9.3f}{target:>8}  {verdict}  load {result['load_average']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, one round: a sanity check")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--overhead-threads", type=int, default=1, help="BLAS threads of part 1 (default 1)")
    parser.add_argument("--record", action="store_true",
                        help="append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl")
    parser.add_argument("--worker", choices=["overhead", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        (overhead_worker if args.worker == "overhead" else torch_worker)(json.loads(args.spec))
        return 0
    cases = [(f"trainer_overhead_{job.name}", lambda scratch, job=job: overhead_case(job, args, scratch))
             for job in jobs(args.quick) if job.name == "cnn_digits"]
    cases += [(f"trainer_{job.name}_{ranks}rank", lambda scratch, job=job, ranks=ranks: [throughput_case(
        job, ranks, scratch)]) for job in jobs(args.quick) for ranks in (1, 2)]
    cases = [(name, run) for name, run in cases if not args.only or args.only in name]
    machine = harness.machine_info(1, "env")
    machine["threads"] = "per case: threads_per_rank"
    cores = len(os.sched_getaffinity(0))
    print(f"# {machine['cpu']}, {machine['cores']} cores, numpy {machine['numpy']}, torch {machine['torch']}, "
          f"commit {machine['commit']}, load average {os.getloadavg()[0]:.2f}; BLAS/OpenMP threads per rank, both "
          f"peers: overhead {args.overhead_threads}, 1 rank {cores}, 2 ranks {max(1, cores // 2)}")
    print(f"{'case':<32}{'distrain ms (p10-p90) samples/s':>30}{'peer ms (p10-p90) samples/s':>30}"
          f"{'ratio':>8}{'speed':>9}{'target':>8}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as scratch:
        for name, run in cases:
            for result in run(scratch):
                result["machine"] = machine
                print(format_row(result), flush=True)
                results.append(result)
    print("# ratio = distrain / peer step time (medians; target: at most); speed = distrain / peer samples/s. "
          "Peer: the hand-written distrain loop for the overhead case, PyTorch otherwise")
    for result in results:
        harness.emit_result(result, RESULTS_DIR, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
