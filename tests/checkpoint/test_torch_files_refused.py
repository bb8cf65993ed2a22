"""A PyTorch file that would run code is refused, naming the global and the file, and nothing of it
runs: each payload is first shown live (PyTorch's full unpickler, weights_only=False, runs it),
then distrain.load is shown to refuse it without the side effect. Damaged files and tensors distrain
cannot represent are refused with what is wrong."""
import collections
import io
import os
import pickle
import random
import zipfile

import pytest
import torch

import distrain
from distrain.checkpoint import torch_tensors
from distrain.checkpoint.restricted_unpickler import check_opcodes
from distrain.errors import CheckpointError, DeviceError

from .torch_files import LAYOUTS, rewrite_pickle, torch_save


class RunsAShellCommand:
    """Unpickling this calls os.system: the textbook malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class WritesAFileWhenRestored:
    """An ordinary class whose restoring code has a side effect: unpickling imports and runs it."""

    def __init__(self, marker):
        self.marker = marker

    def __setstate__(self, state):
        open(state["marker"], "w").close()


PAYLOADS = {
    "os.system via __reduce__": (RunsAShellCommand, f"{os.system.__module__}.system"),
    "a class global": (WritesAFileWhenRestored, f"{__name__}.WritesAFileWhenRestored"),
}


def refused(path, *phrases, weights_only=True):
    with pytest.raises(CheckpointError) as caught:
        distrain.load(path, weights_only=weights_only)
    message = str(caught.value)
    for phrase in (str(path), *phrases):
        assert phrase in message, message
    return message


@pytest.mark.parametrize("weights_only", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_malicious_pickle_is_refused_naming_the_global_and_nothing_runs(tmp_path, payload, layout, weights_only):
    payload_class, global_name = PAYLOADS[payload]
    marker = tmp_path / "the-payload-ran"
    path = torch_save({"weight": torch.ones(2), "extra": payload_class(marker)}, tmp_path / "evil.pt", layout)
    torch.load(path, weights_only=False)  # the payload is live: PyTorch's full unpickler runs it
    assert marker.exists()
    marker.unlink()

    message = refused(path, f"would import {global_name}", "imported nothing", weights_only=weights_only)
    assert not marker.exists(), message


HAND_WRITTEN = {  # pickles no torch.save writes, in the opcodes an attacker would pick: marker path -> bytes
    "builtins.eval, protocol 0": (
        lambda marker: f"cbuiltins\neval\n(V__import__('os').system('touch {marker}')\ntR.".encode(), "builtins.eval"),
    "__builtin__.eval, as protocol 2 spells it": (
        lambda marker: b"\x80\x02c__builtin__\neval\nX\x05\x00\x00\x001 + 1\x85R.", "builtins.eval"),
    "STACK_GLOBAL, protocol 4": (
        lambda marker: pickle.dumps(RunsAShellCommand(marker), protocol=4), f"{os.system.__module__}.system"),
    "getattr gadget": (
        lambda marker: b"cbuiltins\ngetattr\n(ccollections\nOrderedDict\nVfromkeys\ntR.", "builtins.getattr"),
}


@pytest.mark.parametrize("case", HAND_WRITTEN)
def test_hand_written_pickles_are_refused_naming_the_global(tmp_path, case):
    build, global_name = HAND_WRITTEN[case]
    marker = tmp_path / "the-payload-ran"
    path = torch_save({"w": torch.ones(1)}, tmp_path / "evil.pt", "zip")
    rewrite_pickle(path, lambda old: build(marker))

    refused(path, f"would import {global_name}")
    assert not marker.exists()


def _allowed_functions_state():
    return {name: (getattr(value, "__defaults__", None), dict(getattr(value, "__dict__", {})))
            for name, value in torch_tensors.TORCH_GLOBALS.items()}


@pytest.mark.parametrize("target", [b"collections\nOrderedDict", b"torch._utils\n_rebuild_tensor_v2",
                                    b"torch\nfloat32", b"torch\nFloatStorage", b"torch\ndevice"])
@pytest.mark.parametrize("state", [b"(dV__defaults__\n(I1\ntsb.", b"(N(dV__defaults__\n(I1\ntstb.",
                                   b"(N(dVx\nI1\nstb."])
def test_an_allowed_global_cannot_be_changed_by_a_forged_build(tmp_path, target, state):
    """NOTE [ Nothing a pickle touches is ours to change ]: BUILD on an allowed name fails."""
    before = _allowed_functions_state()
    path = torch_save({"w": torch.ones(1)}, tmp_path / "forged.pt", "zip")
    rewrite_pickle(path, lambda old: b"c" + target + b"\n" + state)

    refused(path, "is damaged or not a PyTorch file")
    assert _allowed_functions_state() == before
    assert not hasattr(collections.OrderedDict, "x") and distrain.float32 == "float32"
    assert distrain.load(torch_save({"w": torch.ones(1)}, tmp_path / "fine.pt", "zip"))["w"].tolist() == [1.0]


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_tensors_distrain_cannot_represent_are_refused_by_kind(tmp_path, layout):
    sparse = torch_save({"s": torch.eye(3).to_sparse()}, tmp_path / "sparse.pt", layout)
    refused(sparse, "holds a sparse tensor (torch._utils._rebuild_sparse_tensor)")
    quantized = torch_save({"q": torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8)},
                           tmp_path / "quantized.pt", layout)
    refused(quantized, "a quantized tensor")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning")
def test_a_torchscript_archive_is_refused_with_advice(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    refused(path, "TorchScript", "state_dict()")


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = torch_save({"w": torch.zeros(6)}, tmp_path / "w.pt", "zip")
    rewrite_pickle(path, lambda data: data.replace(b"K\x06\x85", b"K\x07\x85"))  # size (6,) -> (7,)
    refused(path, "reaches past the 6 elements of its storage")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_truncated_file_is_refused(tmp_path, layout):
    path = torch_save({"w": torch.arange(1000.0)}, tmp_path / "w.pt", layout)
    whole = path.read_bytes()
    for length in (len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:length])
        with pytest.raises(CheckpointError, match=str(path)):
            distrain.load(path)


def test_a_zip_that_is_not_a_pytorch_file_is_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    refused(path, "is a zip archive but not a PyTorch file")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_whole_torch_module_is_refused_naming_its_class_and_suggesting_its_state_dict(tmp_path, layout):
    path = torch_save(torch.nn.Linear(2, 2), tmp_path / "model.pt", layout)
    refused(path, "would import torch.nn.modules.linear.Linear", "model.state_dict()")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_randomly_damaged_files_load_or_are_refused_never_crash(tmp_path, layout):
    """Bytes changed anywhere (the zip directory, the pickle, a storage) and truncations: each file
    loads (a changed value) or raises a distrain error naming it; no other exception escapes."""
    weight = torch.randn(3, 4)
    saved = {"w": weight, "t": weight.t(), "p": torch.nn.Parameter(torch.ones(2)), "i": torch.arange(3),
             "h": torch.ones(2, dtype=torch.bfloat16), "tags": {1}, "raw": b"x", "misc": ("a", 1.5, None)}
    blob = torch_save(saved, tmp_path / "w.pt", layout).read_bytes()
    generator = random.Random(layout)
    for _ in range(300):
        damaged = bytearray(blob)
        for _ in range(generator.choice([1, 2, 4])):
            damaged[generator.randrange(len(damaged))] = generator.randrange(256)
        if generator.random() < 0.1:
            damaged = damaged[:generator.randrange(len(damaged))]
        try:
            distrain.load(io.BytesIO(bytes(damaged)))
        except (CheckpointError, DeviceError) as exc:
            assert "<BytesIO>" in str(exc)


@pytest.mark.parametrize("pickled, phrase", [
    (b"\x80\x02]r\xff\xff\xff\x7f.", "stores object 2147483647 after only 2 opcodes"),  # a 16 GB memo table
    (b"\x80\x04\x8d" + (1 << 40).to_bytes(8, "little") + b"abc.", "only 4 remain"),  # a 1 TB string
    (b"\x80\x02\xf0.", "unknown"),
])
def test_a_pickle_asking_for_gigabytes_is_refused_before_unpickling(pickled, phrase):
    """NOTE [ A small pickle can ask for gigabytes ]: checked on the opcodes alone, nothing unpickled."""
    with pytest.raises(CheckpointError, match=phrase):
        check_opcodes(io.BytesIO(pickled), "forged.pt")
