"""distrain.save / distrain.load: exact round trips, the documented file format, map_location,
every kind of damaged file, atomic writes, and a saver killed with SIGKILL at random moments.

The file format is read here by a small independent parser written from the module
docstring, so the documentation and the code cannot drift apart unnoticed.
"""
import doctest
import io
import math
import os
import random
import struct
import zipfile
import zlib

import msgpack
import numpy as np
import pytest

import distrain
import distrain.checkpoint
from distrain.errors import CheckpointError, DeviceError, DistrainError

from .conftest import CUDA_AVAILABLE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_identical(loaded, original, path="root"):
    """Same types (tuples stay tuples, int keys stay ints), same dtypes and shapes, same bits."""
    if isinstance(original, distrain.Tensor):
        assert type(loaded) is distrain.Tensor, path
        assert (loaded.dtype, tuple(loaded.shape), loaded.requires_grad, str(loaded.device)) == \
            (original.dtype, tuple(original.shape), original.requires_grad, str(original.device)), path
        assert loaded.grad is None and loaded.is_leaf, path
        assert loaded.detach().numpy(force=True).tobytes() == original.detach().numpy(force=True).tobytes(), path
    elif isinstance(original, (np.ndarray, np.generic)):
        assert type(loaded) is type(original) if isinstance(original, np.generic) else type(loaded) is np.ndarray, path
        assert (loaded.dtype, loaded.shape) == (original.dtype, original.shape), path
        assert loaded.tobytes() == original.tobytes(), path
    elif isinstance(original, dict):
        assert type(loaded) is dict, path
        assert [(type(key), key) for key in loaded] == [(type(key), key) for key in original], path
        for key in original:
            assert_identical(loaded[key], original[key], f"{path}.{key}")
    elif isinstance(original, (list, tuple)):
        assert type(loaded) is type(original) and len(loaded) == len(original), path
        for index, (item, expected) in enumerate(zip(loaded, original)):
            assert_identical(item, expected, f"{path}.{index}")
    elif isinstance(original, float):
        assert type(loaded) is float and struct.pack("<d", loaded) == struct.pack("<d", original), path
    else:
        assert type(loaded) is type(original) and loaded == original, path


def round_trip(obj, **load_options):
    buffer = io.BytesIO()
    distrain.save(obj, buffer)
    buffer.seek(0)
    return distrain.load(buffer, **load_options)


