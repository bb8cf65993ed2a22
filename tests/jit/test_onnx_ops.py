"""export_onnx op by op: every converter exported inside a small function or layer, run in ONNX Runtime on a
batch of 2 and a batch of 3 through the dynamic batch axis, and compared with distrain's eager result."""
from __future__ import annotations

import numpy as np
import pytest

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from .onnx_oracle import batch_axes, check_export, flat, random


def positive(*shape, seed=0):
    return np.abs(random(*shape, seed=seed)) + 0.5


def in_place(x):
    y = x * 1
    y.add_(2, alpha=0.5)
    y *= 3
    y.relu_().clamp_(max=4)
    y.sigmoid_()
    y += x
    return y


def getitems(x):  # x: (batch, 4, 6)
    index = distrain.tensor([2, 0, 5])
    return (x[:, 1], x[..., -1], x[:, None, 1:3, ::2], x[:, -2:, 3:], x[0:1, 2], x[:, :, index], x[:, [3, 1]],
            x.narrow(2, 1, 3), x.flip(1), x.index_select(2, index))


def shapes(x):  # x: (batch, 4, 6)
    b = x.size(0)
    first, second = x.chunk(2, dim=1)
    pieces = x.split([1, 5], dim=2)
    rows = x.unbind(1)
    return (x.flatten(), x.flatten(1), x.flatten(0, 1).unsqueeze(-1), x.flatten(-2), x.unsqueeze(1).squeeze(),
            x.T, x.mT, x.movedim(0, 2), x.swapaxes(0, 1), x.reshape(b, 2, -1), x.view(-1, 6), first - second,
            pieces[1] * 2, rows[3], x[:, :1].expand(-1, 3, 6), x[:, :1].expand_as(x), x.repeat(1, 2, 1),
            distrain.stack([x, x], 1), x.contiguous().clone(), distrain.zeros(b, 2) + x[:, 0, :2],
            distrain.full((b, 1), 2.5) * distrain.ones_like(x[:, 0]), distrain.zeros_like(x) + 1,
            x.view_as(x) + x.reshape_as(x))


def tensor_methods(x):  # x: (batch, 4, 6)
    assert x.stride() == (24, 6, 1) and x.nelement() == x.numel() and x.ndimension() == 3
    first, second = x.split_with_sizes([1, 3], 1)
    return (x.detach() * 2, x.data + 1, x.new_zeros(x.size(0), 3) + 1, x.new_full((x.size(0), 2), 3.0),
            second - first, x[:, 0] + x.new_ones(6) + x.new_tensor([1.0, 2, 3, 4, 5, 6]))


def reductions(x):  # x: (batch, 4, 6)
    values, indices = x.max(dim=2)
    return (x.sum(), x.sum((0, 2)), x.mean(1, keepdim=True), x.var(1), x.std(dim=(1, 2), keepdim=True),
            x.var(2, correction=0), distrain.logsumexp(x, 1), x.argmax(), x.argmin(2, keepdim=True), values,
            indices, x.min(), x.amax((1, 2)), (x.abs() + 0.5).prod(2), (x > 0).all(2), (x > 1).any(1),
            distrain.max(x, -x), F.softmax(x, 0), F.log_softmax(x, 1), F.softmin(x, -1))


def arithmetic(x, y):  # x, y: (batch, 5)
    i = (x * 3).long()
    return (x + y, x - y * 2, 2 - x, x * 0.5, x / (y.abs() + 1), 3 / (x.abs() + 1), x ** 2, 2 ** x, -x, +x,
            x @ y.t(), distrain.matmul(x.unsqueeze(1), y.unsqueeze(2)), distrain.maximum(x, y), x.clamp(-0.5, 0.5),
            x.clamp(min=y), x.clamp_min(0), distrain.where(x > y, x, y), x.masked_fill(x < 0, -1.0), x == y,
            x != y, x <= y, x >= 0, (x > 0) & (y > 0), (x > 0) | ~(y > 0), i, i.float() / 2,
            x.double(), x.to(distrain.float64) * 2, distrain.div(x, y.abs() + 1, rounding_mode="floor"),
            x.square(), x.floor(), x.round(), x.ceil())


def math_functions(x):  # x: (batch, 5), positive
    return (x.exp(), x.log(), x.sqrt(), x.rsqrt(), x.reciprocal(), x.sin(), x.cos(), x.tan(), (x / 3).asin(),
            (x / 3).acos(), x.atan(), x.sinh(), x.cosh(), x.asinh(), (x + 1).acosh(), (x / 3).atanh(), x.erf(),
            x.sign(), x.abs(), x.sigmoid(), x.tanh(), x.relu())


