"""Helpers for the tests of PyTorch files: write them with torch 2.13, compare what distrain loads
with what torch.load(weights_only=True) gives for the same file, and rewrite a file's pickle."""
from __future__ import annotations

import zipfile

import numpy as np
import torch

import distrain

LAYOUTS = ["zip", "legacy"]


def torch_save(obj, path, layout):
    """torch.save in the zip layout or the legacy one (`_use_new_zipfile_serialization=False`)."""
    torch.save(obj, path, _use_new_zipfile_serialization=layout == "zip")
    return path


def assert_same(loaded, expected, where="root"):
    """`loaded` (distrain.load) holds what `expected` (torch.load) holds: the same containers,
    keys and plain values, and tensors of equal dtype, shape and values (bfloat16 as float32)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(loaded, distrain.Tensor), f"{where}: {type(loaded).__name__}"
        expected = expected.resolve_conj().resolve_neg()  # the lazy conj/neg bits, as values
        if expected.dtype == torch.bfloat16:
            expected = expected.float()
        array = loaded.detach().numpy()
        assert array.dtype == expected.detach().numpy().dtype, f"{where}: {array.dtype} vs {expected.dtype}"
        assert array.shape == tuple(expected.shape), f"{where}: {array.shape} vs {tuple(expected.shape)}"
        np.testing.assert_array_equal(array, expected.detach().numpy(), err_msg=where)
        assert loaded.requires_grad == expected.requires_grad, where
        assert isinstance(loaded, distrain.nn.Parameter) == isinstance(expected, torch.nn.Parameter), where
    elif isinstance(expected, dict):
        assert type(loaded) is type(expected), f"{where}: {type(loaded).__name__} vs {type(expected).__name__}"
        assert list(loaded) == list(expected), where
        for key in expected:
            assert_same(loaded[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        expected = tuple(expected) if isinstance(expected, torch.Size) else expected  # a Size loads as a tuple
        assert type(loaded) is type(expected) and len(loaded) == len(expected), where
        for index, (item, expected_item) in enumerate(zip(loaded, expected)):
            assert_same(item, expected_item, f"{where}.{index}")
    elif isinstance(expected, torch.dtype):
        assert loaded == str(expected).removeprefix("torch."), where
    elif isinstance(expected, torch.device):
        assert loaded == str(expected), where
    else:
        assert type(loaded) is type(expected) and loaded == expected, f"{where}: {loaded!r} vs {expected!r}"


def rewrite_pickle(path, change):
    """Replace the data.pkl of the zip-layout file at `path` by `change(old_pickle_bytes)`."""
    with zipfile.ZipFile(path) as archive:
        records = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in records:
            archive.writestr(info, change(data) if info.filename.endswith("/data.pkl") else data)
    return path
