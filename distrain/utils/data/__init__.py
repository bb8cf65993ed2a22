"""torch.utils.data's import path for `distrain.data`: the same objects, not copies.

`from distrain.utils.data import DataLoader` gives `distrain.data.DataLoader` itself, so
`isinstance` checks and subclassing agree whichever path a program imports from.

Example::

    >>> from distrain.utils.data import DataLoader, TensorDataset
    >>> from distrain.utils.data.distributed import DistributedSampler
"""
from ...data import *  # noqa: F401,F403  (the public names, listed in distrain.data.__all__)
from ...data import __all__
from . import dataloader, dataset, distributed, sampler  # torch.utils.data.<submodule> after one import
