"""The collective timeout README states is the one the communicators use, and init(timeout=...) overrides it.

The expected default is read from README's sentence about `dist.init(timeout=...)`, so changing the default
means changing README with it (and this test needs no edit).
"""
import inspect
import os
import re

import pytest

from distrain.comm.base import create_communicator
from distrain.comm.nccl import NCCLCommunicator
from distrain.comm.ps.server import ParameterServer

from .test_mpi import REPO, assert_every_rank_ok, run_ranks

SCRIPT = os.path.join(os.path.dirname(__file__), "default_timeout_script.py")


def readme_default_timeout():
    """The N of "default N s" in README's sentence(s) mentioning init(timeout=...)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as file:
        text = " ".join(file.read().split())
    sentences = [sentence for sentence in re.split(r"(?<=\.)\s", text) if "init(timeout=" in sentence]
    values = {float(value) for sentence in sentences
              for value in re.findall(r"default (\d+(?:\.\d+)?) ?(?:s|seconds)\b", sentence)}
    assert len(values) == 1, f"README should state one default collective timeout near init(timeout=...): {sentences}"
    return values.pop()


@pytest.mark.timeout(120)
def test_mpi_init_and_communicator_use_readmes_default():
    seconds = readme_default_timeout()
    code, output = run_ranks(2, "default", repr(seconds), script=SCRIPT, timeout=90)
    assert code == 0, output
    assert_every_rank_ok(output, 2)


def test_ps_communicator_uses_readmes_default():
    secret = b"default-timeout-test-secret-0123"
    server = ParameterServer(1, secret=secret).start()
    try:
        communicator = create_communicator("ps", address=server.address, rank=0, world_size=1, secret=secret)
        try:
            assert communicator.timeout == readme_default_timeout()
        finally:
            communicator.close()
    finally:
        server.close()


def test_nccl_communicator_defaults_to_readmes_timeout():
    """Constructing one needs GPUs, so here the signature's default stands for it."""
    assert inspect.signature(NCCLCommunicator).parameters["timeout"].default == readme_default_timeout()


@pytest.mark.timeout(90)
def test_init_timeout_is_what_a_collective_waits(tmp_path):
    code, output = run_ranks(2, "given", "2.0", str(tmp_path / "rank0-done"), script=SCRIPT, timeout=60)
    assert "rank 0 ok" in output, output  # the exit code is MPI's verdict on a rank left mid-collective
