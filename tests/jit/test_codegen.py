"""The replay's generated code is made only of checked parts (NOTE in engine/jit/codegen.py): a graph
naming a method, attribute, keyword or operator that is not plain Python syntax is refused, not compiled."""
import pytest

import distrain
from distrain.engine.jit import SerializationError
from distrain.engine.jit.codegen import generate
from distrain.engine.jit.graph import Instruction, Ref


def a_graph():
    traced = distrain.jit.trace(lambda x: x.reshape(-1) * 2, distrain.randn(2, 3), passes=())
    return traced.graph


@pytest.mark.parametrize("field, value", [
    ("method", "reshape(-1); __import__('os').system('true'); x = v0.copy"),
    ("attribute", "T if False else __import__('os')"),
    ("keyword", "axis=0, **__import__('os').environ and {}"),
    ("operator", "+ __import__('os').getpid() +"),
    ("slot", "0; import os"),
])
def test_text_that_is_not_plain_syntax_never_reaches_exec(field, value):
    graph = a_graph()
    x = Ref(graph.inputs[0])
    if field == "method":
        graph.instructions[0] = Instruction("method", value, (x,), {}, outputs=graph.instructions[0].outputs)
    elif field == "attribute":
        graph.instructions[0] = Instruction("attribute", value, (x,), {}, outputs=graph.instructions[0].outputs)
    elif field == "keyword":
        graph.instructions[0] = Instruction("method", "sum", (x,), {value: 0}, outputs=graph.instructions[0].outputs)
    elif field == "operator":
        graph.instructions[1] = Instruction("operator", value, (x, 2), {}, outputs=graph.instructions[1].outputs)
    else:
        graph.instructions[0] = Instruction("method", "copy", (Ref(value),), {}, outputs=graph.instructions[0].outputs)
    with pytest.raises((SerializationError, TypeError)):
        generate(graph)


def test_an_ordinary_graph_compiles():
    assert "def replay(" in generate(a_graph()).source
