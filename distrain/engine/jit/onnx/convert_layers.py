"""Converters of the ops behind the one-op layers (linear, convolutions, pooling, normalisation, dropout,
embedding, matmul), and the registration of those layers as the op with their options.

Inference semantics only: dropout is the identity, batch norm uses the running statistics.
A layer in training mode is refused before it runs (recorder.py); the functional forms
(`F.dropout(x, training=True)`, `F.batch_norm(..., training=True)`) are refused here, by a
precheck that runs before the op could update running statistics.
"""
from __future__ import annotations

import numpy

from ...nn import activation, conv as conv_layers, group_normalization, linear as linear_layers
from ...nn import normalization, pointwise_activation, pooling as pooling_layers, sparse
from ...ops import TENSOR_METHODS, channel_dropout as channel_dropout_ops, conv, conv_variants
from ...ops import activations, elementwise, instance_norms, linalg, normalization as norm_ops, pooling, shape
from ...ops.dropout import dropout as dropout_op, embedding as embedding_op
from ...ops.softmax import log_softmax, softmax
from .export_errors import OnnxExportError
from .registry import converts, functional_layer


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


# -- matrix products -----------------------------------------------------------------------
@converts(linalg.linear)
def linear(builder, out, input, weight, bias=None):
    x, w = builder.value(input), builder.value(weight)
    if input.ndim == 2 and weight.ndim == 2:
        return builder.node("Gemm", [x, w, None if bias is None else builder.value(bias)], transB=1)
    product = builder.node("MatMul", [x, builder.node("Transpose", [w], perm=[1, 0])])
    return product if bias is None else builder.node("Add", [product, builder.value(bias)])


converts(linalg.matmul, linalg.mm, linalg.bmm, linalg.dot)(
    lambda builder, out, **named: builder.node("MatMul", [builder.value(t) for t in list(named.values())[:2]]))
converts(TENSOR_METHODS["__rmatmul__"])(
    lambda builder, out, self, other: builder.node("MatMul", [builder.value(other), builder.value(self)]))


