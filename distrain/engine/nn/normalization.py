"""BatchNorm1d, BatchNorm2d and LayerNorm (computation in ops/normalization.py)."""
from __future__ import annotations

from ...errors import ShapeError
from .. import dtypes, factories
from ..ops.normalization import batch_norm, layer_norm
from .module import Module
from .parameter import Parameter


def add_affine_parameters(module, shape, affine, bias, device, dtype):
    """A normalisation's learnable scale (ones) and shift (zeros) of `shape`, or None for each it does not have."""
    if affine:
        module.weight = Parameter(factories.ones(*shape, device=device, dtype=dtype))
        if bias:
            module.bias = Parameter(factories.zeros(*shape, device=device, dtype=dtype))
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: they differ only in the input ranks they accept."""

    expected_ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, bias=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        add_affine_parameters(self, (num_features,), affine, bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", factories.zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", factories.ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", factories.tensor(0, dtype=dtypes.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def forward(self, input):
        if input.ndim not in self.expected_ranks:
            raise ShapeError(f"{type(self).__name__}: expected a {' or '.join(f'{r}-D' for r in self.expected_ranks)} "
                             f"input, got shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}({self.num_features}): input has {input.shape[1]} channels "
                             f"(shape {tuple(input.shape)}), expected {self.num_features}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._data += 1
            self.num_batches_tracked._version_counter[0] += 1
            if self.momentum is None:  # cumulative moving average over all batches seen
                # a 0-d array of the statistics' dtype, not a Python float: a static graph recomputes it
                counted = self.num_batches_tracked._data
                factor = (1.0 / counted).astype(self.running_mean._data.dtype if self.running_mean is not None
                                                else counted.dtype)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs per channel C.

    Training: normalise with the batch's mean and (biased) variance and update the
    running estimates (momentum 0.1, unbiased variance); eval: use the running estimates.
    """

    expected_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs per channel C (see BatchNorm1d)."""

    expected_ranks = (4,)


class LayerNorm(Module):
    """Normalise each sample over its last dimensions `normalized_shape`, then scale and shift."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        add_affine_parameters(self, self.normalized_shape, elementwise_affine, bias, device, dtype)

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
