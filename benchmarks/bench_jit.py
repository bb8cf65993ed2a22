"""Static graphs on the CPU: eager distrain, distrain.jit, PyTorch eager and torch.compile, side by side.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_jit.py                    # all cores, 10 s per case
    python benchmarks/bench_jit.py --threads 2 --seconds 5 --only mlp
    python benchmarks/bench_jit.py --record           # append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Cases (every model is built once per framework from the same NumPy weights and data):

  two_layer_net   the lecture's net as nn: Linear(1000, 100), ReLU, Linear(100, 10), batch 64,
                  MSELoss(sum), SGD momentum
  mlp_256         784-256-256-10, batch 64, cross_entropy, SGD momentum
  mlp_1024        784-1024-1024-10, batch 256, cross_entropy, SGD momentum
  small_cnn       conv3-32, maxpool, conv32-64, maxpool, linear; batch 64x3x32x32, cross_entropy, SGD momentum

Each case is timed twice: the training step (zero_grad, forward, loss, backward, step)
with contenders eager / compile_step / torch / torch.compile, and inference (forward
under no_grad) with eager / trace / torch / torch.compile. torch.compile is left out,
with the reason printed, where it does not run on this machine. Targets (issue 14):
compile_step <= 0.5x eager on two_layer_net and mlp_256 and below PyTorch eager on both;
never above eager anywhere. Contenders alternate in short blocks (harness.time_steps).
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

CASES = {  # name: (layers, input shape, batch, loss)
    "two_layer_net": ([("linear", 1000, 100), ("relu",), ("linear", 100, 10)], (1000,), 64, "mse"),
    "mlp_256": ([("linear", 784, 256), ("relu",), ("linear", 256, 256), ("relu",), ("linear", 256, 10)],
                (784,), 64, "ce"),
    "mlp_1024": ([("linear", 784, 1024), ("relu",), ("linear", 1024, 1024), ("relu",), ("linear", 1024, 10)],
                 (784,), 256, "ce"),
    "small_cnn": ([("conv", 3, 32), ("relu",), ("pool",), ("conv", 32, 64), ("relu",), ("pool",), ("flatten",),
                   ("linear", 64 * 8 * 8, 10)], (3, 32, 32), 64, "ce"),
}
TARGETS = {"two_layer_net": 0.5, "mlp_256": 0.5}  # compile_step / eager (the "at least 2x")


def build(lib, layers, seed=0):
    """The model in `lib` (distrain or torch) with weights from one NumPy generator, so both start equal."""
    import numpy as np

    rng = np.random.default_rng(seed)
    modules = []
    for layer in layers:
        if layer[0] == "linear":
            module = lib.nn.Linear(layer[1], layer[2])
        elif layer[0] == "conv":
            module = lib.nn.Conv2d(layer[1], layer[2], 3, padding=1)
        elif layer[0] == "relu":
            module = lib.nn.ReLU()
        elif layer[0] == "pool":
            module = lib.nn.MaxPool2d(2)
        else:
            module = lib.nn.Flatten()
        modules.append(module)
    model = lib.nn.Sequential(*modules)
    with lib.no_grad():
        for parameter in model.parameters():
            values = rng.standard_normal(tuple(parameter.shape)).astype(np.float32) * 0.05
            parameter.copy_(lib.tensor(values))
    return model


def data(lib, input_shape, batch, loss, classes=10, seed=1):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = lib.tensor(rng.standard_normal((batch, *input_shape)).astype(np.float32))
    if loss == "mse":
        return x, lib.tensor(rng.standard_normal((batch, classes)).astype(np.float32)), lib.nn.MSELoss(reduction="sum")
    return x, lib.tensor(rng.integers(0, classes, batch)), lib.nn.CrossEntropyLoss()


def training_steps(name):
    import torch

    import distrain

    layers, input_shape, batch, loss = CASES[name]
    steps, notes = {}, {}
    for label, lib in (("eager", distrain), ("compile_step", distrain), ("torch", torch), ("torch.compile", torch)):
        model = build(lib, layers)
        x, y, loss_fn = data(lib, input_shape, batch, loss)
        optimizer = lib.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        if label == "compile_step":
            step = distrain.jit.compile_step(model, loss_fn, optimizer)
            steps[label] = lambda step=step, x=x, y=y: step(x, y)
            continue
        forward = model
        if label == "torch.compile":
            try:
                forward = torch.compile(model)
                forward(x)
            except Exception as error:  # noqa: BLE001  (reported, the other contenders still run)
                notes[label] = f"torch.compile does not run here: {type(error).__name__}: {error}"[:200]
                continue

        def step(model=forward, x=x, y=y, loss_fn=loss_fn, optimizer=optimizer):
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()

        steps[label] = step
    return steps, notes


def inference_steps(name):
    import torch

    import distrain

    layers, input_shape, batch, loss = CASES[name]
    steps, notes = {}, {}
    for label, lib in (("eager", distrain), ("trace", distrain), ("torch", torch), ("torch.compile", torch)):
        model = build(lib, layers).eval()
        x = data(lib, input_shape, batch, loss)[0]
        if label == "trace":
            with distrain.no_grad():
                traced = distrain.jit.trace(model, x)

            def step(traced=traced, x=x):
                with distrain.no_grad():
                    traced(x)

            steps[label] = step
            continue
        forward = model
        if label == "torch.compile":
            try:
                forward = torch.compile(model)
                with torch.no_grad():
                    forward(x)
            except Exception as error:  # noqa: BLE001
                notes[label] = f"torch.compile does not run here: {type(error).__name__}: {error}"[:200]
                continue

        def step(forward=forward, x=x, lib=lib):
            with lib.no_grad():
                forward(x)

        steps[label] = step
    return steps, notes


def summarise(name, kind, times, notes, machine):
    medians = {label: statistics.median(values) for label, values in times.items()}
    fast = "compile_step" if kind == "train" else "trace"
    result = {"name": f"jit_{kind}_{name}", **{f"{label}_ms": round(median * 1e3, 4) for label, median in medians.items()}}
    result[f"{fast}_vs_eager"] = round(medians[fast] / medians["eager"], 4)
    result[f"{fast}_vs_torch"] = round(medians[fast] / medians["torch"], 4)
    if "torch.compile" in medians:
        result[f"{fast}_vs_torch_compile"] = round(medians[fast] / medians["torch.compile"], 4)
    target = TARGETS.get(name) if kind == "train" else None
    result["target"] = f"{fast}/eager <= {target} and {fast}/torch < 1" if target else f"{fast}/eager <= 1"
    result["pass"] = (result[f"{fast}_vs_eager"] <= target and result[f"{fast}_vs_torch"] < 1) if target \
        else result[f"{fast}_vs_eager"] <= 1
    for label, values in times.items():
        values = sorted(values)
        result[f"{label}_p10_ms"] = round(harness.percentile(values, 0.1) * 1e3, 4)
        result[f"{label}_p90_ms"] = round(harness.percentile(values, 0.9) * 1e3, 4)
    result["notes"] = notes
    result["machine"] = machine
    return result


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    machine = harness.machine_info(args.threads, harness.apply_thread_limits(args.threads))
    print(f"# {machine['cpu']}, {machine['cores']} cores, {args.threads} threads, numpy {machine['numpy']}, "
          f"torch {machine['torch']}, {args.seconds:g} s per case")
    json_path = args.json or (harness.default_results_path(RESULTS_DIR) if args.record else None)
    for name in CASES:
        for kind, make in (("train", training_steps), ("infer", inference_steps)):
            if args.only and args.only not in f"{kind}_{name}":
                continue
            steps, notes = make(name)
            result = summarise(name, kind, harness.time_steps(steps, args.seconds), notes, machine)
            cells = "  ".join(f"{label} {result[label + '_ms']:.3f} ms" for label in steps)
            fast = "compile_step" if kind == "train" else "trace"
            print(f"{result['name']:<22} {cells}  | {fast}/eager {result[fast + '_vs_eager']:.3f}  "
                  f"{fast}/torch {result[fast + '_vs_torch']:.3f}  {'PASS' if result['pass'] else 'FAIL'}"
                  + (f"  ({'; '.join(notes.values())})" if notes else ""))
            harness.emit_result(result, RESULTS_DIR, record=False)
            if json_path:
                import json

                with open(json_path, "a") as out:
                    out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
