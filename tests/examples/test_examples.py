"""The example scripts run and do what their docstrings promise (checked on values, in-process)."""
import importlib.util
import os

import pytest

import distrain

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_and_last_losses(output):
    """The first and last loss of the `step loss` lines the lecture examples print."""
    lines = [line.split() for line in output.splitlines()]
    losses = [float(parts[1]) for parts in lines if len(parts) == 2 and parts[0].isdigit()]
    return losses[0], losses[-1]


@pytest.mark.parametrize("name, steps, factor", [("two_layer_net_nn", 200, 1e-2), ("two_layer_net_optim", 200, 1e-2),
                                                 ("custom_function", 150, 1e-1)])
def test_the_lecture_progression_lowers_the_loss(name, steps, factor, capsys):
    load_example(name).main(["--steps", str(steps)])
    first, last = first_and_last_losses(capsys.readouterr().out)
    assert last < first * factor, f"{name}: loss went from {first} to {last}"


def test_custom_function_passes_gradcheck(capsys):
    load_example("custom_function").main(["--steps", "1"])
    assert "gradcheck: True" in capsys.readouterr().out


def test_module_example_fits_the_data():
    example = load_example("two_layer_net_module")
    distrain.manual_seed(0)
    x, y = distrain.randn(64, 1000), distrain.randn(64, 10)
    untrained = distrain.nn.MSELoss(reduction="sum")(example.TwoLayerNet(1000, 100, 10)(x), y).item()
    assert example.main(["--epochs", "10"]) < untrained / 100


def test_transfer_learning_trains_only_the_new_head(tmp_path):
    checkpoint = tmp_path / "pretrained.ckpt"
    accuracy_a, accuracy_b, backbone_unchanged = load_example("transfer_learning").main(
        ["--pretrain-steps", "150", "--steps", "100", "--checkpoint", str(checkpoint)])
    assert accuracy_a > 0.9 and accuracy_b > 0.9
    assert backbone_unchanged
    saved = distrain.load(checkpoint)
    assert saved["step"] == 150 and set(saved) == {"model", "optimizer", "step"}


def test_train_digits_learns_and_does_not_depend_on_the_worker_count(tmp_path, capsys):
    example = load_example("train_digits")
    data = str(tmp_path / "digits")
    accuracy = example.main(["--data", data, "--epochs", "5", "--workers", "2"])
    assert accuracy > 0.9
    one_epoch = [example.main(["--data", data, "--epochs", "1", "--workers", workers]) for workers in ("0", "2")]
    assert one_epoch[0] == one_epoch[1]
    assert "epoch 4: mean loss" in capsys.readouterr().out
