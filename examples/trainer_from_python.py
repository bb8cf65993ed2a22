"""The trainer from Python: a configuration built in code, a run in this process, metrics.jsonl read back.

`python -m distrain.launch` runs the config-driven trainer from the command line; the same
run is two calls from Python. `load_config(assignments=[...])` takes the `KEY=VALUE`
strings `--set` takes (every key and its default: configs/default.toml) and checks them
all before anything runs; `train(config)` trains and returns the end-of-run numbers.
Everything the run measured is also in `run_dir/metrics.jsonl`, one JSON object per line:
`"kind": "train"` lines carry step, epoch, loss, lr and samples/s, `"kind": "eval"` lines
the held-out accuracy. This script trains the default model (a small CNN) on the digits
and reads the file back with nothing but `json`.

    python examples/trainer_from_python.py [--epochs 10] [--run-dir DIR]

It prints the loss at the first and last step and the final accuracy read from
metrics.jsonl (about 0.96 after 10 epochs; the trainer's default of 30 reaches 0.97).
The run writes into a new temporary directory unless --run-dir is given.
"""
import argparse
import json
import os
import tempfile

from distrain.train import load_config, train


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the trainer from Python and read back its metrics.jsonl.")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--run-dir", help="where the run writes (default: a new temporary directory)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="distrain_trainer_")

    config = load_config(assignments=[
        "model=cnn", "dataset=digits", f"epochs={args.epochs}", "batch_size=32", "lr=0.003",
        f"run_dir={run_dir}", "print_every=100", "tensorboard=false", "plot=false"])
    results = train(config)  # in this process, a world of one rank

    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    losses = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    accuracy = [r["accuracy"] for r in records if r["kind"] == "eval"][-1]
    print(f"loss at step {losses[0][0]}: {losses[0][1]:.4f}, at step {losses[-1][0]}: {losses[-1][1]:.4f}")
    print(f"final accuracy from metrics.jsonl: {accuracy:.4f} (train() returned {results['accuracy']:.4f})")
    print(f"run_dir: {run_dir}")
    return accuracy


if __name__ == "__main__":
    main()
