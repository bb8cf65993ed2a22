"""nn.utils against torch.nn.utils: gradient clipping, parameter vectors, and packing into flat buffers."""
import math

import numpy as np
import pytest
import torch

import distrain
import distrain.nn as nn
from distrain.nn.utils import FlatParameters

from ..oracle import FLOAT_DTYPES, assert_close, to_distrain, to_numpy, to_torch
from .module_oracle import assert_same_grads, twins


def _mlp(lib):
    return lib.nn.Sequential(lib.nn.Linear(4, 6), lib.nn.Tanh(), lib.nn.Linear(6, 3), lib.nn.Tanh(),
                             lib.nn.Linear(3, 2, bias=False))


def _twins_with_grads(dtype, device, scale=1.0):
    d, t = twins(_mlp(distrain), _mlp(torch), dtype, device)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(dtype)
    g = np.random.default_rng(1).standard_normal((5, 2)).astype(dtype) * scale
    d(to_distrain(x, device)).backward(to_distrain(g, device))
    t(to_torch(x)).backward(to_torch(g))
    assert_same_grads(d, t, atol=1e-5 if dtype == np.float32 else None)
    return d, t


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3, math.inf, "inf"], ids=str)
@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_clip_grad_norm_matches_torch(max_norm, norm_type, dtype, device):
    d, t = _twins_with_grads(dtype, device)
    total = nn.utils.clip_grad_norm_(d.parameters(), max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(t.parameters(), max_norm, norm_type=norm_type)
    assert isinstance(total, distrain.Tensor)
    assert_close(total, expected, rtol=1e-5 if dtype == np.float32 else 1e-10, what="total norm")
    assert_same_grads(d, t, atol=1e-5 if dtype == np.float32 else None)
    if max_norm < 1:  # clipped: the new norm is max_norm
        grads = np.concatenate([to_numpy(p.grad).ravel() for p in d.parameters()])
        order = math.inf if norm_type == "inf" else float(norm_type)
        np.testing.assert_allclose(np.linalg.norm(grads.astype(np.float64), order), max_norm, rtol=1e-4)


def test_clip_grad_norm_accepts_a_single_tensor_and_skips_missing_grads(device):
    d, t = _twins_with_grads(np.float64, device)
    d[0].weight.grad = None
    t[0].weight.grad = None
    total = nn.utils.clip_grad_norm_(d.parameters(), 0.1)
    assert_close(total, torch.nn.utils.clip_grad_norm_(t.parameters(), 0.1))
    assert d[0].weight.grad is None
    single = nn.utils.clip_grad_norm_(d[2].weight, 0.01)
    assert_close(single, torch.nn.utils.clip_grad_norm_(t[2].weight, 0.01))
    assert_same_grads(d, t)


def test_clip_grad_norm_error_if_nonfinite(device):
    d, _ = _twins_with_grads(np.float64, device)
    d[0].weight.grad._data[0, 0] = np.inf
    with pytest.raises(distrain.DistrainError):
        nn.utils.clip_grad_norm_(d.parameters(), 1.0, error_if_nonfinite=True)
    layer = torch.nn.Linear(2, 2)
    layer.weight.grad = torch.full((2, 2), math.inf)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("clip_value", [0.01, 0.3, 100.0])
def test_clip_grad_value_matches_torch(clip_value, dtype, device):
    d, t = _twins_with_grads(dtype, device)
    assert nn.utils.clip_grad_value_(d.parameters(), clip_value) is None
    torch.nn.utils.clip_grad_value_(t.parameters(), clip_value)
    assert_same_grads(d, t, atol=1e-5 if dtype == np.float32 else None)
    assert max(float(np.abs(to_numpy(p.grad)).max()) for p in d.parameters()) <= np.asarray(clip_value, dtype=dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_parameters_to_vector_and_back_match_torch(dtype, device):
    d, t = twins(_mlp(distrain), _mlp(torch), dtype, device)
    vector = nn.utils.parameters_to_vector(d.parameters())
    assert_close(vector, torch.nn.utils.parameters_to_vector(t.parameters()))
    new = np.arange(vector.shape[0], dtype=dtype) / 100.0
    nn.utils.vector_to_parameters(to_distrain(new, device), d.parameters())
    torch.nn.utils.vector_to_parameters(to_torch(new), t.parameters())
    for (name, p), q in zip(d.named_parameters(), t.parameters()):
        assert_close(p, q.detach(), what=name)
    # a copy: changing the vector does not change the parameters
    vector.fill_(0.0)
    assert np.any(to_numpy(d[0].weight) != 0)


def test_vector_to_parameters_refuses_a_wrong_length():
    model = _mlp(distrain)
    count = sum(int(np.prod(p.shape)) for p in model.parameters())
    for length in (count - 1, count + 1):
        with pytest.raises(distrain.DistrainError):
            nn.utils.vector_to_parameters(distrain.zeros(length), model.parameters())


# --- packing into flat buffers -------------------------------------------------------------------

def _assert_views_of(flat, parameters):
    for p in parameters:
        offset, numel = flat.segment(p)
        assert numel == int(np.prod(p.shape))
        np.testing.assert_array_equal(flat.data[offset:offset + numel], to_numpy(p).ravel())
        assert np.shares_memory(flat.data, p._data)


def test_pack_parameters_makes_every_parameter_a_view_of_one_buffer(device):
    model = _mlp(distrain).to(device)
    params = list(model.parameters())
    values = [to_numpy(p).copy() for p in params]
    flats = nn.utils.pack_parameters(model.parameters())
    assert len(flats) == 1
    (flat,) = flats
    assert isinstance(flat, FlatParameters) and len(flat) == len(params)
    assert flat.numel() == sum(v.size for v in values) and flat.data.ndim == 1
    assert list(model.parameters()) == params  # identities kept
    for p, v in zip(params, values):
        np.testing.assert_array_equal(to_numpy(p), v)  # values kept
    _assert_views_of(flat, params)
    # offsets are contiguous and in parameter order
    segments = [flat.segment(p) for p in params]
    assert [o for o, _ in segments] == list(np.cumsum([0] + [n for _, n in segments[:-1]]))
    # writing through the buffer changes the parameter and the other way round
    offset, numel = flat.segment(params[1])
    flat.data[offset:offset + numel] = 7.0
    np.testing.assert_array_equal(to_numpy(params[1]), np.full(tuple(params[1].shape), 7.0, dtype=np.float32))
    with distrain.no_grad():
        params[0].fill_(-2.0)
    assert np.all(flat.data[:int(np.prod(params[0].shape))] == -2.0)


def test_pack_parameters_groups_by_dtype():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2).to(distrain.float64))
    flats = nn.utils.pack_parameters(model.parameters())
    assert [f.dtype for f in flats] == [np.dtype(np.float32), np.dtype(np.float64)]
    assert [len(f) for f in flats] == [2, 2]


