"""Forged, malformed and truncated index.json and shard files: always a ShardError naming the file.

Never a RecursionError, KeyError, TypeError, ValueError or OverflowError from deep inside, and
never a dataset that reads wrong values. A table of corruptions says what each message names;
hypothesis then puts arbitrary JSON values anywhere in a valid index, and cuts and flips
bytes of index.json and of a shard file.
"""
import json
import os
import re
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distrain.data import ShardDataset, write_shards
from distrain.errors import ShardError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A 3-shard dataset (5, 5, 2 samples) of two fields, never modified: tests copy it."""
    path = tmp_path_factory.mktemp("pristine") / "ds"
    rng = np.random.default_rng(0)
    write_shards(path, {"image": rng.random((12, 2, 3), dtype=np.float32), "label": np.arange(12)},
                 samples_per_shard=5)
    return path


@pytest.fixture
def dataset(pristine, tmp_path):
    path = tmp_path / "ds"
    shutil.copytree(pristine, path)
    return path


def read_everything(path, verify):
    """Open the dataset and read every sample, one by one and as one batch."""
    ds = ShardDataset(path, verify=verify)
    samples = [ds[i] for i in range(len(ds))]
    ds.get_batch(list(range(len(ds))))
    return samples


def index_json(path):
    with open(path / "index.json") as file:
        return json.load(file)


def write_index(path, value):
    if isinstance(value, bytes):
        (path / "index.json").write_bytes(value)
    else:
        (path / "index.json").write_text(value if isinstance(value, str) else json.dumps(value))


def nested(depth):
    return "[" * depth + "]" * depth


def edited(edit):
    """An index from `edit(index)` on the pristine one (edit changes it in place)."""
    def apply(index):
        edit(index)
        return index
    return apply


CORRUPTIONS = [
    # (what, text or function of the pristine index, the message after "index.json ")
    ("deeply nested", nested(100_000), "is not valid JSON .*nested too deeply"),
    ("nested in a field", lambda index: json.dumps(index).replace('"shape": [2, 3]', '"shape": ' + nested(5000)),
     "is not valid JSON .*nested too deeply"),
    ("a list", "[1, 2]", "is not a distrain shard index"),
    ("a number", "12", "is not a distrain shard index"),
    ("empty", "", "is not valid JSON"),
    ("not UTF-8", b"\xff\xfe{", "is not valid JSON"),
    ("fields missing", edited(lambda index: index.pop("fields")), "missing entry 'fields'"),
    ("fields a dict", edited(lambda index: index.update(fields={"a": 1})), "'fields' is {'a': 1}, not a list"),
    ("fields empty", edited(lambda index: index.update(fields=[])), "'fields' is empty"),
    ("field a string", edited(lambda index: index["fields"].__setitem__(0, "image")), r"fields\[0\] is 'image'"),
    ("name a number", edited(lambda index: index["fields"][0].update(name=5)), "'name' is 5, not a string"),
    ("name with a slash", edited(lambda index: index["fields"][0].update(name="../x")), "has name '../x'"),
    ("duplicate names", edited(lambda index: index["fields"][1].update(name="image")), "has name 'image'"),
    ("dtype a number", edited(lambda index: index["fields"][0].update(dtype=4)), "'dtype' is 4, not a string"),
    ("dtype garbage", edited(lambda index: index["fields"][0].update(dtype="<f4,(2")), "has dtype '<f4,\\(2'"),
    ("dtype object", edited(lambda index: index["fields"][0].update(dtype="|O")), "has dtype '|O'"),
    ("dtype structured", edited(lambda index: index["fields"][0].update(dtype="i4,f8")), "has dtype 'i4,f8'"),
    ("dtype void", edited(lambda index: index["fields"][0].update(dtype="|V8")), "has dtype '|V8'"),
    ("dtype a name", edited(lambda index: index["fields"][0].update(dtype="float32")), "has dtype 'float32'"),
    ("dtype huge", edited(lambda index: index["fields"][0].update(dtype="<U" + "9" * 5000)), "has dtype '<U999"),
    ("shape a string", edited(lambda index: index["fields"][0].update(shape="23")), "'shape' is '23', not a list"),
    ("shape negative", edited(lambda index: index["fields"][0].update(shape=[2, -3])), r"has shape \[2, -3\]"),
    ("shape floats", edited(lambda index: index["fields"][0].update(shape=[2.0, 3])), r"has shape \[2.0, 3\]"),
    ("shape bools", edited(lambda index: index["fields"][0].update(shape=[True, 3])), r"has shape \[True, 3\]"),
    ("shape absurd", edited(lambda index: index["fields"][0].update(shape=[10 ** 30])), "has shape"),
    ("shape too many dimensions", edited(lambda index: index["fields"][0].update(shape=[1] * 40)), "has shape"),
    ("shape absurd bytes", edited(lambda index: index["fields"][0].update(shape=[2 ** 31, 2 ** 31])),
     "field 'image' would take .* bytes, an absurd size"),
    ("shards missing", edited(lambda index: index.pop("shards")), "missing entry 'shards'"),
    ("shard null", edited(lambda index: index["shards"].__setitem__(1, None)), "shard 1 is None, not an object"),
    ("num_samples negative", edited(lambda index: (index["shards"][0].update(num_samples=-5),
                                                    index.update(num_samples=2))),
     "shard 0 has num_samples -5"),
    ("num_samples a string", edited(lambda index: index["shards"][0].update(num_samples="5")),
     "'num_samples' is '5', not an integer"),
    ("num_samples overflowing int64", edited(lambda index: (index["shards"][0].update(num_samples=2 ** 70),
                                                             index.update(num_samples=2 ** 70 + 7))),
     "shard 0 has num_samples"),
    ("total disagrees", edited(lambda index: index.update(num_samples=13)), "num_samples is 13, but the shards hold 12"),
    ("files a list", edited(lambda index: index["shards"][0].update(files=[])), "'files' is \\[\\], not an object"),
    ("files missing a field", edited(lambda index: index["shards"][2]["files"].pop("label")), "shard 2 lists files"),
    ("file entry a string", edited(lambda index: index["shards"][0]["files"].update(label="x.npy")),
     "the file entry is 'x.npy', not an object"),
    ("file outside", edited(lambda index: index["shards"][0]["files"]["label"].update(file="../x.npy")),
     "names file '../x.npy' outside the dataset directory"),
    ("file absolute", edited(lambda index: index["shards"][0]["files"]["label"].update(file="/etc/passwd")),
     "names file '/etc/passwd' outside"),
    ("file hidden", edited(lambda index: index["shards"][0]["files"]["label"].update(file=".index.json")),
     "names file '.index.json' outside"),
    ("file a number", edited(lambda index: index["shards"][0]["files"]["label"].update(file=3)), "'file' is 3"),
    ("nbytes negative", edited(lambda index: index["shards"][0]["files"]["label"].update(nbytes=-1)),
     "has nbytes -1, not a byte count"),
    ("nbytes a float", edited(lambda index: index["shards"][0]["files"]["label"].update(nbytes=168.0)),
     "has nbytes 168.0"),
    ("crc32 too big", edited(lambda index: index["shards"][0]["files"]["label"].update(crc32=2 ** 40)),
     "has crc32 1099511627776, not a 32-bit checksum"),
    ("crc32 missing", edited(lambda index: index["shards"][0]["files"]["label"].pop("crc32")), "has crc32 None"),
    ("sample_type other", edited(lambda index: index.update(sample_type="list")), "sample_type is 'list'"),
    ("sample_type missing", edited(lambda index: index.pop("sample_type")), "sample_type is None"),
    ("version a list", edited(lambda index: index.update(version=[1])), "has format version \\[1\\]"),
]


@pytest.mark.parametrize("verify", ["lazy", "none"])
@pytest.mark.parametrize("what, corruption, problem", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_index_is_a_shard_error_naming_it(dataset, verify, what, corruption, problem):
    write_index(dataset, corruption(index_json(dataset)) if callable(corruption) else corruption)
    with pytest.raises(ShardError, match=f"{re.escape(str(dataset / 'index.json'))} .*{problem}"):
        read_everything(dataset, verify)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False)
                    | st.text(max_size=12),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                      max_size=4),
                    max_leaves=12)


def _paths(value, prefix=()):
    """Every path (a tuple of keys and indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for number, child in enumerate(value):
            yield from _paths(child, prefix + (number,))


def _replaced(value, path, replacement):
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, replacement)}
    return [_replaced(child, rest, replacement) if number == head else child for number, child in enumerate(value)]


