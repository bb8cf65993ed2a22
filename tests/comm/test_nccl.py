"""The NCCL communicator: its unique-id exchange and install hint everywhere; collectives where there is a GPU.

NCCL needs one GPU per rank, so the collectives run as a world of one on a single GPU
(each collective still goes through NCCL on the communication stream), and across ranks
only on a machine with at least two GPUs.
"""
import importlib.util
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from distrain.comm import create_communicator
from distrain.comm.nccl import _decode_unique_id, _encode_unique_id
from tests.conftest import CUDA_AVAILABLE


def needs_cuda(test):
    return pytest.mark.cuda(pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs cupy and a CUDA device")(test))

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("unique_id", [bytes(range(128)), tuple(range(-64, 64)), tuple(range(100, 228))])
def test_unique_id_survives_the_rendezvous_in_both_cupy_forms(unique_id):
    assert _decode_unique_id(_encode_unique_id(unique_id)) == unique_id


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_without_cupy_the_nccl_backend_says_what_to_install():
    with pytest.raises(ImportError, match=r"nccl.*distrain\[gpu\]"):
        create_communicator("nccl")


@pytest.fixture
def nccl_world_of_one():
    communicator = create_communicator("nccl", rank=0, world_size=1, timeout=30)
    yield communicator
    communicator.close()


@needs_cuda
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64"])
def test_collectives_of_one_rank_on_the_gpu(nccl_world_of_one, op, dtype):
    import cupy

    if op == "mean" and dtype == "int64":
        with pytest.raises(TypeError, match="floating-point"):
            nccl_world_of_one.allreduce(cupy.arange(3), "mean")
        return
    values = cupy.arange(12, dtype=dtype).reshape(3, 4)
    expected = values.get()
    handle = nccl_world_of_one.allreduce_async(values, op)
    handle.wait()
    assert handle.is_completed()
    np.testing.assert_array_equal(values.get(), expected)
    host = np.arange(5, dtype=dtype)
    nccl_world_of_one.allreduce(host, op)  # NumPy arrays are staged through the GPU and back
    np.testing.assert_array_equal(host, np.arange(5, dtype=dtype))


@needs_cuda
def test_broadcast_allgather_and_objects_on_the_gpu(nccl_world_of_one):
    import cupy

    values = cupy.arange(6, dtype=cupy.float32)
    nccl_world_of_one.broadcast(values, root=0)
    np.testing.assert_array_equal(values.get(), np.arange(6, dtype=np.float32))
    gathered = nccl_world_of_one.allgather(cupy.ones((2, 3), dtype=cupy.float32))
    assert gathered.shape == (1, 2, 3) and float(gathered.sum()) == 6.0
    assert nccl_world_of_one.allgather_object({"rank": 0, "shape": (2, 3)}) == [{"rank": 0, "shape": (2, 3)}]
    nccl_world_of_one.barrier()
    with pytest.raises(ValueError, match="root rank 1 does not exist"):
        nccl_world_of_one.broadcast(values, root=1)
    with pytest.raises(ValueError, match="C-contiguous"):
        nccl_world_of_one.allreduce(cupy.ones((4, 4), dtype=cupy.float32)[:, ::2])


def _gpu_count():
    if not CUDA_AVAILABLE:
        return 0
    import cupy

    return cupy.cuda.runtime.getDeviceCount()


@pytest.mark.cuda
@pytest.mark.timeout(300)
@pytest.mark.skipif(_gpu_count() < 2, reason="NCCL across ranks needs one GPU per rank (2 or more GPUs)")
def test_ddp_over_nccl_through_the_launchers_rendezvous_equals_one_process():
    script = os.path.join(REPO, "tests", "comm", "ddp_script.py")
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.Popen([sys.executable, "-m", "distrain.launch", "-n", "2", "--backend", "nccl", script, "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, output
    assert output.count(" ok") == 2, output