# -- convolution and pooling ---------------------------------------------------------------
def _pads(padding, kernel, dilation, n):
    """ONNX pads (all begins, then all ends) for torch's padding: ints, or 'valid' / 'same'."""
    if padding == "valid":
        return [0] * (2 * n)
    if padding == "same":  # the extra pixel of an odd total goes after, as in torch
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [t // 2 for t in totals] + [t - t // 2 for t in totals]
    return list(_tuple(padding, n)) * 2


def _convolution(n, transposed):
    def converter(builder, out, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                  output_padding=0):
        kernel = tuple(weight.shape[2:])
        dilation = _tuple(dilation, n)
        attributes = dict(kernel_shape=list(kernel), strides=list(_tuple(stride, n)), dilations=list(dilation),
                          group=int(groups), pads=_pads(padding, kernel, dilation, n))
        if transposed:
            attributes["output_padding"] = list(_tuple(output_padding, n))
        inputs = [builder.value(input), builder.value(weight)] + ([] if bias is None else [builder.value(bias)])
        return builder.node("ConvTranspose" if transposed else "Conv", inputs, **attributes)

    return converter


converts(conv.conv2d)(_convolution(2, False))
converts(conv_variants.conv1d)(_convolution(1, False))
converts(conv_variants.conv_transpose2d)(_convolution(2, True))
converts(conv_variants.conv_transpose1d)(_convolution(1, True))
for _layer, _function in ((conv_layers.Conv1d, conv_variants.conv1d), (conv_layers.Conv2d, conv.conv2d)):
    functional_layer(lambda m, input, _function=_function: (
        _function, (input, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups), {}), _layer)
functional_layer(lambda m, input, output_size=None: (
    type(m).function, (input, m.weight, m.bias, m.stride, m.padding,
                       m.output_padding if output_size is None else m._output_padding_for(input, output_size),
                       m.groups, m.dilation), {}), conv_layers.ConvTranspose1d, conv_layers.ConvTranspose2d)


@converts(pooling.max_pool2d)
def max_pool2d(builder, out, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    if return_indices:
        raise OnnxExportError(f"{builder.doing}: return_indices=True is not exported (ONNX MaxPool's indices count "
                              f"over the whole tensor, not per plane as torch's)")
    kernel = _tuple(kernel_size, 2)
    return builder.node("MaxPool", [builder.value(input)], kernel_shape=list(kernel),
                        strides=list(_tuple(kernel if stride is None else stride, 2)),
                        pads=list(_tuple(padding, 2)) * 2, dilations=list(_tuple(dilation, 2)),
                        ceil_mode=int(ceil_mode))


@converts(pooling.avg_pool2d)
def avg_pool2d(builder, out, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    if divisor_override is not None:
        raise OnnxExportError(f"{builder.doing}: divisor_override has no ONNX AveragePool equivalent; divide a "
                              f"sum pooling yourself (avg_pool2d(...) * kernel area / divisor)")
    kernel = _tuple(kernel_size, 2)
    return builder.node("AveragePool", [builder.value(input)], kernel_shape=list(kernel),
                        strides=list(_tuple(kernel if stride is None else stride, 2)),
                        pads=list(_tuple(padding, 2)) * 2, ceil_mode=int(ceil_mode),
                        count_include_pad=int(count_include_pad))


@converts(pooling.adaptive_avg_pool2d)
def adaptive_avg_pool2d(builder, out, input, output_size):
    x = builder.value(input)
    sizes, wanted = tuple(input.shape[-2:]), tuple(out.shape[-2:])
    if wanted == (1, 1):
        return builder.node("GlobalAveragePool", [x])
    if any(size % want for size, want in zip(sizes, wanted)):
        raise OnnxExportError(f"{builder.doing}: adaptive pooling from {sizes} to {wanted} has uneven windows, which "
                              f"ONNX has no operator for; use output sizes that divide the input's, or (1, 1)")
    kernel = [size // want for size, want in zip(sizes, wanted)]
    return builder.node("AveragePool", [x], kernel_shape=kernel, strides=kernel)


functional_layer(lambda m, input: (pooling.max_pool2d, (input, m.kernel_size, m.stride, m.padding, m.dilation,
                                                        m.ceil_mode, m.return_indices), {}), pooling_layers.MaxPool2d)
functional_layer(lambda m, input: (pooling.avg_pool2d, (input, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                                        m.count_include_pad, m.divisor_override), {}),
                 pooling_layers.AvgPool2d)
functional_layer(lambda m, input: (pooling.adaptive_avg_pool2d, (input, m.output_size), {}),
                 pooling_layers.AdaptiveAvgPool2d)


# -- normalisation -------------------------------------------------------------------------
def _affine(builder, tensor, fill, shape, dtype):
    """A weight or bias, or `fill` of `shape` where the op was given None."""
    if tensor is not None:
        return builder.value(tensor)
    return builder.constant(numpy.full(shape, fill, dtype=dtype), "ones" if fill == 1 else "zeros")


def _training_precheck(doing, training=False, **named):
    if training:
        raise OnnxExportError(f"{doing} is called with training=True (batch statistics); ONNX export writes the "
                              f"inference graph. Pass training=False (or self.training after model.eval()).")


@converts(norm_ops.batch_norm)
def batch_norm(builder, out, input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    _training_precheck(builder.doing, training)
    channels, dtype = input.shape[1], input._data.dtype
    return builder.node("BatchNormalization", [
        builder.value(input), _affine(builder, weight, 1, (channels,), dtype),
        _affine(builder, bias, 0, (channels,), dtype), builder.value(running_mean), builder.value(running_var)],
        epsilon=float(eps))


batch_norm.precheck = _training_precheck
functional_layer(lambda m, input: (norm_ops.batch_norm, (input, m.running_mean, m.running_var, m.weight, m.bias,
                                                         m.running_mean is None, 0.0, m.eps), {}),
                 normalization.BatchNorm1d, normalization.BatchNorm2d, differs_in_training=lambda m: True)


@converts(norm_ops.layer_norm)
def layer_norm(builder, out, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape_ = tuple(_tuple(normalized_shape, 1))
    dtype = input._data.dtype
    return builder.node("LayerNormalization", [builder.value(input), _affine(builder, weight, 1, shape_, dtype),
                                               _affine(builder, bias, 0, shape_, dtype)],
                        axis=-len(shape_), epsilon=float(eps))


functional_layer(lambda m, input: (norm_ops.layer_norm, (input, m.normalized_shape, m.weight, m.bias, m.eps), {}),
                 normalization.LayerNorm)


def _instance_normalization(builder, name, channels, dtype, eps):
    return builder.node("InstanceNormalization", [name, _affine(builder, None, 1, (channels,), dtype),
                                                  _affine(builder, None, 0, (channels,), dtype)], epsilon=float(eps))


def _channel_affine(builder, name, weight, bias, ndim):
    """x * weight + bias with (C,) parameters broadcast over the axes after the channel axis."""
    trailing = builder.ints([-1] + [1] * (ndim - 2))
    if weight is not None:
        name = builder.node("Mul", [name, builder.node("Reshape", [builder.value(weight), trailing])])
    if bias is not None:
        name = builder.node("Add", [name, builder.node("Reshape", [builder.value(bias), trailing])])
    return name


@converts(instance_norms.group_norm)
def group_norm(builder, out, input, num_groups, weight=None, bias=None, eps=1e-5):
    """Each group normalised as one InstanceNormalization channel: (N, C, ...) -> (N, G, rest) and back."""
    x = builder.value(input)
    grouped = builder.node("Reshape", [x, builder.ints([0, num_groups, -1])])
    normalised = _instance_normalization(builder, grouped, num_groups, input._data.dtype, eps)
    restored = builder.node("Reshape", [normalised, builder.node("Shape", [x])])
    return _channel_affine(builder, restored, weight, bias, input.ndim)


@converts(instance_norms.instance_norm)
def instance_norm(builder, out, input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    if not use_input_stats:  # normalised with the running statistics: that is BatchNormalization
        return batch_norm(builder, out, input, running_mean, running_var, weight, bias, False, momentum, eps)
    x = _instance_normalization(builder, builder.value(input), input.shape[1], input._data.dtype, eps)
    return _channel_affine(builder, x, weight, bias, input.ndim)


def _instance_norm_call(m, input):
    if input.ndim < max(m.expected_ranks):  # unbatched: as its own layer does, through a batch of one
        raise OnnxExportError(f"{type(m).__name__}: export an unbatched input as a batch of one "
                              f"(input.unsqueeze(0)) so that the batch axis can be dynamic")
    return (instance_norms.instance_norm, (input, m.running_mean, m.running_var, m.weight, m.bias,
                                           m.training or not m.track_running_stats, 0.0, m.eps), {})


functional_layer(lambda m, input: (instance_norms.group_norm, (input, m.num_groups, m.weight, m.bias, m.eps), {}),
                 group_normalization.GroupNorm)
functional_layer(_instance_norm_call, group_normalization.InstanceNorm1d, group_normalization.InstanceNorm2d,
                 differs_in_training=lambda m: m.track_running_stats)


# -- dropout (identity in inference) and embedding -------------------------------------------
@converts(dropout_op, channel_dropout_ops.dropout1d, channel_dropout_ops.dropout2d,
          channel_dropout_ops.dropout3d)
def dropout(builder, out, input, p=0.5, training=True, inplace=False):
    return builder.value(input)


def _dropout_precheck(doing, input=None, p=0.5, training=True, inplace=False):
    if training and p > 0:
        raise OnnxExportError(f"{doing} is called with training=True and p={p}: it would draw a mask; ONNX export "
                              f"writes the inference graph. Pass training=False (or self.training after model.eval()).")


dropout.precheck = _dropout_precheck
functional_layer(lambda m, input: (type(m).function, (input, m.p, m.training, m.inplace), {}), activation.Dropout,
                 differs_in_training=lambda m: m.p > 0)


@converts(embedding_op)
def embedding(builder, out, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    if max_norm is not None:
        raise OnnxExportError(f"{builder.doing}: max_norm renormalises the embedding rows in place at every call, "
                              f"which an ONNX graph cannot do; renormalise the weight once before export and drop "
                              f"max_norm")
    return builder.node("Gather", [builder.value(weight), builder.value(input)], axis=0)


functional_layer(lambda m, input: (embedding_op, (input, m.weight, m.padding_idx, m.max_norm, m.norm_type,
                                                           m.scale_grad_by_freq, m.sparse), {}), sparse.Embedding)


# -- layers that are an activation or a reshape with options ---------------------------------
functional_layer(lambda m, input: (linalg.linear, (input, m.weight, m.bias), {}), linear_layers.Linear)
functional_layer(lambda m, input: (shape.flatten, (input, m.start_dim, m.end_dim), {}), linear_layers.Flatten)
functional_layer(lambda m, input, *args, **kwargs: (shape.contiguous, (input,), {}), linear_layers.Identity)
functional_layer(lambda m, input: (TENSOR_METHODS["relu_"] if m.inplace else elementwise.relu, (input,), {}),
                 activation.ReLU)
functional_layer(lambda m, input: (elementwise.sigmoid, (input,), {}), activation.Sigmoid)
functional_layer(lambda m, input: (elementwise.tanh, (input,), {}), activation.Tanh)
functional_layer(lambda m, input: (elementwise.gelu, (input, m.approximate), {}), activation.GELU)
functional_layer(lambda m, input: (activations.leaky_relu, (input, m.negative_slope, m.inplace), {}),
                 activation.LeakyReLU)
functional_layer(lambda m, input: (softmax, (input, m.dim), {}), activation.Softmax)
functional_layer(lambda m, input: (log_softmax, (input, m.dim), {}), activation.LogSoftmax)
functional_layer(lambda m, input: (type(m).function, (input,), {name: getattr(m, name) for name in m._option_names}),
                 pointwise_activation._Pointwise)
functional_layer(lambda m, input: (activations.prelu, (input, m.weight), {}), pointwise_activation.PReLU)
