"""Shared tensors are seen across processes: Process arguments and Queues, under fork, spawn and forkserver.

Each start method runs tests/multiprocessing/shared_script.py (warnings are errors) in a process group of
its own. Before share_memory_() existed the script failed at once; with the arrays copied instead of shared
(plain pickling), every child's write would be lost and the closed forms below would not hold.
"""
import json
import os
import sys

import numpy as np
import pytest

from tests.compat.twins import environment
from tests.process_group import run_group

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared_script.py")


def shm_names():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.fixture(scope="module", params=["fork", "spawn", "forkserver"])
def shared_run(request):
    before = shm_names()
    result = run_group([sys.executable, "-W", "error", SCRIPT, request.param], timeout=180, env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):]), result.stderr, shm_names() - before


def test_each_child_adds_to_its_slot_of_one_shared_tensor(shared_run):
    result = shared_run[0]
    assert result["slots_after_processes"] == [1.0, 2.0, 3.0, 0.0]  # Process(args=(index, slots))
    assert result["slots_after_spawn"] == [2.0, 4.0, 6.0, 0.0]  # start_processes(args=(slots,)), the same tensor


def test_optimizers_created_in_children_update_the_shared_model(shared_run):
    """Three children each take one SGD step (lr 0.1) of a loss whose gradient is rank + 1 for every weight."""
    result = shared_run[0]
    np.testing.assert_allclose(result["weight"], np.arange(6).reshape(2, 3) - 0.6, atol=1e-6)
    assert result["bias"] == pytest.approx([10 - 0.6, 20 - 0.6], abs=1e-6)
    for child in result["children"]:  # packed in one flat buffer over the shared memory, not repacked
        assert child["packed_together"] and child["shared"] == [True, True]
        assert child["grad"] == [child["rank"] + 1.0] * 2  # each child's own gradient
    assert result["parent_grad"] is None  # gradients are not shared


def test_tensors_through_queues(shared_run):
    result = shared_run[0]
    assert result["child_saw_shared"] == [True, False]
    assert result["parent_to_child"] == [[42.0, 0.0], [0.0, 0.0]]  # the shared one written, the copy not
    assert result["received"] == [True, [7.0, 7.0, 7.0]]  # a child's shared tensor arrives shared
    assert result["child_to_parent"] == [7.0, 5.0, 7.0]  # and the parent's write reaches the child
    assert result["exit_codes"] == [0, 0, 0, 0]


def test_memory_is_released_and_nothing_leaks(shared_run):
    result, stderr, new_shm_files = shared_run
    assert result["segments_while_held"] == 4  # slots, the model's flat buffer, two queue tensors
    assert result["segments_after_release"] == 0  # unmapped (and closed) once the last tensor is gone
    assert not new_shm_files
    assert "resource_tracker" not in stderr and "leaked" not in stderr and "Warning" not in stderr, stderr
