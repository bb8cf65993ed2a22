"""distrain.accelerator and distrain.backends against torch.accelerator and torch.backends on the same machine."""
import importlib.util

import pytest
import torch

import distrain
import distrain.backends.cudnn as cudnn  # the import style of PyTorch's ImageNet example
from tests.conftest import CUDA_AVAILABLE


def test_current_accelerator_is_cuda_where_cupy_is_installed():
    installed = importlib.util.find_spec("cupy") is not None
    assert distrain.accelerator.current_accelerator() == ("cuda" if installed else None)
    expected = distrain.device("cuda") if CUDA_AVAILABLE else None
    assert distrain.accelerator.current_accelerator(check_available=True) == expected


def test_is_available_and_device_count_are_the_gpus_distrain_can_use():
    assert distrain.accelerator.is_available() == distrain.cuda.is_available() == CUDA_AVAILABLE
    assert distrain.accelerator.device_count() == distrain.cuda.device_count()


def test_the_device_choice_of_pytorchs_examples_runs():
    accelerator = distrain.accelerator
    device = accelerator.current_accelerator() if accelerator.is_available() else distrain.device("cpu")
    assert distrain.nn.Linear(2, 2).to(device)(distrain.ones(1, 2).to(device)).shape == (1, 2)


DEVICE_CALLS = {
    "current_device_index": lambda lib: lib.accelerator.current_device_index(),
    "set_device_index": lambda lib: lib.accelerator.set_device_index(0),
    "synchronize": lambda lib: lib.accelerator.synchronize(),
    "empty_cache": lambda lib: lib.accelerator.empty_cache(),
    "memory_allocated": lambda lib: lib.accelerator.memory_allocated(),
    "memory_reserved": lambda lib: lib.accelerator.memory_reserved(),
}


@pytest.mark.parametrize("call", DEVICE_CALLS)
def test_device_calls_work_on_a_gpu_and_raise_runtime_errors_without_one(call):
    if CUDA_AVAILABLE:
        DEVICE_CALLS[call](distrain)
        return
    if not torch.accelerator.is_available():  # PyTorch's answer on the same machine
        with pytest.raises(RuntimeError):
            DEVICE_CALLS[call](torch)
    with pytest.raises(distrain.DeviceError, match="none is available"):
        DEVICE_CALLS[call](distrain)


def test_device_index_none_changes_nothing_as_in_pytorch():
    for lib in (distrain, torch):
        with lib.accelerator.device_index(None):
            pass


@pytest.mark.parametrize("flag", ["enabled", "benchmark", "deterministic", "allow_tf32"])
def test_cudnn_flags_start_as_pytorchs_and_keep_what_is_assigned(flag):
    assert getattr(cudnn, flag) == getattr(torch.backends.cudnn, flag)
    original = getattr(cudnn, flag)
    try:
        setattr(distrain.backends.cudnn, flag, not original)
        assert getattr(cudnn, flag) is (not original)
    finally:
        setattr(cudnn, flag, original)


def test_cudnn_flags_context_restores_the_flags():
    with cudnn.flags(enabled=True, benchmark=True, deterministic=True):
        assert (cudnn.enabled, cudnn.benchmark, cudnn.deterministic) == (True, True, True)
    assert (cudnn.enabled, cudnn.benchmark, cudnn.deterministic) == (True, False, False)


def test_cudnn_is_not_used_so_not_available():
    assert cudnn.is_available() is False and cudnn.version() is None


def test_mps_is_never_available():
    assert distrain.backends.mps.is_available() is False and distrain.backends.mps.is_built() is False
    assert torch.backends.mps.is_available() is False  # the oracle agrees on this (non-Apple) machine


@pytest.mark.parametrize("flag", ["allow_tf32", "allow_fp16_reduced_precision_reduction",
                                  "allow_bf16_reduced_precision_reduction"])
def test_cuda_matmul_flags_start_as_pytorchs(flag):
    assert getattr(distrain.backends.cuda.matmul, flag) == getattr(torch.backends.cuda.matmul, flag)
