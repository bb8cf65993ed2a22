"""torch.utils.data's import path: distrain.utils.data and its submodules give distrain.data's own objects."""
import importlib
import pickle

import numpy as np
import pytest
import torch
import torch.utils.data

import distrain
import distrain.utils.data
from distrain.utils.data import DataLoader, TensorDataset
from distrain.utils.data.distributed import DistributedSampler

SUBMODULES = ["dataset", "sampler", "dataloader", "distributed"]


def test_the_package_gives_every_public_name_of_distrain_data_as_the_same_object():
    for name in distrain.data.__all__:
        assert getattr(distrain.utils.data, name) is getattr(distrain.data, name), name
    assert DistributedSampler is distrain.data.DistributedSampler


@pytest.mark.parametrize("submodule", SUBMODULES)
def test_each_submodule_exports_what_pytorchs_does_where_distrain_data_has_it(submodule):
    ours = importlib.import_module(f"distrain.utils.data.{submodule}")
    theirs = importlib.import_module(f"torch.utils.data.{submodule}")
    shared = [name for name in theirs.__all__ if name in distrain.data.__all__]
    assert sorted(ours.__all__) == sorted(shared)
    assert shared, f"torch.utils.data.{submodule} shares no name with distrain.data"
    for name in shared:
        assert getattr(ours, name) is getattr(distrain.data, name), f"{submodule}.{name}"


def test_the_path_is_there_after_import_distrain_alone():
    assert distrain.utils.data.distributed.DistributedSampler is distrain.data.DistributedSampler


def tensor_dataset(lib, x, y):
    dataset = lib.utils.data.TensorDataset(lib.tensor(x), lib.tensor(y))
    data, target = dataset.tensors
    return dataset, data, target


def test_tensor_dataset_keeps_the_tensors_it_was_given_as_pytorch():
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6)
    for lib in (distrain, torch):
        dataset, data, target = tensor_dataset(lib, x, y)
        assert isinstance(data, lib.Tensor) and isinstance(target, lib.Tensor)
        assert data is dataset.tensors[0] and len(dataset.tensors) == 2
    ours, _, _ = tensor_dataset(distrain, x, y)
    model = distrain.nn.Linear(2, 1)
    assert model(ours.tensors[0]).shape == (6, 1)  # `data, target = dataset.tensors; model(data)`


def test_tensor_dataset_rows_and_batches_match_pytorchs():
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6)
    ours, theirs = TensorDataset(distrain.tensor(x), distrain.tensor(y)), torch.utils.data.TensorDataset(
        torch.tensor(x), torch.tensor(y))
    assert [[v.tolist() for v in ours[i]] for i in range(6)] == [[v.tolist() for v in theirs[i]] for i in range(6)]
    batches = [[v.tolist() for v in batch] for batch in DataLoader(ours, batch_size=4)]
    expected = [[v.tolist() for v in batch] for batch in torch.utils.data.DataLoader(theirs, batch_size=4)]
    assert batches == expected


def test_a_pickled_tensor_dataset_carries_its_values_once_and_gives_tensors_back():
    x = distrain.arange(1000.0).reshape(500, 2)
    dataset = TensorDataset(x)
    sent = pickle.dumps(dataset)
    assert len(sent) < 1.5 * x.nbytes  # the values travel once, not also as the tensors
    received = pickle.loads(sent)
    assert isinstance(received.tensors[0], distrain.Tensor)
    assert received.tensors[0].tolist() == x.tolist() and received[3][0].tolist() == x[3].tolist()


def test_workers_read_a_tensor_dataset_the_same():
    dataset = TensorDataset(distrain.arange(40.0).reshape(20, 2), distrain.arange(20))
    alone = [[v.tolist() for v in batch] for batch in DataLoader(dataset, batch_size=6)]
    with_workers = [[v.tolist() for v in batch] for batch in DataLoader(dataset, batch_size=6, num_workers=2)]
    assert alone == with_workers
