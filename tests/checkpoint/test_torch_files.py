"""distrain.load reads files written by torch.save (2.13), in the zip layout and the legacy one:
values equal what torch.load(weights_only=True) gives, and a model loaded from a PyTorch state_dict
computes what the PyTorch model computes."""
import io

import numpy as np
import pytest
import torch

import distrain
import distrain.models
from distrain import nn
from distrain.errors import DeviceError

from ..models.torchvision_twin import TwinResNet, randomise_batch_norms
from .torch_files import LAYOUTS, assert_same, rewrite_pickle, torch_save


def _cnn(lib):
    """The same small CNN in distrain and in torch (lib is either module)."""
    return lib.nn.Sequential(
        lib.nn.Conv2d(3, 4, 3, padding=1), lib.nn.BatchNorm2d(4), lib.nn.ReLU(), lib.nn.MaxPool2d(2),
        lib.nn.Conv2d(4, 6, 3, stride=2, bias=False), lib.nn.ReLU(), lib.nn.Flatten(), lib.nn.Linear(6, 5))


LAYERS = {
    "linear": (lambda lib: lib.nn.Linear(5, 3), (4, 5)),
    "conv2d": (lambda lib: lib.nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 7)),
    "batchnorm2d": (lambda lib: lib.nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "cnn": (_cnn, (2, 3, 8, 8)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("layer", LAYERS)
def test_a_torch_state_dict_loads_into_the_same_distrain_model_and_computes_the_same(tmp_path, layout, layer):
    build, input_shape = LAYERS[layer]
    torch.manual_seed(0)
    torch_model = build(torch)
    batch = torch.randn(*input_shape)
    torch_model(batch)  # a training step's forward: batch norms' running statistics move off their defaults
    torch_model.eval()
    path = torch_save(torch_model.state_dict(), tmp_path / f"{layer}.pth", layout)

    state = distrain.load(path)
    assert_same(state, torch.load(path, weights_only=True))
    model = build(distrain)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        expected = torch_model(batch).numpy()
    np.testing.assert_allclose(model(distrain.tensor(batch.numpy())).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_resnet18_pth_saved_by_torch_loads_into_distrains_resnet18(tmp_path):
    """The README's line, on torchvision's architecture and names (tests/models/torchvision_twin.py)."""
    torch.manual_seed(4)
    twin = randomise_batch_norms(TwinResNet("resnet18"), torch.Generator().manual_seed(5)).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(twin.state_dict(), path)

    model = distrain.models.create("resnet18")
    model.load_state_dict(distrain.load(path))
    model.eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = twin(image).numpy()
    np.testing.assert_allclose(model(distrain.tensor(image.numpy())).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_of_one_storage_load_as_views_that_share_memory(tmp_path, layout):
    weight = torch.arange(24.0).reshape(4, 6)
    flat = torch.arange(10, dtype=torch.int64)
    saved = {"weight": weight, "tied": weight, "transposed": weight.t(), "row": weight[2], "column": weight[:, 3],
             "strided": weight[::2, 1::2], "expanded": flat[:4].expand(3, 4), "window": flat[2:8].view(2, 3),
             "scalar": flat[7], "empty": weight[:0], "parameter": nn_parameter(weight)}
    path = torch_save(saved, tmp_path / "views.pt", layout)

    loaded = distrain.load(path)
    assert_same(loaded, torch.load(path, weights_only=True))
    assert loaded["tied"] is loaded["weight"]  # one object pickled twice is one object loaded
    base = loaded["weight"].numpy()
    for name in ("transposed", "row", "column", "strided", "parameter"):
        assert np.shares_memory(loaded[name].detach().numpy(), base), name
    assert np.shares_memory(loaded["window"].numpy(), loaded["expanded"].numpy())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conj_and_neg_bits_and_tensors_with_python_attributes_load_as_their_values(tmp_path, layout):
    torch.manual_seed(6)
    tagged = torch.randn(2, 3)
    tagged.note = "pickled with _rebuild_from_type_v2"  # the attribute itself is not restored
    saved = {"conj": torch.randn(3, dtype=torch.complex64).conj(), "neg": torch._neg_view(torch.randn(3)),
             "tagged": tagged}
    path = torch_save(saved, tmp_path / "bits.pt", layout)
    assert_same(distrain.load(path), torch.load(path, weights_only=True))


def nn_parameter(tensor):
    return torch.nn.Parameter(tensor[1:3])


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.complex64]
NEW_DTYPES = [torch.uint16, torch.uint32, torch.uint64]  # pickled with an untyped storage and _rebuild_tensor_v3;
# only in the zip layout: torch 2.13 cannot read back its own legacy files of these dtypes


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_loads_and_bfloat16_widens_exactly_to_float32(tmp_path, layout):
    torch.manual_seed(1)
    dtypes = DTYPES + (NEW_DTYPES if layout == "zip" else [])
    saved = {str(dtype): (torch.randn(3, 4) * 50).to(dtype) for dtype in dtypes}
    saved["bfloat16 view"] = saved["torch.bfloat16"][1:, ::2]
    if layout == "zip":
        saved["uint16 view"] = saved["torch.uint16"][1:, 1:3]  # offsets in elements of an untyped storage
    saved["0-d"] = torch.tensor(2.5, dtype=torch.float64)
    path = torch_save(saved, tmp_path / "dtypes.pt", layout)

    loaded = distrain.load(path)
    assert_same(loaded, torch.load(path, weights_only=True))
    assert loaded["torch.bfloat16"].dtype == distrain.float32


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_training_checkpoint_with_optimizer_state_resumes_in_distrain(tmp_path, layout):
    torch.manual_seed(2)
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    torch_optimizer = torch.optim.Adam(torch_model.parameters(), lr=0.01, betas=(0.8, 0.95))
    inputs, targets = torch.randn(16, 4), torch.randn(16, 2)

    def torch_step():
        torch_optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(torch_model(inputs), targets)
        loss.backward()
        torch_optimizer.step()

    torch_step()
    checkpoint = {"epoch": 3, "model": torch_model.state_dict(), "optimizer": torch_optimizer.state_dict(),
                  "best_loss": 0.25, "note": "run 7", "milestones": (30, 60), "raw": b"\x00\xff",
                  "dtype": torch.float16, "device": torch.device("cpu"), "size": torch.Size([2, 3])}
    path = torch_save(checkpoint, tmp_path / "checkpoint.pth", layout)

    loaded = distrain.load(path, map_location="cpu")
    assert_same(loaded, torch.load(path, weights_only=True))
    assert loaded["size"] == (2, 3) and loaded["dtype"] == distrain.float16

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model.load_state_dict(loaded["model"])
    optimizer = distrain.optim.Adam(model.parameters(), lr=0.5, betas=(0.9, 0.999))
    optimizer.load_state_dict(loaded["optimizer"])
    torch_step()
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(distrain.tensor(inputs.numpy())), distrain.tensor(targets.numpy()))
    loss.backward()
    optimizer.step()
    for (name, value), expected in zip(model.state_dict().items(), torch_model.state_dict().values()):
        np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_streams_map_location_and_weights_only_are_accepted(tmp_path, layout):
    path = torch_save({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "w.pt", layout)
    expected = torch.load(path, weights_only=True)
    seen = []

    def where(array, saved):
        seen.append(saved)
        return array * 2

    assert_same(distrain.load(io.BytesIO(path.read_bytes())), expected)
    for map_location in ("cpu", distrain.device("cpu"), {"cpu": "cpu"}, lambda array, saved: None):
        for weights_only in (True, False):
            assert_same(distrain.load(path, map_location=map_location, weights_only=weights_only), expected)
    assert distrain.load(path, map_location=where)["w"].tolist() == (expected["w"] * 2).tolist() and seen == ["cpu"]


@pytest.mark.parametrize("saved_on", ["cuda:0", "mps"])
def test_a_file_saved_on_a_device_this_machine_lacks_needs_a_map_location(tmp_path, monkeypatch, saved_on):
    path = torch_save({"w": torch.ones(3)}, tmp_path / "cuda.pt", "zip")
    location = b"X" + len(saved_on).to_bytes(4, "little") + saved_on.encode()  # BINUNICODE
    rewrite_pickle(path, lambda data: data.replace(b"X\x03\x00\x00\x00cpu", location))
    monkeypatch.setattr(distrain.engine.backend, "move_array", refuse_cuda(distrain.engine.backend.move_array))

    with pytest.raises(DeviceError, match="map_location='cpu'") as caught:
        distrain.load(path)
    assert str(path) in str(caught.value) and saved_on in str(caught.value)
    for map_location in ({saved_on: "cpu"}, "cpu"):
        assert distrain.load(path, map_location=map_location)["w"].tolist() == [1.0, 1.0, 1.0]


def refuse_cuda(move_array):
    """move_array as on a machine without a GPU, wherever this one runs."""
    def moved(array, device):
        if device.type == "cuda":
            raise DeviceError(f"device {device} does not exist: this machine has 0 CUDA device(s)")
        return move_array(array, device)
    return moved


def test_saving_a_whole_module_is_refused_and_its_state_dict_suggested(tmp_path):
    for target in (tmp_path / "model.dt", tmp_path / "model.safetensors"):
        with pytest.raises(TypeError, match=r"Linear.*state_dict\(\)"):
            distrain.save(nn.Linear(2, 3), target)
        assert not target.exists()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_map_location_puts_every_tensor_and_shared_view_on_the_device(tmp_path, layout, device):
    weight = torch.randn(3, 4)
    saved = {"weight": weight, "transposed": weight.t(), "half": weight.to(torch.bfloat16)[1:],
             "steps": torch.arange(5)}
    path = torch_save(saved, tmp_path / "w.pt", layout)

    loaded = distrain.load(path, map_location=device)
    for key, expected in saved.items():
        assert str(loaded[key].device) == device, key
        np.testing.assert_array_equal(loaded[key].cpu().numpy(), expected.float().numpy() if key == "half"
                                      else expected.numpy(), err_msg=key)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_files_pickled_with_newer_protocols_load(tmp_path, protocol):
    weight = torch.randn(3, 4)
    path = tmp_path / "w.pt"
    torch.save({"w": weight, "t": weight.t(), "raw": b"xy", "tags": {1, 2}, "pair": (1, 2.5)}, path,
               pickle_protocol=protocol)
    # torch's own weights_only unpickler lacks protocol 3's bytes opcode: the full one is the oracle (our own file)
    assert_same(distrain.load(path), torch.load(path, weights_only=False))