def activations(x):  # x: (batch, 5)
    return (F.gelu(x), F.gelu(x, approximate="tanh"), F.leaky_relu(x, 0.2), F.elu(x, 0.7), F.selu(x), F.celu(x, 1.5),
            F.softplus(x, beta=2.0, threshold=1.0), F.silu(x), F.mish(x), F.hardtanh(x, -0.5, 0.5), F.relu6(x * 8),
            F.hardsigmoid(x * 4), F.hardswish(x * 4), F.softsign(x), F.logsigmoid(x), F.tanhshrink(x),
            F.threshold(x, 0.1, 20.0), F.prelu(x, distrain.tensor([0.25])), F.dropout(x, 0.5, training=False))


def padded(x):  # x: (batch, 2, 4, 5)
    return F.pad(x, (1, 2)), F.pad(x, (1, 1, 2, 0, 0, 1), value=-1.5)


OPS = {
    "in_place": (in_place, [(5,)], 17),
    "getitem": (getitems, [(4, 6)], 17),
    "shapes": (shapes, [(4, 6)], 17),
    "shapes_opset11": (shapes, [(4, 6)], 11),
    "tensor_methods": (tensor_methods, [(4, 6)], 17),
    "reductions": (reductions, [(4, 6)], 17),
    "reductions_opset18": (reductions, [(4, 6)], 18),
    "reductions_opset11": (reductions, [(4, 6)], 11),
    "arithmetic": (arithmetic, [(5,), (5,)], 17),
    "math_functions": (math_functions, [(5,)], 17),
    "activations": (activations, [(5,)], 17),
    "activations_opset13": (activations, [(5,)], 13),
    "pad": (padded, [(2, 4, 5)], 17),
}


@pytest.mark.parametrize("name", list(OPS))
def test_ops(tmp_path, name):
    function, shapes_, opset = OPS[name]
    make = positive if function is math_functions else random
    example = [make(2, *shape, seed=i) for i, shape in enumerate(shapes_)]
    other = [make(3, *shape, seed=10 + i) for i, shape in enumerate(shapes_)]
    outputs = len(flat(function(*[distrain.tensor(a) for a in example])))
    axes = batch_axes({"input": len(example), "output": outputs})
    if function is getitems:  # x[0:1, 2] keeps one row whatever the batch
        axes.pop("output4")
    if function is reductions:  # full reductions and reductions over the batch axis have no batch axis left
        for position in (0, 1, 7, 11, 17):
            axes.pop(f"output{position}")
    if function is shapes:
        for position in (0, 2, 7, 8, 10):  # the batch axis is folded into another, or moved
            axes.pop(f"output{position}")
    if function is arithmetic:
        axes["output10"] = {0: "batch", 1: "batch"}
    check_export(function, example, other, tmp_path, opset=opset, dynamic_axes=axes)


LAYERS = {
    "conv1d": (nn.Conv1d(3, 4, 3, stride=2, padding=1, groups=1), (3, 9)),
    "conv1d_same": (nn.Conv1d(3, 6, 4, padding="same", dilation=2, groups=3), (3, 9)),
    "conv2d_valid": (nn.Conv2d(2, 4, (3, 2), stride=(1, 2), padding="valid", dilation=(2, 1)), (2, 7, 8)),
    "conv_transpose1d": (nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1), (3, 5)),
    "conv_transpose2d": (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, groups=2, dilation=1), (4, 3, 3)),
    "avg_pool": (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 7, 7)),
    "avg_pool_ceil": (nn.AvgPool2d(2, ceil_mode=True), (2, 7, 7)),  # a partial last window
    "max_pool_ceil": (nn.MaxPool2d(2, ceil_mode=True), (2, 7, 7)),
    "max_pool": (nn.MaxPool2d(3, stride=2, padding=1, dilation=1), (2, 7, 7)),
    "adaptive_avg_pool": (nn.AdaptiveAvgPool2d((2, None)), (2, 6, 4)),
    "group_norm": (nn.GroupNorm(2, 4), (4, 3, 3)),
    "instance_norm": (nn.InstanceNorm2d(3, affine=True), (3, 4, 4)),
    "instance_norm_running": (nn.InstanceNorm1d(3, track_running_stats=True), (3, 5)),
    "batch_norm_1d": (nn.BatchNorm1d(5), (5,)),
    "prelu": (nn.PReLU(3, init=0.1), (3, 4)),
    "pointwise": (nn.Sequential(nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.Hardtanh(-2, 2),
                                nn.ReLU6(), nn.Softplus(beta=0.5), nn.ELU(), nn.CELU(), nn.SELU(), nn.Softsign(),
                                nn.Tanhshrink(), nn.LogSigmoid(), nn.LeakyReLU(0.1, inplace=True), nn.Sigmoid(),
                                nn.Tanh(), nn.Identity(), nn.Dropout(0.3), nn.LogSoftmax(1)), (3, 4)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers(tmp_path, name):
    distrain.manual_seed(0)
    layer, shape = LAYERS[name]
    layer.eval()
    check_export(layer, [random(2, *shape)], [random(3, *shape, seed=1)], tmp_path)
