"""torch.utils.data.distributed's name: `distrain.data`'s DistributedSampler (one shard of the data per rank)."""
from ...data.sampler import DistributedSampler

__all__ = ["DistributedSampler"]
