"""Process-wide switches against PyTorch's: inference_mode, deterministic algorithms, the default device, seeds."""
import threading

import numpy as np
import pytest
import torch

import distrain
from tests.conftest import CUDA_AVAILABLE


# -- inference_mode ------------------------------------------------------------------------
def modes(lib):
    return lib.is_grad_enabled(), lib.is_inference_mode_enabled()


def nested_modes(lib):
    """Every combination a program meets, as the (grad, inference) flags seen at each point."""
    seen = [modes(lib)]
    with lib.inference_mode():
        seen.append(modes(lib))
        with lib.inference_mode(False):
            seen.append(modes(lib))
        with lib.no_grad():
            seen.append(modes(lib))
        seen.append(modes(lib))
    with lib.no_grad():
        with lib.inference_mode(mode=False):
            seen.append(modes(lib))
    seen.append(modes(lib))
    return seen


def test_inference_mode_switches_grad_and_inference_flags_as_pytorch():
    assert nested_modes(distrain) == nested_modes(torch)


def decorated(lib):
    @lib.inference_mode
    def bare():
        return modes(lib)

    @lib.inference_mode()
    def called():
        return modes(lib)

    @lib.inference_mode(mode=False)
    def off():
        return modes(lib)

    with lib.no_grad():
        return [bare(), called(), off(), modes(lib)]


def test_inference_mode_decorates_bare_called_and_switched_off_as_pytorch():
    assert decorated(distrain) == decorated(torch)


def test_results_inside_inference_mode_record_no_graph():
    weights = np.ones(2, dtype=np.float32)
    for lib in (distrain, torch):
        w = lib.tensor(weights, requires_grad=True)
        with lib.inference_mode():
            y = w * 2
        assert (y.requires_grad, y.grad_fn) == (False, None)


def test_inference_mode_is_per_thread():
    seen = {}
    with distrain.inference_mode():
        thread = threading.Thread(target=lambda: seen.update(other=modes(distrain)))
        thread.start()
        thread.join(timeout=30)
        seen["this"] = modes(distrain)
    assert seen == {"other": (True, False), "this": (False, True)}


def test_inference_mode_is_in_autograd_too():
    assert distrain.autograd.inference_mode is distrain.inference_mode


# -- deterministic algorithms ----------------------------------------------------------------
def switch_states(lib):
    seen = []
    for mode, warn_only in [(True, False), (True, True), (False, False)]:
        lib.use_deterministic_algorithms(mode, warn_only=warn_only)
        seen.append((lib.are_deterministic_algorithms_enabled(), lib.is_deterministic_algorithms_warn_only_enabled(),
                     lib.get_deterministic_debug_mode()))
    for level in ["warn", 2, "default", 1, 0]:
        lib.set_deterministic_debug_mode(level)
        seen.append((lib.are_deterministic_algorithms_enabled(), lib.is_deterministic_algorithms_warn_only_enabled()))
    return seen


def test_deterministic_algorithm_switches_read_back_as_pytorchs():
    try:
        assert switch_states(distrain) == switch_states(torch)
    finally:
        distrain.use_deterministic_algorithms(False)
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("call", [lambda: distrain.use_deterministic_algorithms("yes"),
                                  lambda: distrain.set_deterministic_debug_mode(3)])
def test_bad_deterministic_settings_are_refused_naming_what_is_accepted(call):
    with pytest.raises(distrain.ArgumentError, match="expected|True or False"):
        call()
    assert not distrain.are_deterministic_algorithms_enabled()


# -- the default device ----------------------------------------------------------------------
@pytest.fixture
def restore_default_device():
    yield
    distrain.set_default_device(None)


def test_the_default_device_is_pytorchs_cpu_device():
    assert repr(distrain.get_default_device()) == repr(torch.get_default_device())


def test_new_tensors_and_layers_go_to_the_default_device(device, restore_default_device):
    distrain.set_default_device(device)
    assert distrain.get_default_device() == device
    made = [distrain.zeros(2), distrain.randn(2, 2), distrain.tensor([1.0]), distrain.arange(3), distrain.eye(2),
            distrain.full((2,), 1.5), distrain.Tensor([1.0]), distrain.nn.Linear(2, 2).weight]
    assert [str(t.device) for t in made] == [device] * len(made)
    assert str(distrain.zeros(2, device="cpu").device) == "cpu"  # naming a device still wins
    assert str(distrain.from_numpy(np.ones(2)).device) == "cpu"  # shares the NumPy array's memory
    distrain.set_default_device(None)
    assert distrain.get_default_device() == "cpu" and str(distrain.zeros(1).device) == "cpu"


def test_a_cuda_default_makes_gpu_tensors_or_fails_naming_cuda_when_there_is_no_gpu(restore_default_device):
    distrain.set_default_device("cuda")
    if CUDA_AVAILABLE:
        assert distrain.zeros(2).is_cuda
    else:
        with pytest.raises(distrain.DeviceError, match="cuda"):
            distrain.zeros(2)


# -- seeds -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7, -1, -2 ** 63, 2 ** 64 - 1, 2 ** 63])
def test_manual_seed_takes_pytorchs_seed_range(seed):
    distrain.manual_seed(seed)
    torch.manual_seed(seed)
    assert distrain.initial_seed() == torch.initial_seed()


@pytest.mark.parametrize("seed", [2 ** 64, -2 ** 63 - 1])
def test_manual_seed_refuses_seeds_out_of_pytorchs_range(seed):
    with pytest.raises(ValueError):
        torch.manual_seed(seed)
    with pytest.raises(distrain.ArgumentError, match=r"\[-2\*\*63, 2\*\*64\)"):
        distrain.manual_seed(seed)


def every_random_draw(seed):
    """Everything in distrain that draws random numbers, after one manual_seed."""
    distrain.manual_seed(seed)
    data = distrain.utils.data
    dataset = data.TensorDataset(distrain.arange(20))
    draws = [distrain.randn(3), distrain.rand(3), distrain.randint(0, 100, (3,)), distrain.randperm(6),
             distrain.nn.functional.dropout(distrain.ones(8), 0.5), distrain.nn.Linear(2, 2).weight,
             distrain.rand_like(distrain.zeros(2))]
    order = [batch[0].tolist() for batch in data.DataLoader(dataset, batch_size=5, shuffle=True)]
    split = [subset.indices for subset in data.random_split(dataset, [0.5, 0.5])]
    sampled = list(data.RandomSampler(dataset))
    return [t.tolist() for t in draws] + [order, split, sampled]


def test_manual_seed_makes_every_random_draw_repeat():
    first, again, other = every_random_draw(3), every_random_draw(3), every_random_draw(4)
    assert first == again
    assert all(a != b for a, b in zip(first, other))


def test_cuda_manual_seed_is_accepted_without_a_gpu_and_leaves_the_cpu_generator_alone():
    distrain.manual_seed(5)
    expected = distrain.randn(3).tolist()
    distrain.manual_seed(5)
    distrain.cuda.manual_seed(9)
    distrain.cuda.manual_seed_all(9)
    assert distrain.randn(3).tolist() == expected


@pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_manual_seed_repeats_gpu_draws():
    draws = []
    for _ in range(2):
        distrain.cuda.manual_seed_all(11)
        draws.append(distrain.randn(4, device="cuda").cpu().tolist())
    assert draws[0] == draws[1]
