"""distrain.utils: PyTorch's import path for the data pipeline, and nothing else.

`torch.utils.data` is where every tutorial imports `DataLoader` and `Dataset` from, so
`distrain.utils.data` (and its submodules `dataset`, `sampler`, `dataloader`,
`distributed`) name the very objects of `distrain.data`: a program needs only its
`import torch` changed. There is deliberately no grab-bag of helpers here.
"""
from . import data

__all__ = ["data"]
