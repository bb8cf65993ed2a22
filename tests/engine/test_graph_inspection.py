"""Walking the graph as PyTorch programs do: `grad_fn.name()` and `grad_fn.next_functions`, against PyTorch."""
import numpy as np
import torch

import distrain


def describe(function, leaves):
    """A graph as comparable data: (name, ((child, output_nr), ...)); a leaf as ("leaf", its position)."""
    if function is None:
        return None
    if type(function).__name__ == "AccumulateGrad":
        return ("leaf", next(i for i, leaf in enumerate(leaves) if leaf is function.variable))
    return (function.name(), tuple((describe(child, leaves), nr) for child, nr in function.next_functions))


def small_network(lib, arrays):
    """A two-layer step whose ops have the same node names in both libraries."""
    x, w1, w2, target = [lib.tensor(a, requires_grad=i in (1, 2)) for i, a in enumerate(arrays)]
    hidden = lib.tanh(lib.mm(x, w1)) * 2 - w1.sum().exp() / 3
    output = lib.mm(hidden.relu() + hidden.sigmoid(), w2)
    loss = ((output - target).abs().mean() + w2.abs().sum().log())
    return loss, [x, w1, w2, target]


def test_next_functions_and_names_match_pytorchs_for_a_small_network():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in [(4, 3), (3, 5), (5, 2), (4, 2)]]
    ours, our_leaves = small_network(distrain, arrays)
    theirs, their_leaves = small_network(torch, arrays)
    assert describe(ours.grad_fn, our_leaves) == describe(theirs.grad_fn, their_leaves)


def test_an_input_needing_no_gradient_is_none_0_as_in_pytorch():
    values = np.ones(3, dtype=np.float32)
    ours = distrain.tensor(values, requires_grad=True) * distrain.tensor(values)
    theirs = torch.tensor(values, requires_grad=True) * torch.tensor(values)
    assert [(type(f).__name__, nr) for f, nr in ours.grad_fn.next_functions] == \
        [(type(f).__name__, nr) for f, nr in theirs.grad_fn.next_functions] == [("AccumulateGrad", 0), ("NoneType", 0)]


def test_the_output_number_of_a_multi_output_op_is_kept_as_in_pytorch():
    def graph(lib):
        x = lib.arange(6.0, requires_grad=True)
        first, second = x.split(3)
        total = first.sum() + second.sum() * 2
        sums = [function for function, _ in total.grad_fn.next_functions]
        split_of_first = sums[0].next_functions[0][0]
        return describe(total.grad_fn, [x]), split_of_first is sums[1].next_functions[0][0].next_functions[0][0]

    assert graph(distrain) == graph(torch)


def test_a_leaf_has_one_accumulate_grad_while_it_is_in_use():
    w = distrain.ones(2, requires_grad=True)
    y = w * w
    (first, _), (second, _) = y.grad_fn.next_functions
    assert first is second and first.variable is w
    assert first.next_functions == ()
    assert first.name() == "distrain::autograd::AccumulateGrad"  # PyTorch's: torch::autograd::AccumulateGrad


def test_a_user_function_node_is_named_as_in_pytorch():
    def make(lib):
        class Square(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * x * grad

        return Square.apply(lib.ones(2, requires_grad=True)).grad_fn

    ours, theirs = make(distrain), make(torch)
    assert ours.name() == theirs.name() == "SquareBackward"
    assert type(ours.next_functions[0][0]).__name__ == type(theirs.next_functions[0][0]).__name__


def test_repr_names_the_node_as_pytorch_does():
    values = np.ones(2, dtype=np.float32)
    ours = distrain.tensor(values, requires_grad=True).exp()
    theirs = torch.tensor(values, requires_grad=True).exp()
    assert repr(ours.grad_fn).split(" object at ")[0] == repr(theirs.grad_fn).split(" object at ")[0]
    assert repr(ours).endswith("grad_fn=<ExpBackward0>)") and repr(theirs).endswith("grad_fn=<ExpBackward0>)")
