"""F.interpolate / Upsample / UpsamplingNearest2d / UpsamplingBilinear2d and PixelShuffle / PixelUnshuffle against
torch: outputs and input gradients for every mode, size and scale-factor form, align_corners both ways, repr, second
derivatives, and the errors for bad arguments."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import distrain
import distrain.nn as nn
import distrain.nn.functional as F

from ..oracle import FLOAT_DTYPES, check_op_against_torch, check_second_order_against_torch
from .module_oracle import check_module_against_torch, random_input, twins

# id -> (input shape, interpolate kwargs)
INTERPOLATE = {
    "nearest_x2": ((2, 3, 4, 5), {"scale_factor": 2}),
    "nearest_size": ((2, 3, 5, 7), {"size": (8, 3)}),
    "nearest_fractional": ((1, 2, 5, 7), {"scale_factor": 1.7}),
    "nearest_down": ((1, 2, 7, 9), {"scale_factor": 0.5}),
    "nearest_recompute": ((1, 2, 5, 7), {"scale_factor": 1.7, "recompute_scale_factor": True}),
    "nearest_1d": ((2, 3, 5), {"size": 12}),
    "nearest_3d": ((1, 2, 2, 3, 3), {"scale_factor": (2, 1, 3)}),
    "nearest_exact": ((1, 2, 5, 7), {"scale_factor": 1.6, "mode": "nearest-exact"}),
    "nearest_exact_down": ((1, 2, 9, 7), {"size": (4, 3), "mode": "nearest-exact"}),
    "linear": ((2, 3, 6), {"scale_factor": 1.5, "mode": "linear"}),
    "linear_align": ((2, 3, 6), {"size": 13, "mode": "linear", "align_corners": True}),
    "bilinear_x2": ((2, 3, 4, 5), {"scale_factor": 2, "mode": "bilinear"}),
    "bilinear_x2_align": ((2, 3, 4, 5), {"scale_factor": 2, "mode": "bilinear", "align_corners": True}),
    "bilinear_size": ((2, 3, 5, 7), {"size": (9, 4), "mode": "bilinear", "align_corners": False}),
    "bilinear_size_align": ((2, 3, 5, 7), {"size": (9, 4), "mode": "bilinear", "align_corners": True}),
    "bilinear_scale_pair": ((1, 2, 5, 7), {"scale_factor": (2.3, 0.6), "mode": "bilinear"}),
    "bilinear_to_one": ((1, 2, 5, 7), {"size": (1, 3), "mode": "bilinear", "align_corners": True}),
    "bilinear_recompute": ((1, 2, 5, 7), {"scale_factor": 1.3, "mode": "bilinear", "recompute_scale_factor": True}),
    "trilinear": ((1, 2, 2, 3, 4), {"scale_factor": 2, "mode": "trilinear"}),
    "area": ((2, 3, 7, 9), {"size": (3, 4), "mode": "area"}),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(INTERPOLATE))
def test_interpolate_matches_torch(case, dtype, device):
    shape, kwargs = INTERPOLATE[case]
    check_op_against_torch(lambda x: F.interpolate(x, **kwargs), lambda x: TF.interpolate(x, **kwargs),
                           [random_input(shape)], dtype, device)


@pytest.mark.parametrize("case", ["bilinear_scale_pair", "nearest_fractional", "linear_align"])
def test_interpolate_second_derivatives_match_torch(case, device):
    shape, kwargs = INTERPOLATE[case]
    check_second_order_against_torch(lambda x: F.interpolate(x, **kwargs).tanh(),
                                     lambda x: TF.interpolate(x, **kwargs).tanh(), [random_input(shape)],
                                     np.float64, device)


# id -> (module factory taking the library's nn, input shape)
MODULES = {
    "Upsample_scale": (lambda lib: lib.Upsample(scale_factor=2), (1, 2, 3, 4)),
    "Upsample_scale_pair": (lambda lib: lib.Upsample(scale_factor=(2.0, 1.5), mode="bilinear"), (1, 2, 3, 4)),
    "Upsample_size": (lambda lib: lib.Upsample(size=(5, 6), mode="bilinear", align_corners=True), (1, 2, 3, 4)),
    "Upsample_linear": (lambda lib: lib.Upsample(size=7, mode="linear"), (2, 2, 3)),
    "UpsamplingNearest2d": (lambda lib: lib.UpsamplingNearest2d(scale_factor=3), (1, 2, 3, 4)),
    "UpsamplingBilinear2d": (lambda lib: lib.UpsamplingBilinear2d(size=(4, 7)), (1, 2, 3, 4)),
    "PixelShuffle": (lambda lib: lib.PixelShuffle(2), (2, 8, 3, 4)),
    "PixelShuffle_batch_dims": (lambda lib: lib.PixelShuffle(3), (2, 2, 9, 2, 3)),
    "PixelShuffle_unbatched": (lambda lib: lib.PixelShuffle(2), (4, 2, 2)),
    "PixelUnshuffle": (lambda lib: lib.PixelUnshuffle(2), (2, 2, 4, 6)),
    "PixelUnshuffle_batch_dims": (lambda lib: lib.PixelUnshuffle(3), (2, 2, 1, 3, 6)),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_module_matches_torch(name, device):
    factory, shape = MODULES[name]
    d, t = twins(factory(nn), factory(torch.nn), np.float32, device)
    check_module_against_torch(d, t, [random_input(shape)], np.float32, device)


@pytest.mark.parametrize("name", list(MODULES))
def test_module_repr_matches_torch(name):
    factory, _ = MODULES[name]
    assert repr(factory(nn)) == repr(factory(torch.nn))


def test_pixel_unshuffle_inverts_pixel_shuffle():
    x = distrain.randn(2, 12, 3, 5)
    np.testing.assert_array_equal(F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2).numpy(), x.numpy())


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4)), ValueError, "exactly one of size and scale_factor"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), size=3, scale_factor=2), ValueError, "exactly one"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), size=(3, 4, 5)), ValueError,
     r"size must be an int or 2 int\(s\)"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), scale_factor=(2, 2, 2)), ValueError,
     r"scale_factor must be a number or 2 number\(s\)"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4), scale_factor=2, mode="bilinear"), ValueError,
     "bilinear mode needs a 4-D input"),
    (lambda: F.interpolate(distrain.randn(4, 4), scale_factor=2), ValueError, "expected a 3-D, 4-D or 5-D input"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), scale_factor=2, align_corners=True), ValueError,
     "align_corners option can only be set with the interpolating modes"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), scale_factor=2, mode="bicubic"), ValueError,
     "mode 'bicubic' is not supported"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), size=2, recompute_scale_factor=True), ValueError,
     "recompute_scale_factor is not meaningful"),
    (lambda: F.interpolate(distrain.randn(1, 2, 4, 4), scale_factor=0.1), ValueError, "must be positive"),
    (lambda: F.pixel_shuffle(distrain.randn(1, 6, 2, 2), 2), ValueError,
     r"channel dimension of input \(1, 6, 2, 2\) \(6\) must be divisible by upscale_factor squared"),
    (lambda: F.pixel_shuffle(distrain.randn(4, 2), 2), ValueError, "at least 3 dimensions"),
    (lambda: F.pixel_unshuffle(distrain.randn(1, 2, 4, 5), 2), ValueError,
     r"height and width .* must be divisible by downscale_factor \(2\)"),
    (lambda: F.pixel_shuffle(distrain.randn(1, 4, 2, 2), 0), ValueError, "upscale_factor must be a positive int"),
], ids=["neither", "both", "size_length", "scale_length", "mode_rank", "input_rank", "align_corners_nearest",
        "unknown_mode", "recompute_with_size", "empty_output", "shuffle_channels", "shuffle_rank", "unshuffle_size",
        "shuffle_factor"])
def test_bad_arguments_are_refused_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()