def parse(blob):
    """Split a checkpoint into the parts the module docstring documents (format version 1)."""
    magic, version, header_length, file_length, preamble_crc = struct.unpack_from("<8sIQQI", blob)
    assert (magic, version, len(blob)) == (b"\x89DTCKPT\n", 1, file_length)
    assert preamble_crc == zlib.crc32(blob[:28])
    header = msgpack.unpackb(blob[32:32 + header_length], raw=False, strict_map_key=False)
    footer = struct.unpack_from("<QQII8s", blob, file_length - 32)
    assert footer == (header_length, file_length, zlib.crc32(blob[:32 + header_length]),
                      zlib.crc32(blob[file_length - 32:file_length - 12]), b"DTCKEND\n")
    data_start = -(-(32 + header_length) // 64) * 64
    return header, data_start


def rewrite(blob, edit_header=None, version=1):
    """A valid checkpoint (all checksums right) with its header or version changed."""
    header, data_start = parse(blob)
    if edit_header is not None:
        edit_header(header)
    header_bytes = msgpack.packb(header, use_bin_type=True)
    new_data_start = -(-(32 + len(header_bytes)) // 64) * 64
    data = blob[data_start:len(blob) - 32]
    file_length = new_data_start + len(data) + 32
    preamble = struct.pack("<8sIQQ", b"\x89DTCKPT\n", version, len(header_bytes), file_length)
    preamble += struct.pack("<I", zlib.crc32(preamble))
    body = preamble + header_bytes + bytes(new_data_start - 32 - len(header_bytes)) + data
    footer = struct.pack("<QQI", len(header_bytes), file_length, zlib.crc32(preamble + header_bytes))
    return body + footer + struct.pack("<I", zlib.crc32(footer)) + b"DTCKEND\n"


def header_end(blob):
    return 32 + struct.unpack_from("<Q", blob, 12)[0]


def save_bytes(obj):
    buffer = io.BytesIO()
    distrain.save(obj, buffer)
    return buffer.getvalue()


def sample_state():
    return {"weights": distrain.from_numpy(np.arange(40, dtype=np.float32).reshape(5, 8)),
            "bias": np.linspace(-1, 1, 7), "epoch": 4, "tags": ("a", "b")}


# ----------------------------------------------------------------------------- round trips

def test_plain_values_round_trip_exactly_with_their_types():
    values = {
        "none": None, "bools": [True, False], "ints": [0, -1, 2**63 - 1, -2**63, 2**64 - 1],
        "big ints": [2**64, -2**63 - 1, 2**200, -(2**130) + 7],
        "floats": [0.0, -0.0, 1.5, 1e-310, math.inf, -math.inf, math.nan],
        "strings": ["", "ünïcødé ✓", "x" * 1000], "bytes": [b"", b"\x00\xff" * 10],
        "empty": ([], (), {}), "nested": ((1, (2, (3,))), [[], [()]], {"a": {"b": {"c": (None,)}}}),
        7: "int key", -3: {0: "zero", 1: (1,)}, "numpy scalars": (np.float32(1.25), np.int64(-7), np.bool_(True),
                                                                 np.uint8(255), np.float16(0.5), np.complex128(1 - 2j)),
    }
    assert_identical(round_trip(values), values)


def test_an_optimizer_state_dict_keeps_tuples_and_int_keys():
    state = {"state": {0: {"step": 3, "exp_avg": distrain.randn(3, 2), "exp_avg_sq": distrain.rand(3, 2)},
                       1: {"step": 3, "exp_avg": distrain.zeros(2)}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "params": [0, 1]}]}
    loaded = round_trip(state)
    assert_identical(loaded, state)
    assert list(loaded["state"]) == [0, 1] and type(loaded["param_groups"][0]["betas"]) is tuple


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64", "int32", "int8", "bool", "uint8",
                                   "complex64", ">f8"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (7,), (4, 5), (2, 3, 4)])
def test_arrays_and_tensors_round_trip_bit_for_bit(dtype, shape, rng):
    values = rng.standard_normal(shape) * 100 if np.dtype(dtype).kind in "fc" else rng.integers(0, 100, shape)
    array = np.asarray(values).astype(dtype)
    tensors = {"tensor": distrain.from_numpy(array.astype(array.dtype.newbyteorder("=")))}
    if np.dtype(dtype).kind == "f":
        tensors["leaf"] = distrain.tensor(array, requires_grad=True)
    loaded = round_trip({"array": array, **tensors})
    assert_identical(loaded, {"array": array, **tensors})
    assert loaded["array"].flags.writeable and loaded["array"].flags.c_contiguous


def test_non_contiguous_arrays_and_tensors_are_saved_by_value(rng):
    base = rng.standard_normal((6, 8)).astype(np.float32)
    views = {"transpose": base.T, "step slice": base[::2, 1::3], "reversed": base[::-1], "column": base[:, 2],
             "fortran": np.asfortranarray(base), "broadcast": np.broadcast_to(base[0], (3, 8))}
    tensor = distrain.from_numpy(base.copy())
    tensor_views = {"t": tensor.t(), "rows": tensor[::2], "block": tensor[1:4, 2:7], "permuted": tensor.permute(1, 0)}
    assert not any(view.is_contiguous() for view in tensor_views.values())
    loaded = round_trip({**views, **tensor_views})
    for key, view in views.items():
        np.testing.assert_array_equal(loaded[key], view)
        assert loaded[key].dtype == view.dtype and loaded[key].flags.c_contiguous, key
    for key, view in tensor_views.items():
        np.testing.assert_array_equal(loaded[key].numpy(), view.numpy())
        assert loaded[key].shape == view.shape and loaded[key].is_contiguous(), key


