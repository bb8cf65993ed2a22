"""torch.utils.data.dataset's names: the datasets of `distrain.data.dataset`."""
from ...data.dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split

__all__ = ["ConcatDataset", "Dataset", "IterableDataset", "Subset", "TensorDataset", "random_split"]
