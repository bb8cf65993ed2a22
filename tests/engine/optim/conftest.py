"""The optimizer tests run torch single-threaded: its tiny ops only lose time to thread hand-offs on a busy machine."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_threaded_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