def test_a_parameter_loads_as_a_plain_tensor_that_requires_grad():
    parameter = distrain.nn.Parameter(distrain.randn(3, 4))
    loaded = round_trip({"w": parameter})["w"]
    assert type(loaded) is distrain.Tensor and loaded.requires_grad
    np.testing.assert_array_equal(loaded.detach().numpy(), parameter.detach().numpy())


def test_an_object_saved_twice_is_stored_once_and_loads_as_one_object():
    shared, array = distrain.randn(256), np.arange(300.0)
    blob = save_bytes({"encoder": shared, "decoder": shared, "a": array, "b": [array]})
    assert len(parse(blob)[0]["arrays"]) == 2
    loaded = distrain.load(io.BytesIO(blob))
    assert loaded["encoder"] is loaded["decoder"] and loaded["a"] is loaded["b"][0]
    np.testing.assert_array_equal(loaded["encoder"].numpy(), shared.numpy())


def test_the_rng_state_round_trips_and_restores_the_same_draws():
    distrain.manual_seed(123)
    distrain.randn(10)
    state = distrain.get_rng_state()
    expected = distrain.randn(5).numpy().copy()
    loaded = round_trip({"rng": state})["rng"]
    assert loaded == state
    distrain.manual_seed(999)
    distrain.set_rng_state(loaded)
    np.testing.assert_array_equal(distrain.randn(5).numpy(), expected)


def test_a_model_state_dict_round_trips_into_a_fresh_model():
    nn = distrain.nn
    if not hasattr(nn, "Sequential") or not hasattr(nn, "BatchNorm1d"):
        pytest.skip("distrain.nn has no Sequential/BatchNorm1d yet")
    distrain.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model(distrain.randn(8, 4))  # moves the BatchNorm running statistics away from their defaults
    state = model.state_dict()
    loaded = round_trip(state)
    assert list(loaded) == list(state)
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    fresh.load_state_dict(loaded)
    for key, value in fresh.state_dict().items():
        assert value.dtype == state[key].dtype
        np.testing.assert_array_equal(value.numpy(), state[key].numpy(), err_msg=key)


def test_a_file_object_is_read_from_its_position_and_left_after_the_checkpoint():
    buffer = io.BytesIO()
    buffer.write(b"leading bytes")
    distrain.save({"first": distrain.ones(3)}, buffer)
    distrain.save(("second", np.zeros(2, np.int8)), buffer)
    buffer.write(b"trailer")
    buffer.seek(len(b"leading bytes"))
    np.testing.assert_array_equal(distrain.load(buffer)["first"].numpy(), np.ones(3, np.float32))
    assert_identical(distrain.load(buffer), ("second", np.zeros(2, np.int8)))
    assert buffer.read() == b"trailer"


def test_saving_to_a_file_object_needs_only_write():
    class WriteOnly:
        def __init__(self):
            self.pieces = []

        def write(self, data):
            self.pieces.append(bytes(data))
            return len(data)

    sink = WriteOnly()
    distrain.save(sample_state(), sink)
    assert_identical(distrain.load(io.BytesIO(b"".join(sink.pieces))), sample_state())


def test_paths_accept_str_and_pathlike(tmp_path):
    distrain.save([1, 2], str(tmp_path / "a.dt"))
    distrain.save((3,), tmp_path / "b.dt")
    assert distrain.load(tmp_path / "a.dt") == [1, 2] and distrain.load(str(tmp_path / "b.dt")) == (3,)


