"""explain(): what a user tuning a static graph reads — counts, passes, groups, buffers — or why capture failed."""
import numpy as np

import distrain
import distrain.models
from distrain import nn
from distrain.engine import jit


def test_a_training_step_is_explained_with_its_counts_groups_and_buffers():
    model = distrain.models.create("cnn", input_shape=(3, 8, 8), width=4)
    step = jit.compile_step(model, nn.CrossEntropyLoss(), distrain.optim.SGD(model.parameters(), lr=0.1))
    x, y = distrain.randn(4, 3, 8, 8), distrain.tensor([0, 1, 2, 3])
    explanation = jit.explain(step, x, y)
    text = str(explanation)
    assert explanation.captured and explanation.op_count == explanation.report["instructions captured"] > 50
    assert explanation.state == 2 * len(list(model.parameters())) + len(list(model.buffers()))
    assert explanation.inputs == 2 and explanation.groups
    assert f"captured {explanation.op_count} array calls" in text
    assert "fused elementwise groups" in text and "normalization.py" in text  # where each group comes from
    assert "buffers allocated once" in text and "saved" in text
    assert sum(explanation.ops.values()) == explanation.op_count


def test_a_failed_capture_is_explained_with_its_place_instead_of_raising():
    def function(x):
        scale = x.abs().max().item()
        return x / scale

    explanation = jit.explain(function, distrain.randn(3))
    assert not explanation.captured
    text = str(explanation)
    assert "the capture failed" in text and "test_explain.py" in text and ".item()" in text
    assert "scale = x.abs().max().item()" in text


def test_explain_runs_the_function_once_as_trace_does():
    calls = []

    def function(x):
        calls.append(1)
        return x * 2

    jit.explain(function, distrain.tensor(np.ones(2, np.float32)))
    assert len(calls) == 1
