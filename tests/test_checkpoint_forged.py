"""Malformed, forged and truncated checkpoints: every one is a CheckpointError naming the file.

The checksums catch accidental damage; these tests forge files whose checksums are right
(the frame is rebuilt around an edited header, as an attacker or a buggy writer would), so
that what is exercised is the loader's own checking of every header field: wrong types,
lying sizes and offsets, huge shapes, bad dtypes, deep nesting. No other exception
(RecursionError, ValueError, TypeError, KeyError, struct.error, MemoryError) may escape.
"""
import io
import struct
import tracemalloc
import zlib

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distrain
from distrain.errors import CheckpointError

from .test_checkpoint import parse, rewrite, sample_state, save_bytes

BLOB = save_bytes({**sample_state(), "scalar": np.float32(2.5), "pair": (1, (2, 3)), "big": 2**70,
                   "grad": distrain.ones(3, requires_grad=True), "steps": np.arange(4)})


def refusal(blob, tmp_path):
    """The CheckpointError loading `blob` from a file raises; fails on any other outcome."""
    path = tmp_path / "forged.dt"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as caught:
        distrain.load(path)
    assert str(path) in str(caught.value), str(caught.value)
    return str(caught.value)


def load_or_refuse(blob):
    """Either loads or raises CheckpointError (never anything else); returns the error or None."""
    try:
        distrain.load(io.BytesIO(blob))
    except CheckpointError as error:
        assert "checkpoint <BytesIO>" in str(error), str(error)
        return error
    return None