def test_module_pack_parameters_and_shared_parameters_are_packed_once():
    model = _mlp(distrain)
    model[2].weight = nn.Parameter(distrain.ones(3, 6))
    model.add_module("tied", nn.Linear(6, 3))
    model.tied.weight = model[2].weight
    (flat,) = model.pack_parameters()
    assert len(flat) == len(list(model.parameters()))
    _assert_views_of(flat, model.parameters())


def test_grads_of_a_packed_model_are_views_of_the_flat_gradient(device):
    model = _mlp(distrain).to(device)
    (flat,) = model.pack_parameters()
    model(to_distrain(np.ones((5, 4), dtype=np.float32), device)).sum().backward()
    for p in model.parameters():
        assert FlatParameters.grad_is_flat(p)
        offset, numel = flat.segment(p)
        np.testing.assert_array_equal(flat.grad[offset:offset + numel], to_numpy(p.grad).ravel())
        assert np.shares_memory(flat.grad, p.grad._data)
    # a second backward accumulates, still in the buffer
    before = flat.grad.copy()
    model(to_distrain(np.ones((5, 4), dtype=np.float32), device)).sum().backward()
    np.testing.assert_allclose(flat.grad, 2 * before, rtol=1e-6)
    # zero_grad(set_to_none=True): .grad is None; the next backward binds the flat view again
    model.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    model(to_distrain(np.ones((5, 4), dtype=np.float32), device)).sum().backward()
    for p in model.parameters():
        assert FlatParameters.grad_is_flat(p)
    np.testing.assert_allclose(flat.grad, before, rtol=1e-6)
    # zero_grad(set_to_none=False) zeroes the buffer slices in place
    model.zero_grad(set_to_none=False)
    assert not np.any(flat.grad)
    assert all(FlatParameters.grad_is_flat(p) for p in model.parameters())


