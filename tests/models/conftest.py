"""Seed both libraries before every model test: the torch twins' random weights are what distrain loads,
so a failing case reproduces with the same weights."""
import pytest
import torch

import distrain


@pytest.fixture(autouse=True)
def _seed_both_libraries():
    torch.manual_seed(0)
    distrain.manual_seed(0)
