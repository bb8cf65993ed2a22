"""Random sampling from tensors: multinomial, bernoulli, normal, and the in-place fills
normal_, uniform_, bernoulli_, exponential_, random_.

Every draw comes from the tensor's device's default generator (or the `generator=` given),
so `distrain.manual_seed` makes them repeatable. The numbers differ from PyTorch's (another
bit generator); the distributions are the same.

multinomial with replacement inverts each row's cumulative weights at uniform draws;
without replacement it takes the top k of log(weight) + Gumbel noise, which draws k
distinct categories with the probabilities of sequential sampling without replacement (once
the positive weights are used up, the zero-weight categories follow, as in PyTorch).
"""
from __future__ import annotations

import numpy

from ...errors import ArgumentError, ShapeError
from .. import dtypes
from ..backend import array_module
from ..random import default_generator
from .core import Tensor, wrap


def _generator(tensor, generator):
    return generator if generator is not None else default_generator(tensor.device)


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """`num_samples` category indices (int64) per row of non-negative weights `input` (1-D or 2-D)."""
    data = input._data
    if data.ndim not in (1, 2) or data.dtype.kind != "f":
        raise ShapeError(f"multinomial: input must be a 1-D or 2-D floating-point tensor of weights, got shape "
                         f"{tuple(data.shape)} dtype {data.dtype}")
    xp = array_module(data)
    rows = data.reshape(-1, data.shape[-1]).astype(dtypes.float64)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ArgumentError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    if rows.size and (not bool(xp.isfinite(rows).all()) or float(rows.min()) < 0):
        raise ArgumentError("multinomial: weights must be finite and non-negative")
    positive = (rows > 0).sum(axis=1)
    if bool((positive == 0).any()):
        raise ArgumentError("multinomial: every row of weights needs a positive sum")
    if not replacement and num_samples > rows.shape[1]:
        raise ArgumentError(f"multinomial: cannot draw {num_samples} samples without replacement from "
                            f"{rows.shape[1]} categories; pass replacement=True")
    draws = _generator(input, generator).uniform((rows.shape[0], num_samples if replacement else rows.shape[1]),
                                                 dtypes.float64)
    if replacement:
        cumulative = xp.cumsum(rows, axis=1)
        targets = draws * cumulative[:, -1:]
        picked = xp.stack([xp.searchsorted(c, t, side="right") for c, t in zip(cumulative, targets)])
        picked = xp.minimum(picked, rows.shape[1] - 1)
    else:
        with numpy.errstate(divide="ignore"):
            keys = xp.log(rows) - xp.log(-xp.log(draws))  # weight zero: key -inf, never picked
        picked = xp.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
    out = picked.astype(dtypes.int64)
    return wrap(out.reshape(-1) if data.ndim == 1 else out)


def bernoulli(input, p=None, *, generator=None):
    """1 with probability `p` (default: each element of input), else 0, in input's dtype."""
    probability = input._data if p is None else p
    draws = _generator(input, generator).uniform(input._data.shape, input.dtype if input.dtype.kind == "f"
                                                 else dtypes.float32)
    return wrap((draws < probability).astype(input.dtype))


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None):
    """Draws from N(mean, std^2): elementwise for tensor mean/std, or `size` draws for numbers."""
    from ..factories import randn

    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        like = mean if isinstance(mean, Tensor) else std
        shape = numpy.broadcast_shapes(*(tuple(t.shape) for t in (mean, std) if isinstance(t, Tensor)))
        noise = wrap(_generator(like, generator).normal(shape, like.dtype))
        return (noise * std + mean).detach()
    if size is None:
        raise ArgumentError("normal: give size= when mean and std are numbers")
    return randn(size, dtype=dtype, device=device, generator=generator) * std + mean


def _fill(name, draw):
    """An in-place fill `x.name(...)` with values from `draw(generator, shape, dtype, *args)`."""

    def method(self, *args, generator=None, **kwargs):
        from .inplace import copy_

        values = draw(_generator(self, generator), tuple(self.shape), self.dtype, *args, **kwargs)
        return copy_(self, wrap(values))

    method.__name__ = name
    return method


def _check_order(name, low, high):
    if not low <= high:
        raise ArgumentError(f"{name}: from ({low}) must not exceed to ({high})")


def _uniform(generator, shape, dtype, a=0.0, b=1.0):
    _check_order("uniform_", a, b)
    return generator.uniform(shape, dtype) * (b - a) + a


def _normal(generator, shape, dtype, mean=0.0, std=1.0):
    return generator.normal(shape, dtype) * std + mean


def _exponential(generator, shape, dtype, lambd=1.0):
    draws = generator.uniform(shape, dtype)
    return -array_module(draws).log1p(-draws) / lambd


def _bernoulli(generator, shape, dtype, p=0.5):
    probability = p._data if isinstance(p, Tensor) else p
    return (generator.uniform(shape, dtypes.float64) < probability).astype(dtype)


def _random(generator, shape, dtype, low=None, high=None):
    if high is None:
        low, high = 0, low if low is not None else 2 ** 24
    _check_order("random_", low, high - 1)
    return generator.integers(low, high, shape, dtypes.int64).astype(dtype)


uniform_ = _fill("uniform_", _uniform)
normal_ = _fill("normal_", _normal)
exponential_ = _fill("exponential_", _exponential)
bernoulli_ = _fill("bernoulli_", _bernoulli)
random_ = _fill("random_", _random)

__all__ = ["Tensor", "bernoulli", "bernoulli_", "exponential_", "multinomial", "normal", "normal_", "random_", "uniform_"]