def test_a_50_megabyte_array_round_trips_aligned_and_writable(tmp_path, rng):
    big = rng.random(50 * 2**20 // 4, dtype=np.float32)
    path = tmp_path / "big.dt"
    distrain.save({"big": distrain.from_numpy(big), "small": np.arange(3)}, path)
    assert os.path.getsize(path) < big.nbytes + 4096
    loaded = distrain.load(path)
    np.testing.assert_array_equal(loaded["big"].numpy(), big)
    loaded_array = loaded["big"].numpy()
    assert loaded_array.ctypes.data % 64 == 0 and loaded_array.flags.writeable


def test_the_file_layout_is_the_documented_one():
    state = {"w": distrain.from_numpy(np.arange(10, dtype=np.float32)), "pair": (1, 2), "big": 2**70,
             "x": np.float64(2.5), "a": np.arange(3, dtype=np.int16)}
    blob = save_bytes(state)
    header, data_start = parse(blob)
    assert data_start % 64 == 0 and set(header) == {"arrays", "root"}
    (w_entry, a_entry) = header["arrays"]
    assert w_entry == {"name": "w", "kind": "tensor", "dtype": "<f4", "shape": [10], "offset": 0, "nbytes": 40,
                       "crc32": zlib.crc32(np.arange(10, dtype=np.float32).tobytes()), "device": "cpu",
                       "requires_grad": False}
    assert a_entry["offset"] == 64 and a_entry["kind"] == "ndarray" and a_entry["dtype"] == "<i2"
    assert blob[data_start + 64:data_start + 70] == np.arange(3, dtype=np.int16).tobytes()
    root = header["root"]
    assert root["w"] == msgpack.ExtType(2, msgpack.packb(0))
    assert root["pair"] == msgpack.ExtType(1, msgpack.packb([1, 2]))
    assert root["big"].code == 3 and int.from_bytes(root["big"].data, "little", signed=True) == 2**70
    assert root["x"] == msgpack.ExtType(4, msgpack.packb(["<f8", np.float64(2.5).tobytes()], use_bin_type=True))


@pytest.mark.parametrize("module", [distrain.checkpoint, distrain.checkpoint.writer])
def test_the_docstring_examples_run(tmp_path, monkeypatch, module):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


# ----------------------------------------------------------------------------- map_location

def cuda_checkpoint():
    """A checkpoint that says its tensor and array were saved on cuda:0 (made without a GPU)."""
    blob = save_bytes({"w": distrain.tensor([1.0, 2.0], requires_grad=True), "a": np.arange(3)})

    def to_cuda(header):
        for entry in header["arrays"]:
            entry["device"] = "cuda:0"
    return rewrite(blob, to_cuda)


@pytest.mark.parametrize("map_location", ["cpu", distrain.device("cpu"), {"cuda:0": "cpu"}, {"cuda": "cpu"},
                                          lambda array, saved: "cpu", lambda array, saved: array])
def test_a_cuda_checkpoint_loads_on_the_cpu_with_map_location(map_location):
    loaded = distrain.load(io.BytesIO(cuda_checkpoint()), map_location=map_location)
    assert str(loaded["w"].device) == "cpu" and loaded["w"].requires_grad
    np.testing.assert_array_equal(loaded["w"].detach().numpy(), [1.0, 2.0])
    assert type(loaded["a"]) is np.ndarray and loaded["a"].tolist() == [0, 1, 2]


def test_the_callable_map_location_sees_the_cpu_array_and_the_saved_device():
    calls = []
    distrain.load(io.BytesIO(cuda_checkpoint()), map_location=lambda array, saved: calls.append((array, saved)) or "cpu")
    assert [(type(array), array.tolist(), saved) for array, saved in calls] == \
        [(np.ndarray, [1.0, 2.0], "cuda:0"), (np.ndarray, [0, 1, 2], "cuda:0")]


@pytest.mark.skipif(CUDA_AVAILABLE, reason="checks the error on a machine without a GPU")
def test_a_cuda_checkpoint_without_map_location_says_to_pass_map_location_cpu(tmp_path):
    path = tmp_path / "gpu.dt"
    path.write_bytes(cuda_checkpoint())
    with pytest.raises(DeviceError, match=r"map_location='cpu'") as caught:
        distrain.load(path)
    assert str(path) in str(caught.value) and "'w'" in str(caught.value) and "cuda:0" in str(caught.value)
    with pytest.raises(DeviceError, match=r"map_location='cpu'"):
        distrain.load(path, map_location={"cpu": "cpu"})  # cuda:0 is not mapped, so it stays on cuda:0


def test_map_location_cpu_and_none_keep_cpu_tensors_where_they_are():
    state = sample_state()
    for map_location in (None, "cpu", {"cuda:1": "cpu"}, lambda array, saved: None):
        assert_identical(round_trip(state, map_location=map_location), state)


def test_a_bad_map_location_is_a_type_error():
    with pytest.raises(TypeError, match="map_location"):
        round_trip(sample_state(), map_location=3)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs cupy and a CUDA device")
def test_cuda_tensors_and_cupy_arrays_round_trip_and_map_to_cpu():
    import cupy

    device = "cuda:0"

    state = {"w": distrain.randn(3, 4, device=device, requires_grad=True), "c": cupy.arange(5.0), "n": np.ones(2)}
    blob = save_bytes(state)
    back = distrain.load(io.BytesIO(blob))
    assert str(back["w"].device) == device and back["w"].requires_grad and isinstance(back["c"], cupy.ndarray)
    np.testing.assert_array_equal(back["w"].detach().cpu().numpy(), state["w"].detach().cpu().numpy())
    on_cpu = distrain.load(io.BytesIO(blob), map_location="cpu")
    assert str(on_cpu["w"].device) == "cpu" and type(on_cpu["c"]) is np.ndarray
    np.testing.assert_array_equal(on_cpu["c"], np.arange(5.0))


# ----------------------------------------------------------------------------- damaged files

def assert_refused(blob, tmp_path, *phrases):
    path = tmp_path / "damaged.dt"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as caught:
        distrain.load(path)
    message = str(caught.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    assert isinstance(caught.value, (DistrainError, RuntimeError))
    return message


def test_checkpoint_error_is_a_distrain_error_and_a_runtime_error():
    assert issubclass(CheckpointError, DistrainError) and issubclass(CheckpointError, RuntimeError)
    assert distrain.CheckpointError is CheckpointError


def test_a_truncated_file_is_refused_wherever_it_was_cut(tmp_path):
    blob = save_bytes(sample_state())
    end, data_start = header_end(blob), parse(blob)[1]
    cuts = {1, 5, 8, 20, 31, 32, 33, (32 + end) // 2, end - 1, end, data_start - 1, data_start,
            data_start + 17, data_start + 64, len(blob) - 33, len(blob) - 32, len(blob) - 20, len(blob) - 1}
    for cut in sorted(cuts):
        message = assert_refused(blob[:cut], tmp_path, "truncated")
        if cut >= 32:
            assert f"expected {len(blob)} bytes, found {cut}" in message and "previous checkpoint" in message


def test_a_truncated_file_object_is_refused_naming_the_stream():
    blob = save_bytes(sample_state())
    with pytest.raises(CheckpointError, match=r"checkpoint <BytesIO> is truncated"):
        distrain.load(io.BytesIO(blob[:-1]))


def test_every_flipped_byte_of_the_frame_and_header_is_caught():
    blob = save_bytes(sample_state())
    for position in [*range(header_end(blob)), *range(len(blob) - 32, len(blob))]:
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        with pytest.raises(CheckpointError, match=r"checkpoint <BytesIO> (is not a distrain|has a damaged)"):
            distrain.load(io.BytesIO(bytes(damaged)))


def test_a_flipped_byte_in_an_array_names_the_array(tmp_path):
    blob = save_bytes(sample_state())
    header, data_start = parse(blob)
    for entry in header["arrays"]:
        start = data_start + entry["offset"]
        for position in (start, start + entry["nbytes"] // 2, start + entry["nbytes"] - 1):
            damaged = bytearray(blob)
            damaged[position] ^= 0x01
            assert_refused(bytes(damaged), tmp_path, f"array '{entry['name']}' failed its checksum")


def test_an_empty_file_is_refused(tmp_path):
    assert_refused(b"", tmp_path, "is empty")


@pytest.mark.parametrize("length", [1, 7, 31, 32, 100, 10_000])
def test_random_garbage_is_refused(tmp_path, length):
    garbage = random.Random(length).randbytes(length)
    assert_refused(garbage, tmp_path, "is not a distrain checkpoint")
    assert_refused(b"\x89DTCKPT\n" + garbage, tmp_path)  # right magic, garbage behind it


def test_files_of_other_formats_are_refused_and_named(tmp_path):
    npy = io.BytesIO()
    np.save(npy, np.arange(10))
    assert_refused(npy.getvalue(), tmp_path, "is not a distrain checkpoint", "NumPy .npy")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data.pkl", b"not really")
    assert_refused(archive.getvalue(), tmp_path, "zip archive")
    assert_refused(b"epoch: 3\nlr: 0.1\n", tmp_path, "is not a distrain checkpoint")


def test_a_newer_format_version_is_refused_with_advice(tmp_path):
    assert_refused(rewrite(save_bytes([1]), version=2), tmp_path, "format version 2", "reads version 1")


def test_a_header_that_lies_about_an_array_is_refused(tmp_path):
    def stretch(header):
        header["arrays"][0]["shape"] = [6, 8]  # 192 bytes claimed for 160

    assert_refused(rewrite(save_bytes(sample_state()), stretch), tmp_path, "malformed header", "'weights'")

    def misplace(header):
        header["arrays"][0]["offset"] = 1 << 40

    assert_refused(rewrite(save_bytes(sample_state()), misplace), tmp_path, "outside the file's data")


# ----------------------------------------------------------------------------- what cannot be saved

class Foo:
    pass


@pytest.mark.parametrize("value, where, what", [
    ({"optimizer": {"state": {0: {"foo": Foo()}}}}, "at 'optimizer.state.0.foo'", "of type Foo"),
    ({"schedule": [1, (2, lambda epoch: 0.5)]}, "at 'schedule.1.1'", "of type function"),
    ({"ids": {1, 2}}, "at 'ids'", "of type set"),
    (Foo(), "at the top level", "of type Foo"),
    ({"names": np.array(["a", "b"])}, "at 'names'", "dtype <U1"),
    ({"objects": np.array([None, 1], dtype=object)}, "at 'objects'", "dtype object"),
    ({"m": {(1, 2): 3}}, "at 'm'", "dict key (1, 2)"),
    ({"m": {2**70: 3}}, "at 'm'", "dict key"),
])
def test_unsupported_values_raise_type_error_naming_the_key_path(value, where, what):
    buffer = io.BytesIO()
    with pytest.raises(TypeError) as caught:
        distrain.save(value, buffer)
    assert where in str(caught.value) and what in str(caught.value), str(caught.value)
    assert buffer.getvalue() == b""  # refused before anything was written


def test_a_cycle_is_refused():
    looped = {"a": [1]}
    looped["a"].append(looped)
    with pytest.raises(TypeError, match=r"at 'a.1': it contains itself"):
        distrain.save(looped, io.BytesIO())


def test_a_file_object_with_only_read_loads():
    buffer = io.BytesIO()
    distrain.save({"w": np.arange(5.0)}, buffer)

    class ReadOnly:
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def read(self, size=-1):
            return self._inner.read(size)

    np.testing.assert_array_equal(distrain.load(ReadOnly(buffer.getvalue()))["w"], np.arange(5.0))


def test_a_preamble_claiming_a_huge_file_is_a_checkpoint_error_not_an_allocation(tmp_path):
    path = tmp_path / "ckpt.dt"
    distrain.save({"w": np.arange(5.0)}, path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 20, 1 << 60)  # file length field
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))  # keep the preamble's own checksum valid
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated"):
        distrain.load(path)