def _train(model, packed, steps=4, lr=0.1, device="cpu"):
    if packed:
        model.pack_parameters()
    rng = np.random.default_rng(3)
    losses = []
    for _ in range(steps):
        x = to_distrain(rng.standard_normal((8, 4)), device)
        y = to_distrain(rng.standard_normal((8, 2)), device)
        model.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        with distrain.no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data
        losses.append(loss.item())
    return losses


def test_training_a_packed_model_gives_the_same_numbers_as_unpacked(device):
    distrain.manual_seed(0)
    plain = _mlp(distrain).to(device, distrain.float64)
    distrain.manual_seed(0)
    packed = _mlp(distrain).to(device, distrain.float64)
    plain_losses = _train(plain, packed=False, device=device)
    packed_losses = _train(packed, packed=True, device=device)
    np.testing.assert_allclose(packed_losses, plain_losses, rtol=1e-12)
    assert packed_losses[-1] < packed_losses[0]
    for (name, p), q in zip(plain.named_parameters(), packed.parameters()):
        np.testing.assert_allclose(to_numpy(q), to_numpy(p), rtol=1e-12, err_msg=name)
        # the update went through the views: the parameters are still packed
        assert q.__dict__.get("_flat") is not None and FlatParameters.grad_is_flat(q)


def test_a_flat_sgd_step_equals_the_per_parameter_step(device):
    distrain.manual_seed(1)
    model = _mlp(distrain).to(device)
    (flat,) = model.pack_parameters()
    model(to_distrain(np.ones((3, 4), dtype=np.float32), device)).sum().backward()
    expected = [to_numpy(p) - 0.5 * to_numpy(p.grad) for p in model.parameters()]
    flat.data -= 0.5 * flat.grad  # one array op for the whole model
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_allclose(to_numpy(p), e, rtol=1e-6)


def test_clipping_a_packed_model_scales_the_flat_gradient(device):
    d, t = _twins_with_grads(np.float64, device)
    (flat,) = d.pack_parameters()
    total = nn.utils.clip_grad_norm_(d.parameters(), 0.05)
    assert_close(total, torch.nn.utils.clip_grad_norm_(t.parameters(), 0.05))
    assert_same_grads(d, t)
    np.testing.assert_allclose(np.linalg.norm(flat.grad), 0.05, rtol=1e-5)
    nn.utils.clip_grad_value_(d.parameters(), 0.001)
    assert np.abs(flat.grad).max() <= 0.001
    assert all(FlatParameters.grad_is_flat(p) for p in d.parameters())


def test_moving_a_packed_model_unpacks_it_and_keeps_values():
    model = _mlp(distrain)
    (flat,) = model.pack_parameters()
    values = [to_numpy(p).copy() for p in model.parameters()]
    model.to(distrain.float64)
    for p, v in zip(model.parameters(), values):
        assert p not in flat
        np.testing.assert_array_equal(to_numpy(p), v.astype(np.float64))