def with_header_bytes(blob, header_bytes):
    """`blob`'s arrays under a different raw header, in a frame whose checksums are all right."""
    _, data_start = parse(blob)
    new_data_start = -(-(32 + len(header_bytes)) // 64) * 64
    data = blob[data_start:len(blob) - 32]
    file_length = new_data_start + len(data) + 32
    preamble = struct.pack("<8sIQQ", b"\x89DTCKPT\n", 1, len(header_bytes), file_length)
    preamble += struct.pack("<I", zlib.crc32(preamble))
    body = preamble + header_bytes + bytes(new_data_start - 32 - len(header_bytes)) + data
    footer = struct.pack("<QQI", len(header_bytes), file_length, zlib.crc32(preamble + header_bytes))
    return body + footer + struct.pack("<I", zlib.crc32(footer)) + b"DTCKEND\n"


def entry_edit(field, value, index=0):
    def edit(header):
        header["arrays"][index][field] = value
    return edit


def root_edit(value):
    def edit(header):
        header["root"] = value
    return edit


def ext(code, value):
    return msgpack.ExtType(code, msgpack.packb(value, use_bin_type=True))


def nested_tuples(depth):
    inner = msgpack.packb([], use_bin_type=True)
    for _ in range(depth):
        inner = msgpack.packb([msgpack.ExtType(1, inner)], use_bin_type=True)
    return msgpack.ExtType(1, inner)


FORGERIES = {
    # the header's own shape
    "arrays is not a list": (lambda header: header.update(arrays=5), "'arrays' and 'root'"),
    "no root": (lambda header: header.pop("root"), "'arrays' and 'root'"),
    "entry is not a map": (lambda header: header["arrays"].__setitem__(0, [1, 2]), "entry 0 is a list"),
    "entry lacks offset": (lambda header: header["arrays"][0].pop("offset"), "'offset' = None"),
    # wrong types in fields
    "shape is a string": (entry_edit("shape", "ab"), "'shape'"),
    "shape holds floats": (entry_edit("shape", [5.0, 8.0]), "shape"),
    "shape holds bools": (entry_edit("shape", [True] * 40), "shape"),
    "offset is a float": (entry_edit("offset", 0.0), "'offset'"),
    "offset is a bool": (entry_edit("offset", False), "'offset'"),
    "nbytes is a string": (entry_edit("nbytes", "160"), "'nbytes'"),
    "crc is a string": (entry_edit("crc32", "x"), "'crc32'"),
    "name is a map": (entry_edit("name", {}), "'name'"),
    "kind is a list": (entry_edit("kind", ["tensor"]), "'kind'"),
    "kind is unknown": (entry_edit("kind", "module"), "unknown kind"),
    "requires_grad is an int": (entry_edit("requires_grad", 1), "'requires_grad'"),
    "device is an int": (entry_edit("device", 3), "'device'"),
    "device is no device": (entry_edit("device", "tpu:0"), "device 'tpu:0'"),
    # bad dtype strings
    "dtype unknown": (entry_edit("dtype", "zz"), "dtype 'zz'"),
    "dtype object": (entry_edit("dtype", "|O"), "dtype '|O'"),
    "dtype structured": (entry_edit("dtype", "i4,i4"), "dtype"),
    "dtype subarray": (entry_edit("dtype", "(1000000000000,)f4"), "dtype"),
    "dtype string type": (entry_edit("dtype", "<U4"), "dtype"),
    "dtype datetime": (entry_edit("dtype", "<M8"), "dtype"),
    "dtype is a list": (entry_edit("dtype", [["a", "<f4"]]), "'dtype'"),
    "dtype of odd size": (entry_edit("dtype", "<f3"), "dtype"),
    "int array requires grad": (lambda header: header["arrays"][-1].update(requires_grad=True, kind="tensor"),
                                "'steps' of dtype int64 cannot require a gradient"),
    # lying sizes, shapes and offsets
    "shape too big for the bytes": (entry_edit("shape", [6, 8]), "do not fit its 160 bytes"),
    "huge shape": (entry_edit("shape", [2**62, 2**62, 2**62]), "do not fit"),
    "huge shape and nbytes": (lambda header: header["arrays"][0].update(shape=[2**40], nbytes=2**42),
                              "outside the file's data"),
    "negative extents": (entry_edit("shape", [-5, -8]), "non-negative"),
    "too many dimensions": (entry_edit("shape", [1] * 65), "at most 64"),
    "zero-size with too many dimensions": (lambda header: header["arrays"][0].update(shape=[0] * 70, nbytes=0),
                                           "at most 64"),
    "offset far away": (entry_edit("offset", 1 << 40), "outside the file's data"),
    "negative offset": (entry_edit("offset", -64), "outside the file's data"),
    "unaligned offset": (entry_edit("offset", 3), "outside the file's data"),
    "nbytes past the end": (entry_edit("nbytes", 2**64 - 1), "fit"),
    "crc out of range": (entry_edit("crc32", 1 << 40), "checksum field"),
    "overlapping arrays": (lambda header: header["arrays"][1].update(offset=header["arrays"][0]["offset"]),
                           "overlaps"),
    # the tree
    "reference to a missing array": (root_edit(ext(2, 99)), "refers to array 99"),
    "reference to a negative array": (root_edit(ext(2, -1)), "refers to array -1"),
    "reference is a string": (root_edit(ext(2, "w")), "extension type 2"),
    "reference is a bool": (root_edit(ext(2, True)), "extension type 2"),
    "reference is undecodable": (root_edit(msgpack.ExtType(2, b"\xc1")), "cannot be decoded"),
    "tuple is not a list": (root_edit(ext(1, 5)), "extension type 1"),
    "tuple is undecodable": (root_edit(msgpack.ExtType(1, b"\x91")), "cannot be decoded"),
    "scalar is not a pair": (root_edit(ext(4, 5)), "extension type 4"),
    "scalar has three parts": (root_edit(ext(4, ["<f4", b"1234", 5])), "extension type 4"),
    "scalar of unknown dtype": (root_edit(ext(4, ["zz", b"12"])), "dtype 'zz'"),
    "scalar of object dtype": (root_edit(ext(4, ["|O", b"12345678"])), "dtype '|O'"),
    "scalar bytes too short": (root_edit(ext(4, ["<f8", b"12"])), "2 bytes, not 8"),
    "unknown extension": (root_edit(msgpack.ExtType(9, b"")), "unknown extension type 9"),
    "timestamp": (root_edit(msgpack.Timestamp(0)), "value of type Timestamp"),
    "float dict key": (root_edit({1.5: 1}), "dict key is a float"),
    "bytes dict key": (root_edit({b"k": 1}), "dict key is a bytes"),
    "nested tuples": (root_edit(nested_tuples(3000)), "nest more than 100 deep"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_header_is_a_checkpoint_error_naming_the_file(name, tmp_path):
    edit, phrase = FORGERIES[name]
    message = refusal(rewrite(BLOB, edit), tmp_path)
    assert phrase in message, message


@pytest.mark.parametrize("depth", [150, 1000, 100_000])
def test_deeply_nested_lists_and_maps_are_refused(depth, tmp_path):
    """Written as raw msgpack (a packer refuses to nest this deep), the way a forger would."""
    for opener in (b"\x91", b"\x81\xa1k"):  # a one-item list, a one-entry map {"k": ...}
        root = opener * depth + b"\x90"
        header = b"\x82\xa6arrays\x90\xa4root" + root
        message = refusal(with_header_bytes(BLOB, header), tmp_path)
        assert "deep" in message or "cannot be decoded" in message, message


def test_a_header_that_is_not_a_map_is_refused(tmp_path):
    for header in (b"\x90", b"\xc0", b"\x05", b"\xa4root", msgpack.packb([{"arrays": [], "root": 1}])):
        assert "'arrays' and 'root'" in refusal(with_header_bytes(BLOB, header), tmp_path)


def test_every_header_byte_changed_with_the_checksums_fixed_loads_or_is_refused():
    """Each header byte xor-ed with several masks, the frame's checksums recomputed: the loader
    must either load a (different but well-formed) checkpoint or raise CheckpointError."""
    header_bytes = BLOB[32:32 + struct.unpack_from("<Q", BLOB, 12)[0]]
    refused = 0
    for position in range(len(header_bytes)):
        for mask in (0x01, 0x20, 0x80, 0xFF):
            changed = bytearray(header_bytes)
            changed[position] ^= mask
            refused += load_or_refuse(with_header_bytes(BLOB, bytes(changed))) is not None
    assert refused > len(header_bytes)  # most changes break something the loader checks


def test_truncation_at_every_length_is_refused(tmp_path):
    path = tmp_path / "cut.dt"
    for cut in range(len(BLOB)):
        path.write_bytes(BLOB[:cut])
        with pytest.raises(CheckpointError, match="is empty|is truncated") as caught:
            distrain.load(path)
        assert str(path) in str(caught.value)
        with pytest.raises(CheckpointError, match="is empty|is truncated"):
            distrain.load(io.BytesIO(BLOB[:cut]))


class Stream:
    """A file object with only `read`: its length cannot be known before reading it."""

    def __init__(self, data):
        self.inner = io.BytesIO(data)

    def read(self, size=-1):
        return self.inner.read(size)


def claims_length(blob, file_length):
    forged = bytearray(blob)
    struct.pack_into("<Q", forged, 20, file_length)
    struct.pack_into("<I", forged, 28, zlib.crc32(bytes(forged[:28])))
    return bytes(forged)


@pytest.mark.parametrize("make_stream", [io.BytesIO, Stream], ids=["seekable", "read-only"])
def test_a_claimed_huge_length_allocates_nothing_like_it(make_stream):
    """A preamble claiming 16 GiB: the loader allocates what the stream holds, not what it claims."""
    forged = claims_length(BLOB, 16 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"checkpoint <(BytesIO|Stream)> is truncated: expected 17179869184"):
            distrain.load(make_stream(forged))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"loading a 1 KB stream that claims 16 GiB allocated {peak} bytes"


def test_a_read_only_stream_longer_than_one_read_chunk_loads(monkeypatch):
    monkeypatch.setattr(distrain.checkpoint.reader, "_READ_CHUNK", 1000)
    state = {"w": np.arange(5000.0), "v": np.arange(7, dtype=np.int8)}
    loaded = distrain.load(Stream(save_bytes(state)))
    np.testing.assert_array_equal(loaded["w"], state["w"])
    np.testing.assert_array_equal(loaded["v"], state["v"])
    assert loaded["w"].ctypes.data % 64 == 0


# Any msgpack value a forger could put in the header, including deep and odd ones.
LEAVES = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
          | st.binary(max_size=8))
VALUES = st.recursive(
    LEAVES | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=4) | st.integers(-2**63, 2**64 - 1), children, max_size=4)
                      | st.builds(lambda code, value: ext(code, value), st.sampled_from([1, 2, 4]), children)),
    max_leaves=30)
ENTRY_FIELDS = ["name", "kind", "dtype", "shape", "offset", "nbytes", "crc32", "device", "requires_grad"]
FIELD_VALUES = VALUES | st.sampled_from(["<f4", "|b1", "<i8", ">f8", "cpu", "cuda:0", "tensor", "ndarray"]) \
    | st.lists(st.integers(-3, 2**40), max_size=5) | st.integers(-128, 2**40)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(root=VALUES, field=st.sampled_from(ENTRY_FIELDS), value=FIELD_VALUES, index=st.integers(0, 4))
def test_any_forged_header_loads_or_is_a_checkpoint_error(root, field, value, index):
    header, _ = parse(BLOB)
    header["root"] = {"forged": root, "real": header["root"]}
    header["arrays"][index % len(header["arrays"])][field] = value
    load_or_refuse(with_header_bytes(BLOB, msgpack.packb(header, use_bin_type=True)))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=300))
def test_any_header_bytes_load_or_are_a_checkpoint_error(header_bytes):
    load_or_refuse(with_header_bytes(BLOB, header_bytes))
