"""safetensors files: distrain writes them (distrain.save to a .safetensors path) and reads them
(distrain.load), and files go both ways between distrain and the safetensors library itself."""
import doctest
import io
import json
import struct

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import distrain
from distrain.checkpoint import formats, load_safetensors, safetensors_format, save_safetensors
from distrain.errors import CheckpointError

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.complex64]


def sample_arrays():
    generator = np.random.default_rng(0)
    arrays = {f"{np.dtype(dtype).name}": (generator.standard_normal((3, 5)) * 40).astype(dtype) for dtype in DTYPES}
    arrays.update({"scalar": np.array(1.5, np.float32), "empty": np.zeros((0, 4), np.float32),
                   "layer.0.weight": generator.standard_normal((2, 3)).astype(np.float32)})
    return arrays


def assert_equal_dicts(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        array = loaded[key].numpy() if isinstance(loaded[key], distrain.Tensor) else loaded[key]
        assert array.dtype == value.dtype and array.shape == value.shape, key
        np.testing.assert_array_equal(array, value, err_msg=key)


def test_a_round_trip_keeps_names_dtypes_shapes_and_values(tmp_path):
    arrays = sample_arrays()
    tensors = {key: distrain.tensor(value) for key, value in arrays.items()}
    tensors["transposed"] = tensors["float32"].t()  # not contiguous: written in C order
    arrays["transposed"] = arrays["float32"].T
    distrain.save(tensors, tmp_path / "model.safetensors")
    assert_equal_dicts(distrain.load(tmp_path / "model.safetensors"), arrays)
    assert [path.name for path in tmp_path.iterdir()] == ["model.safetensors"]  # written atomically, no temporary


def test_files_written_by_distrain_load_in_the_safetensors_library(tmp_path):
    arrays = sample_arrays()
    save_safetensors({key: distrain.tensor(value) for key, value in arrays.items()}, tmp_path / "a.safetensors",
                     metadata={"format": "pt", "epoch": "3"})
    assert_equal_dicts(safetensors.numpy.load_file(tmp_path / "a.safetensors"), arrays)
    with safetensors.safe_open(tmp_path / "a.safetensors", "np") as opened:
        assert opened.metadata() == {"format": "pt", "epoch": "3"}


def test_files_written_by_the_safetensors_library_load_in_distrain(tmp_path):
    arrays = sample_arrays()
    safetensors.numpy.save_file(arrays, tmp_path / "b.safetensors", metadata={"source": "numpy"})
    assert_equal_dicts(distrain.load(tmp_path / "b.safetensors"), arrays)
    blob = io.BytesIO((tmp_path / "b.safetensors").read_bytes())
    assert_equal_dicts(load_safetensors(blob, map_location="cpu"), arrays)


def test_a_torch_model_saved_by_safetensors_loads_into_distrain_and_bfloat16_widens(tmp_path):
    torch.manual_seed(3)
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    safetensors.torch.save_file(torch_model.state_dict(), tmp_path / "model.safetensors")
    model = distrain.nn.Sequential(distrain.nn.Linear(4, 6), distrain.nn.ReLU(), distrain.nn.Linear(6, 2))
    model.load_state_dict(distrain.load(tmp_path / "model.safetensors"))
    batch = torch.randn(5, 4)
    with torch.no_grad():
        expected = torch_model(batch).numpy()
    np.testing.assert_allclose(model(distrain.tensor(batch.numpy())).detach().numpy(), expected, rtol=1e-5, atol=1e-6)

    half = torch.randn(3, 4).to(torch.bfloat16)
    safetensors.torch.save_file({"half": half}, tmp_path / "bf16.safetensors")
    loaded = distrain.load(tmp_path / "bf16.safetensors")["half"]
    assert loaded.dtype == distrain.float32
    np.testing.assert_array_equal(loaded.numpy(), half.float().numpy())


def test_map_location_puts_every_tensor_on_the_device(tmp_path, device):
    arrays = sample_arrays()
    safetensors.numpy.save_file(arrays, tmp_path / "c.safetensors")
    loaded = distrain.load(tmp_path / "c.safetensors", map_location=device)
    assert {str(tensor.device) for tensor in loaded.values()} == {device}
    assert_equal_dicts({key: tensor.cpu() for key, tensor in loaded.items()}, arrays)


@pytest.mark.parametrize("value, phrase", [
    ({"nested": {"w": distrain.ones(2)}}, "'nested' of type dict"),
    ({"epoch": 3}, "'epoch' of type int"),
    ({"text": np.array(["a"])}, "'text' of dtype <U1"),
    ({3: distrain.ones(1)}, "names are str"),
    ([distrain.ones(1)], "dict of name -> tensor, not a list"),
])
def test_what_safetensors_cannot_hold_is_refused_before_writing(tmp_path, value, phrase):
    with pytest.raises(TypeError, match=phrase):
        distrain.save(value, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def forged(header, data=b"\x00" * 16):
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.mark.parametrize("blob, phrase", [
    (forged({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}), "overlap"),
    (forged({"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 20]}}), "malformed safetensors entry"),
    (forged({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}), "do not fit"),
    (forged({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}), "dtype 'F8_E4M3'"),
    (forged({"w": {"dtype": "F32", "shape": [1]}}), "malformed safetensors entry"),
    (forged({"__metadata__": {"epoch": 3}}), "__metadata__"),
    (struct.pack("<Q", 40) + b"{" + b"\x00" * 10, "not a complete safetensors file"),
])
def test_a_forged_or_damaged_file_is_refused_naming_it(tmp_path, blob, phrase):
    path = tmp_path / "forged.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=phrase) as caught:
        load_safetensors(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("module", [formats, safetensors_format])
def test_the_docstring_examples_run(tmp_path, monkeypatch, module):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