def _reads_right_or_raises_a_shard_error(path, expected):
    """With checks on (lazy), the dataset reads its true values or is refused; with verify="none" (no
    checksums: an index pointing shard 1 at shard 0's file would go unnoticed) it is at least never
    anything but a ShardError naming a file of the dataset."""
    for verify in ("lazy", "none"):
        try:
            samples = read_everything(path, verify)
        except ShardError as error:
            assert str(path) in str(error)
            continue
        if verify == "lazy":
            assert len(samples) == len(expected)
            for sample, (image, label) in zip(samples, expected):
                np.testing.assert_array_equal(sample["image"], image)
                assert sample["label"] == label


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_anywhere_in_the_index_is_refused_or_harmless(pristine, tmp_path, data):
    path = tmp_path / "ds"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(pristine, path)
    expected = [(sample["image"].copy(), int(sample["label"])) for sample in read_everything(path, "full")]
    index = index_json(path)
    where = data.draw(st.sampled_from(list(_paths(index))))
    write_index(path, _replaced(index, where, data.draw(JSON)))
    _reads_right_or_raises_a_shard_error(path, expected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cut_or_flipped_bytes_of_the_index_or_a_shard_file_are_refused_or_harmless(pristine, tmp_path, data):
    path = tmp_path / "ds"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(pristine, path)
    expected = [(sample["image"].copy(), int(sample["label"])) for sample in read_everything(path, "full")]
    name = data.draw(st.sampled_from(["index.json", "shard-00001.image.npy", "shard-00002.label.npy"]))
    content = bytearray((path / name).read_bytes())
    if data.draw(st.booleans()):
        content = content[:data.draw(st.integers(0, len(content) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 3))):
            limit = len(content) if name == "index.json" else min(len(content), 160)  # the header, some data
            content[data.draw(st.integers(0, limit - 1))] = data.draw(st.integers(0, 255))
    (path / name).write_bytes(bytes(content))
    if name == "index.json":
        _reads_right_or_raises_a_shard_error(path, expected)
        return
    # a damaged shard file: with checks on it is always refused (or the change was a no-op)
    try:
        read_everything(path, "lazy")
    except ShardError as error:
        assert os.path.join(path, name) in str(error)
    else:
        assert (path / name).read_bytes() == (pristine / name).read_bytes()
    try:
        read_everything(path, "none")  # no size or checksum: a header the index disagrees with still fails
    except ShardError as error:
        assert os.path.join(path, name) in str(error)


TRUNCATIONS = [0, 5, 8, 10, 40, 127, 128, 129, -1]


@pytest.mark.parametrize("verify", ["full", "lazy", "none"])
@pytest.mark.parametrize("keep", TRUNCATIONS, ids=[f"keep-{n}" for n in TRUNCATIONS])
def test_a_truncated_shard_file_is_a_shard_error_naming_it(dataset, verify, keep):
    file = dataset / "shard-00001.image.npy"
    size = file.stat().st_size
    os.truncate(file, keep % size)
    with pytest.raises(ShardError, match=f"{file} (is truncated|cannot be read as a .npy file)"):
        read_everything(dataset, verify)


@pytest.mark.parametrize("header, problem", [
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2, 3), }", "holds a float32 array"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 2, 3), }", "holds a float32 array"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 2, 3), }", r"holds a float32 array of shape \(-5"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (5, 2, 3), }", "holds a object array"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2, 3)", "cannot be read as a .npy file"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': 5, }", "cannot be read as a .npy file"),
    ("__import__('os').system('touch pwned')", "cannot be read as a .npy file"),
])
def test_a_forged_npy_header_is_a_shard_error_and_maps_nothing(dataset, header, problem):
    file = dataset / "shard-00001.image.npy"
    data = file.read_bytes()
    start = data.index(b"\n") + 1
    text = header.encode().ljust(117) + b"\n"
    file.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data[start:])
    with pytest.raises(ShardError, match=f"{file} {problem}"):
        read_everything(dataset, "none")
    assert not (dataset / "pwned").exists()
