"""distrain.data: datasets, samplers, the DataLoader and the shard file format.

The path of a batch (shared/DESIGN.md): shard files (`write_shards`, `ShardDataset`) ->
worker processes that fetch and collate samples into shared-memory slots -> the main
process, which yields them in sampler order (on a GPU through pinned memory). Names and
behaviour follow torch.utils.data.
"""
from .collate import default_collate
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .loader import DataLoader, WorkerError
from .sampler import BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler
from .worker import WorkerInfo, get_worker_info

from .shard_dataset import ShardDataset
from .shards import write_shards

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler", "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "ShardDataset", "Subset", "SubsetRandomSampler",
           "TensorDataset", "WorkerError", "WorkerInfo", "default_collate", "get_worker_info", "random_split",
           "write_shards"]
