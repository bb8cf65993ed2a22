"""The trainer's parts on their own, against hand-made cases: the non-finite check, early stopping, the generators."""
import numpy
import pytest

import distrain
import distrain.nn as nn
from distrain.train.early_stopping import EarlyStopping
from distrain.train.nonfinite import GradientCheck, first_nonfinite


def packed_model_with_gradients():
    """A model whose parameters the optimizer packed into one flat buffer, after one backward."""
    distrain.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 2))
    distrain.optim.SGD(model.parameters(), lr=0.1)  # packs them
    model(distrain.randn(5, 4)).sum().backward()
    return model, list(model.named_parameters())


def gradients_finite(named):
    return GradientCheck(named).check()


def test_a_nan_in_a_later_parameter_is_found_and_named():
    model, named = packed_model_with_gradients()
    assert gradients_finite(named)
    model[2].bias.grad._data[1] = numpy.nan  # in the flat gradient buffer, in the middle of the model
    assert not gradients_finite(named)
    assert first_nonfinite(named) == "2.bias"
    model[2].bias.grad._data[1] = numpy.inf
    assert not gradients_finite(named) and first_nonfinite(named) == "2.bias"


def test_a_stale_slice_of_a_parameter_without_gradient_is_not_a_false_alarm():
    """A parameter with no gradient this step keeps old values in its flat slice (NOTE [ Flat gradients ])."""
    model, named = packed_model_with_gradients()
    flat = model[3].weight._flat
    offset, size = flat.segment(model[3].weight)
    model[3].weight.grad = None
    flat.grad[offset:offset + size] = numpy.nan  # what a skipped step could leave there
    assert gradients_finite(named)
    model[0].weight.grad._data[0, 0] = numpy.nan
    assert not gradients_finite(named) and first_nonfinite(named) == "0.weight"


@pytest.mark.parametrize("metric, values, stop_at", [
    ("accuracy", [(0.5, 1), (0.6, 1), (0.6, 1), (0.7, 1), (0.7, 1), (0.69, 1)], 5),  # improvements reset the count
    ("loss", [(0, 1.0), (0, 0.9), (0, 0.95), (0, 0.8), (0, 0.81), (0, 0.85)], 5),  # lower is better
    ("loss", [(0, 1.0), (0, 2.0), (0, 3.0)], 2),
])
def test_early_stopping_counts_evaluations_since_the_last_improvement(metric, values, stop_at):
    stopping = EarlyStopping(metric, patience=2)
    verdicts = [stopping.update(accuracy, loss) for accuracy, loss in values]
    assert verdicts.index(True) == stop_at and stopping.stopped


def test_min_delta_and_the_state_survive_a_checkpoint():
    stopping = EarlyStopping("accuracy", patience=3, min_delta=0.05)
    assert [stopping.update(value, 0) for value in (0.5, 0.54, 0.56)] == [False, False, False]
    assert stopping.since == 0 and stopping.best == 0.56  # 0.54 is within min_delta, 0.56 is not
    resumed = EarlyStopping("accuracy", patience=3, min_delta=0.05)
    resumed.load_state_dict(stopping.state_dict())
    assert [resumed.update(0.57, 0), resumed.update(0.58, 0), resumed.update(0.6, 0)] == [False, False, True]
    assert not EarlyStopping("accuracy", patience=0).update(0.1, 0)  # off


def test_the_checkpointed_generators_come_back_exactly():
    import random

    from distrain.train import checkpoints

    random.seed(3), numpy.random.seed(4), distrain.manual_seed(5)
    random.gauss(0, 1), numpy.random.standard_normal(), distrain.randn(3)  # mid-stream, cached gaussians included
    saved = checkpoints.rng_state()
    expected = (random.random(), random.gauss(0, 1), numpy.random.standard_normal(), distrain.randn(4).numpy())
    random.seed(99), numpy.random.seed(98), distrain.manual_seed(97)
    checkpoints.set_rng_state(saved)
    found = (random.random(), random.gauss(0, 1), numpy.random.standard_normal(), distrain.randn(4).numpy())
    assert found[:3] == expected[:3] and numpy.array_equal(found[3], expected[3])
