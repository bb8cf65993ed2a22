"""Exact resume: a training run killed with SIGKILL and continued with --resume takes the uninterrupted run's steps.

The trainer writes a checkpoint every `checkpoint_every` steps (atomically: a kill while
writing leaves the previous one whole). Besides the model and optimizer, a checkpoint
holds the lr schedule, the position inside the epoch, the data order's seed and epoch, and
every random number generator, so `python -m distrain.launch --resume` with the same
run_dir continues as if nothing had happened. metrics.jsonl is cut back to the
checkpoint's step and written again from there. This script shows it with three runs of
the default job (a small CNN on the digits), each a `python -m distrain.launch`
subprocess, as a user would start them:

1. an uninterrupted run of --steps steps: the reference;
2. the same run in another run_dir, killed with SIGKILL (no chance to clean up) soon after
   its checkpoint at step 2 * --checkpoint-every has appeared, in the middle of an epoch;
3. `--resume` of the killed run.

    python examples/resume_after_crash.py [--steps 300] [--checkpoint-every 50] [--ranks 1] [--workdir DIR]

It prints the resumed run's first losses beside the reference's, and whether the loss at
every step equals the uninterrupted run's bit for bit (it does, on the CPU, for any
--ranks; exit code 1 otherwise). The runs write into a new temporary directory unless
--workdir is given.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT_SECONDS = 300  # for each run: never wait on a child forever


def trainer_command(ranks, run_dir, steps, checkpoint_every, *extra):
    command = [sys.executable, "-m", "distrain.launch"] + (["-n", str(ranks)] if ranks > 1 else [])
    for assignment in (f"run_dir={run_dir}", f"steps={steps}", f"checkpoint_every={checkpoint_every}",
                       "print_every=100", "tensorboard=false", "plot=false"):
        command += ["--set", assignment]
    return command + list(extra)


def run_to_the_end(command):
    """Run a trainer command to its end; its output, or exit with it if the run failed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, start_new_session=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit code {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def kill_once_written(command, path):
    """Start a trainer command and kill it (and its ranks) with SIGKILL as soon as `path` exists."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        while not os.path.exists(path):
            if process.poll() is not None:
                sys.exit(f"the run ended (exit code {process.returncode}) before {path} was written; "
                         "give it more --steps")
            if time.monotonic() > deadline:
                sys.exit(f"{path} did not appear within {TIMEOUT_SECONDS} s")
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher, every rank and loader worker: one process group
        process.wait(timeout=30)
    return process.returncode


def train_losses(run_dir):
    """{step: loss} from run_dir/metrics.jsonl."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Kill a trainer run with SIGKILL, resume it, compare the losses.")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--ranks", type=int, default=1, help="ranks per run (python -m distrain.launch -n RANKS)")
    parser.add_argument("--workdir", help="where the two runs write (default: a new temporary directory)")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="distrain_resume_")
    reference, crashed = os.path.join(workdir, "uninterrupted"), os.path.join(workdir, "crashed")

    def command(run_dir, *extra):
        return trainer_command(args.ranks, run_dir, args.steps, args.checkpoint_every, *extra)

    run_to_the_end(command(reference))
    second_checkpoint = os.path.join(crashed, "checkpoints", f"step-{2 * args.checkpoint_every:08d}.dt")
    code = kill_once_written(command(crashed), second_checkpoint)
    print(f"killed the run with SIGKILL (exit code {code}) after its checkpoint of step {2 * args.checkpoint_every}")
    output = run_to_the_end(command(crashed, "--resume"))
    resumed_from = int(re.search(r"resuming from step (\d+)", output).group(1))
    print(f"--resume: {re.search(r'resuming from step .*', output).group(0)}")

    expected, got = train_losses(reference), train_losses(crashed)
    print(f"{'step':>6}  {'uninterrupted loss':>20}  {'killed + resumed loss':>22}")
    for step in range(resumed_from + 1, min(resumed_from + 4, args.steps + 1)):
        print(f"{step:6d}  {expected[step]:20.17f}  {got[step]:22.17f}")
    equal = got == expected
    print(f"the loss at all {len(expected)} steps equals the uninterrupted run's bit for bit: {equal}")
    print(f"run_dirs: {reference} {crashed}")
    if not equal:
        sys.exit(1)
    return equal


if __name__ == "__main__":
    main()
