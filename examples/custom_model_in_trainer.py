"""Your own model in the trainer: register it by name, then `model = "<name>"` in the configuration.

The trainer builds its model with `distrain.models.create(config["model"], ...)`, so any
Module class (or function returning a Module) decorated with
`@distrain.models.register("name")` is a model it can train, exactly like the built-in
mlp, cnn and resnets. The trainer passes what it knows about the data, `input_shape`
(C, H, W) and `num_classes`, to a builder whose signature names them; the rest of the
builder's arguments come from the `[model_args]` table (here `model_args.hidden=...`, on
the command line `--set model_args.hidden=...`). The trainer's checkpoints hold the
model's state_dict under "model", so the trained weights load back into your own class.

    python examples/custom_model_in_trainer.py [--epochs 5] [--hidden 32] [--run-dir DIR]

It prints the accuracy on the digits' held-out images (above 0.9 after 5 epochs) and the
parameters of the trained model loaded back from the last checkpoint. The run writes
into a new temporary directory unless --run-dir is given.
"""
import argparse
import glob
import math
import os
import tempfile

import distrain
import distrain.nn as nn
from distrain.train import load_config, train


@distrain.models.register("two_layer")
class TwoLayerNet(nn.Module):
    """Flatten, Linear, ReLU, Linear: the lecture's two-layer net as a classifier of images of any shape."""

    def __init__(self, input_shape, num_classes, hidden=64):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(math.prod(input_shape), hidden)
        self.relu = nn.ReLU()
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.out(self.relu(self.hidden(self.flatten(x))))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Register a model with distrain.models and train it with the trainer.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--run-dir", help="where the run writes (default: a new temporary directory)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="distrain_custom_model_")

    config = load_config(assignments=[
        "model=two_layer", f"model_args.hidden={args.hidden}", "dataset=digits", f"epochs={args.epochs}",
        "lr=0.01", f"run_dir={run_dir}", "print_every=100", "tensorboard=false", "plot=false"])
    results = train(config)
    print(f"model 'two_layer' trained by distrain.train: held-out accuracy {results['accuracy']:.4f}")

    # The last checkpoint's "model" is TwoLayerNet's state_dict: load it into a fresh instance.
    last = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*.dt")))[-1]
    model = distrain.models.create("two_layer", input_shape=(1, 8, 8), num_classes=10, hidden=args.hidden)
    model.load_state_dict(distrain.load(last)["model"])
    shapes = ", ".join(f"{name} {tuple(p.shape)}" for name, p in model.named_parameters())
    print(f"loaded {os.path.basename(last)}: {sum(p.numel() for p in model.parameters())} parameters ({shapes})")
    return results["accuracy"]


if __name__ == "__main__":
    main()
