"""The shard format: write_shards and ShardDataset round-trip, check their files, and write atomically."""
import importlib.util
import json
import multiprocessing
import os
import pickle
import zlib

import numpy as np
import pytest

from distrain.data.shards import ShardDataset, write_shards
from distrain.errors import DistrainError, DTypeError, ShapeError, ShardError

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def make_columns(count=23, seed=0):
    """Fields of several dtypes and per-sample shapes, scalars per sample included."""
    rng = np.random.default_rng(seed)
    return {"image": rng.random((count, 1, 3, 2), dtype=np.float32),
            "label": rng.integers(0, 10, count),                          # int64, shape () per sample
            "mask": rng.random((count, 4)) < 0.5,                         # bool
            "pixels": rng.integers(0, 255, (count, 2, 2), dtype=np.uint8),
            "weight": rng.random(count).astype(np.float16),
            "big_endian": np.arange(count * 2, dtype=">i4").reshape(count, 2)}


def assert_sample_equal(sample, expected):
    assert type(sample) is type(expected)
    items = zip(sample.values(), expected.values()) if isinstance(sample, dict) else zip(sample, expected)
    for value, want in items:
        assert np.asarray(value).dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(value, want)


def index_of(path):
    with open(os.path.join(path, "index.json")) as file:
        return json.load(file)


def leftovers(parent):
    """Hidden temporary or old directories that write_shards left in `parent`."""
    return [name for name in os.listdir(parent) if name.startswith(".")]


# -- round trips ---------------------------------------------------------------------------------------

def test_dict_columns_round_trip_with_a_partial_last_shard(tmp_path):
    columns = make_columns(23)
    path = write_shards(tmp_path / "ds", columns, samples_per_shard=5)
    assert path == os.fspath(tmp_path / "ds")
    ds = ShardDataset(path)
    assert len(ds) == 23 and ds.shard_sizes == (5, 5, 5, 5, 3)
    assert [field.name for field in ds.fields] == list(columns)
    for i in range(23):
        assert_sample_equal(ds[i], {name: column[i] for name, column in columns.items()})
    assert isinstance(ds[0]["label"], np.integer) and ds[0]["image"].shape == (1, 3, 2)


def test_tuple_columns_round_trip_as_tuples_with_fields_named_by_position(tmp_path):
    images, labels = np.arange(14.0).reshape(7, 2), np.arange(7, dtype=np.int32)
    ds = ShardDataset(write_shards(tmp_path / "ds", (images, labels), samples_per_shard=3))
    assert [field.name for field in ds.fields] == ["0", "1"]
    for i in range(7):
        assert_sample_equal(ds[i], (images[i], labels[i]))


def test_samples_are_read_only_views_of_the_files(tmp_path):
    ds = ShardDataset(write_shards(tmp_path / "ds", {"x": np.ones((4, 3))}, samples_per_shard=2))
    sample = ds[3]["x"]
    assert type(sample) is np.ndarray and not sample.flags.owndata and not sample.flags.writeable


def test_a_stream_is_written_one_shard_at_a_time(tmp_path):
    target, per_shard = tmp_path / "ds", 4
    expected, seen_on_disk = [], []

    def samples():
        for i in range(18):
            if i == 2 * per_shard:  # two shards are done: they must already be on disk, in the hidden directory
                hidden = [tmp_path / name for name in leftovers(tmp_path)]
                seen_on_disk.extend(sorted(os.listdir(hidden[0])))
                assert not target.exists()  # nothing claims to be a dataset before the end
            sample = (np.float32(i), np.full((2, 3), i, np.int16), np.array(i % 2 == 0))
            expected.append(sample)
            yield sample

    ds = ShardDataset(write_shards(target, samples(), samples_per_shard=per_shard))
    assert seen_on_disk == [f"shard-0000{k}.{field}.npy" for k in (0, 1) for field in "012"]
    assert len(ds) == 18 and ds.shard_sizes == (4, 4, 4, 4, 2)
    for i, sample in enumerate(expected):
        assert_sample_equal(ds[i], sample)
    assert leftovers(tmp_path) == []


def test_a_stream_of_dicts_reads_back_as_dicts(tmp_path):
    samples = [{"text": f"s{i:02d}", "value": np.array([i, -i], np.int8)} for i in range(5)]
    ds = ShardDataset(write_shards(tmp_path / "ds", iter(samples), samples_per_shard=2))
    for i, sample in enumerate(samples):
        got = ds[i]
        assert list(got) == ["text", "value"] and got["text"] == sample["text"]
        np.testing.assert_array_equal(got["value"], sample["value"])


def test_index_json_describes_fields_shards_sizes_and_checksums(tmp_path):
    columns = make_columns(12)
    path = write_shards(tmp_path / "ds", columns, samples_per_shard=5)
    index = index_of(path)
    assert (index["format"], index["version"], index["sample_type"]) == ("distrain.shards", 1, "dict")
    assert index["num_samples"] == 12 and index["samples_per_shard"] == 5
    assert index["fields"][:2] == [{"name": "image", "dtype": "<f4", "shape": [1, 3, 2]},
                                   {"name": "label", "dtype": "<i8", "shape": []}]
    assert index["fields"][5] == {"name": "big_endian", "dtype": ">i4", "shape": [2]}
    assert [shard["num_samples"] for shard in index["shards"]] == [5, 5, 2]
    for number, shard in enumerate(index["shards"]):
        assert list(shard["files"]) == list(columns)
        for name, entry in shard["files"].items():
            assert entry["file"] == f"shard-{number:05d}.{name}.npy"
            with open(os.path.join(path, entry["file"]), "rb") as file:
                raw = file.read()
            assert entry["nbytes"] == len(raw) and entry["crc32"] == zlib.crc32(raw)
    assert sorted(os.listdir(path)) == sorted(["index.json"] + [entry["file"] for shard in index["shards"]
                                                               for entry in shard["files"].values()])


def test_shard_files_are_plain_npy_files_numpy_can_load_and_map(tmp_path):
    columns = make_columns(12)
    path = write_shards(tmp_path / "ds", columns, samples_per_shard=5)
    for number, start in enumerate(range(0, 12, 5)):
        for name, column in columns.items():
            file = os.path.join(path, f"shard-{number:05d}.{name}.npy")
            loaded, mapped = np.load(file), np.load(file, mmap_mode="r")
            assert loaded.dtype == column.dtype and mapped.dtype == column.dtype
            np.testing.assert_array_equal(loaded, column[start:start + 5])
            np.testing.assert_array_equal(mapped, column[start:start + 5])


# -- get_batch, indexing, pickling, transforms ---------------------------------------------------------

def test_get_batch_keeps_the_order_of_indices_across_shards(tmp_path):
    columns = make_columns(23)
    ds = ShardDataset(write_shards(tmp_path / "ds", columns, samples_per_shard=5))
    indices = [22, 0, 7, 5, 4, 7, -1, 13, 20, 1, -23]
    batch = ds.get_batch(indices)
    assert list(batch) == list(columns)
    for name, column in columns.items():
        assert batch[name].dtype == column.dtype and batch[name].shape == (len(indices),) + column.shape[1:]
        np.testing.assert_array_equal(batch[name], column[indices])
        np.testing.assert_array_equal(batch[name], np.stack([ds[i][name] for i in indices]))
    np.testing.assert_array_equal(ds.get_batch(np.array([3, 17], np.uint16))["label"], columns["label"][[3, 17]])
    empty = ds.get_batch([])
    assert empty["image"].shape == (0, 1, 3, 2) and empty["label"].dtype == np.int64


def test_get_batch_of_a_tuple_dataset_is_a_tuple(tmp_path):
    x, y = np.arange(10.0), np.arange(10) * 3
    ds = ShardDataset(write_shards(tmp_path / "ds", [x, y], samples_per_shard=4))
    batch = ds.get_batch([9, 3, 4])
    assert isinstance(batch, tuple)
    np.testing.assert_array_equal(batch[0], [9.0, 3.0, 4.0])
    np.testing.assert_array_equal(batch[1], [27, 9, 12])


def test_indices_behave_like_a_list(tmp_path):
    ds = ShardDataset(write_shards(tmp_path / "ds", {"v": np.arange(7)}, samples_per_shard=3))
    assert ds[-1]["v"] == 6 and ds[-7]["v"] == 0 and ds[np.int64(4)]["v"] == 4
    for bad in (7, -8, 100):
        with pytest.raises(IndexError, match="7 samples"):
            ds[bad]
        with pytest.raises(IndexError, match=f"index {bad} .*7 samples"):
            ds.get_batch([0, bad])
    with pytest.raises(TypeError, match="get_batch"):
        ds[1.5]
    with pytest.raises(TypeError, match="ints"):
        ds.get_batch([0.5, 1.0])


def test_a_pickled_dataset_reads_the_same_without_carrying_memory_maps(tmp_path):
    columns = make_columns(2000)
    ds = ShardDataset(write_shards(tmp_path / "ds", columns, samples_per_shard=500))
    before = ds.get_batch(range(2000))  # opens every shard
    data_bytes = sum(column.nbytes for column in columns.values())
    copy = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < data_bytes / 20  # the index travels, the opened maps do not
    assert copy._opened == [None] * 4
    for name in columns:
        np.testing.assert_array_equal(copy.get_batch(range(2000))[name], before[name])
    assert_sample_equal(copy[1717], ds[1717])


def _sum_of_labels(ds, queue):
    queue.put(int(ds.get_batch(range(len(ds)))["label"].sum()))


def test_a_dataset_sent_to_a_spawned_process_reads_there(tmp_path):
    columns = make_columns(23)
    ds = ShardDataset(write_shards(tmp_path / "ds", columns, samples_per_shard=5))
    ds[0]  # shard 0 is open here; the child maps its own
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_sum_of_labels, args=(ds, queue))
    process.start()
    try:
        assert queue.get(timeout=60) == int(columns["label"].sum())
    finally:
        process.join(timeout=30)
    assert process.exitcode == 0


def test_transform_is_applied_per_sample_and_in_get_batch(tmp_path):
    images = np.arange(24.0, dtype=np.float32).reshape(6, 2, 2)
    path = write_shards(tmp_path / "ds", {"image": images, "label": np.arange(6)}, samples_per_shard=4)
    ds = ShardDataset(path, transform=lambda sample: (sample["image"] * 2, sample["label"] + 100))
    image, label = ds[5]
    np.testing.assert_array_equal(image, images[5] * 2)
    assert label == 105
    batch_images, batch_labels = ds.get_batch([5, 0, 3])
    np.testing.assert_array_equal(batch_images, images[[5, 0, 3]] * 2)
    np.testing.assert_array_equal(batch_labels, [105, 100, 103])


# -- damaged datasets ----------------------------------------------------------------------------------

@pytest.fixture
def dataset(tmp_path):
    """A 3-shard dataset (5, 5, 2 samples), and the path of its shard 1 "image" file."""
    path = write_shards(tmp_path / "ds", make_columns(12), samples_per_shard=5)
    return path, os.path.join(path, "shard-00001.image.npy")


def read_shard_1(path, verify):
    """Construct and read shard 1 of the dataset; construction alone checks everything with verify="full"."""
    ds = ShardDataset(path, verify=verify)
    ds[0]
    return ds[7], ds.get_batch([6, 8])


@pytest.mark.parametrize("verify", ["lazy", "full", "none"])
def test_a_missing_shard_file_is_named(dataset, verify):
    path, shard_file = dataset
    os.remove(shard_file)
    with pytest.raises(ShardError, match=f"{shard_file} is missing"):
        read_shard_1(path, verify)


@pytest.mark.parametrize("verify", ["lazy", "full", "none"])
def test_a_truncated_shard_file_is_named(dataset, verify):
    path, shard_file = dataset
    os.truncate(shard_file, os.path.getsize(shard_file) - 7)
    problem = "cannot be read as a .npy file" if verify == "none" else "is truncated"
    with pytest.raises(ShardError, match=f"{shard_file} {problem}"):
        read_shard_1(path, verify)


@pytest.mark.parametrize("verify", ["lazy", "full"])
def test_a_flipped_byte_fails_the_checksum(dataset, verify):
    path, shard_file = dataset
    with open(shard_file, "r+b") as file:
        file.seek(os.path.getsize(shard_file) - 10)  # in the data, after the header
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ShardError, match=f"{shard_file} is damaged: its CRC-32"):
        read_shard_1(path, verify)
    if verify == "lazy":  # shard 0 is intact and reads; the check is per shard
        ShardDataset(path)[0]


def flip_byte(file, offset):
    with open(file, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("verify", ["lazy", "full"])
def test_the_checksum_covers_a_file_past_its_first_read_chunk(tmp_path, verify):
    """A field file of 5 MiB: a damaged byte after the first 4 MiB (the checksum's read size) is found."""
    path = write_shards(tmp_path / "ds", {"x": np.zeros((10, 1 << 17), np.float32), "y": np.arange(10)},
                        samples_per_shard=10)
    file = os.path.join(path, "shard-00000.x.npy")
    assert os.path.getsize(file) > (1 << 22) + (1 << 20)
    np.testing.assert_array_equal(ShardDataset(path, verify=verify)[9]["x"], np.zeros(1 << 17))  # intact: it reads
    flip_byte(file, (1 << 22) + (1 << 19))
    with pytest.raises(ShardError, match=f"{file} is damaged: its CRC-32"):
        ShardDataset(path, verify=verify)[9]


@pytest.mark.parametrize("verify", ["lazy", "full"])
@pytest.mark.parametrize("field", ["image", "label", "big_endian"])
def test_the_checksum_covers_every_fields_file(dataset, verify, field):
    path, _ = dataset
    file = os.path.join(path, f"shard-00001.{field}.npy")
    flip_byte(file, os.path.getsize(file) - 3)  # in the data, after the header
    with pytest.raises(ShardError, match=f"{file} is damaged: its CRC-32"):
        read_shard_1(path, verify)


def test_full_verification_happens_at_construction_and_none_skips_checksums(dataset):
    path, shard_file = dataset
    with open(shard_file, "r+b") as file:
        file.seek(-1, os.SEEK_END)
        file.write(b"\xff")
    with pytest.raises(ShardError, match="CRC-32"):
        ShardDataset(path, verify="full")
    read_shard_1(path, "none")  # no checksum: the damaged bytes are read as they are


def write_text(file, text, mode="w"):
    with open(file, mode) as handle:
        handle.write(text)


def edit_index(path, edit):
    index = index_of(path)
    edit(index)
    with open(os.path.join(path, "index.json"), "w") as file:
        json.dump(index, file)


@pytest.mark.parametrize("verify", ["lazy", "full", "none"])
@pytest.mark.parametrize("edit, found", [
    (lambda index: index["fields"][0].update(shape=[3, 1, 2]), r"float32 array of shape \(5, 1, 3, 2\)"),
    (lambda index: index["fields"][0].update(dtype="<f8"), r"holds a float32 array .* index.json says float64"),
    (lambda index: (index["shards"][1].update(num_samples=4), index.update(num_samples=11)),
     r"shape \(5, 1, 3, 2\), but index.json says float32 \(4, 1, 3, 2\)"),
], ids=["shape", "dtype", "count"])
def test_an_index_that_disagrees_with_the_files_names_the_file(dataset, verify, edit, found):
    path, shard_file = dataset
    edit_index(path, edit)
    with pytest.raises(ShardError, match=f"{os.path.join(path, 'shard-0000')}.*{found}.*disagree"):
        read_shard_1(path, verify)


@pytest.mark.parametrize("damage, problem", [
    (lambda path: write_text(os.path.join(path, "index.json"), "}", "a"), "is not valid JSON"),
    (lambda path: write_text(os.path.join(path, "index.json"), '{"format": "distrain.sh'), "is not valid JSON"),
    (lambda path: os.remove(os.path.join(path, "index.json")), "is missing: .* never finished"),
    (lambda path: edit_index(path, lambda index: index["shards"][0].update(num_samples=6)),
     "is malformed: num_samples is 12, but the shards hold 13"),
    (lambda path: edit_index(path, lambda index: index["shards"][2]["files"].pop("label")),
     "is malformed: shard 2 lists files"),
    (lambda path: edit_index(path, lambda index: index["shards"][2]["files"]["label"].update(file="../x.npy")),
     "is malformed: .* outside the dataset directory"),
    (lambda path: edit_index(path, lambda index: index.pop("fields")), "is malformed: missing entry 'fields'"),
    (lambda path: edit_index(path, lambda index: index.update(version=2)), "has format version 2.*upgrade distrain"),
])
def test_a_damaged_index_is_named(dataset, damage, problem):
    path, _ = dataset
    damage(path)
    with pytest.raises(ShardError, match=f"{os.path.join(path, 'index.json')} {problem}"):
        ShardDataset(path, verify="none")


def test_a_missing_dataset_directory_is_named(tmp_path):
    with pytest.raises(ShardError, match=f"{tmp_path / 'nowhere'} does not exist"):
        ShardDataset(tmp_path / "nowhere")


def test_shard_errors_are_distrain_runtime_errors():
    assert issubclass(ShardError, DistrainError) and issubclass(ShardError, RuntimeError)


# -- atomic writing, overwriting, refused input --------------------------------------------------------

def failing_stream(after):
    for i in range(after):
        yield {"x": np.full(3, i, np.float32), "y": np.int64(i)}
    raise RuntimeError("the source failed halfway")


def test_a_write_that_fails_halfway_leaves_no_dataset_and_no_temporary_directory(tmp_path):
    with pytest.raises(RuntimeError, match="failed halfway"):
        write_shards(tmp_path / "ds", failing_stream(after=11), samples_per_shard=4)
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_a_failed_overwrite_keeps_the_previous_dataset(tmp_path):
    path = write_shards(tmp_path / "ds", {"x": np.arange(6)}, samples_per_shard=4)
    with pytest.raises(RuntimeError, match="failed halfway"):
        write_shards(path, failing_stream(after=11), samples_per_shard=4, overwrite=True)
    ds = ShardDataset(path, verify="full")
    np.testing.assert_array_equal(ds.get_batch(range(6))["x"], np.arange(6))
    assert leftovers(tmp_path) == []


def test_an_existing_dataset_is_refused_unless_overwrite(tmp_path):
    path = write_shards(tmp_path / "ds", {"x": np.arange(6)}, samples_per_shard=4)
    with pytest.raises(ShardError, match="already exists.*overwrite=True"):
        write_shards(path, {"x": np.arange(3)})
    assert len(ShardDataset(path)) == 6
    write_shards(path, {"y": np.arange(3.0)}, overwrite=True)
    ds = ShardDataset(path, verify="full")
    assert len(ds) == 3 and [field.name for field in ds.fields] == ["y"]
    assert sorted(os.listdir(path)) == ["index.json", "shard-00000.y.npy"] and leftovers(tmp_path) == []


def test_other_paths_are_never_replaced_but_an_empty_directory_is_used(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for occupied in ("notes", "file"):
        with pytest.raises(ShardError, match="not a shard dataset.*left untouched"):
            write_shards(tmp_path / occupied, {"x": np.arange(3)}, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert len(ShardDataset(write_shards(tmp_path / "empty", {"x": np.arange(3)}))) == 3
    assert len(ShardDataset(write_shards(tmp_path / "new" / "parents" / "ds", {"x": np.arange(3)}))) == 3
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("data, error, message", [
    ([], ShardError, "no samples"),
    ({}, ShardError, "no fields"),
    ({"x": np.zeros((0, 3))}, ShardError, "no samples"),
    ((sample for sample in []), ShardError, "no samples"),
    ({"x": np.zeros(4), "y": np.zeros(5)}, ShapeError, r"same number of samples.*'x': 4, 'y': 5"),
    ({"x": np.float32(1.0)}, ShapeError, "'x' is a 0-d array"),
    ({"x": np.array([None] * 3)}, DTypeError, "'x' has dtype object"),
    ({"a.b": np.zeros(3)}, ShardError, "field name 'a.b' is not allowed"),
    ([(np.zeros(2),), (np.zeros(3),)], ShapeError, r"sample 1, field '0' has shape \(3,\), but sample 0 had \(2,\)"),
    ([(1,), (1.5,)], DTypeError, "sample 1, field '0' has dtype float64, but sample 0 had int64"),
    ([{"a": 1}, {"b": 1}], ShardError, r"sample 1 has fields \['b'\], but sample 0 had \['a'\]"),
    ([(1,), 2], TypeError, "sample 1 is a int"),
    (np.zeros((3, 2)), TypeError, r"\{'name': array\} or \(array,\)"),
    (42, TypeError, "got int"),
])
def test_bad_input_is_refused_with_a_clear_error_and_nothing_left_behind(tmp_path, data, error, message):
    with pytest.raises(error, match=message):
        write_shards(tmp_path / "ds", data, samples_per_shard=4)
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_shards(tmp_path / "ds", {"x": np.arange(3)}, samples_per_shard=0)
    path = write_shards(tmp_path / "ds", {"x": np.arange(3)})
    with pytest.raises(ValueError, match="verify"):
        ShardDataset(path, verify="sometimes")


# -- the example that makes a dataset ------------------------------------------------------------------

def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_digits_shards_writes_the_1797_digits(tmp_path, capsys):
    path = load_example("make_digits_shards").main(["--out", str(tmp_path / "digits")])
    assert "1797" in capsys.readouterr().out
    ds = ShardDataset(path, verify="full")
    assert len(ds) == 1797 and ds.shard_sizes == (256,) * 7 + (5,)
    batch = ds.get_batch(range(1797))
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (1797, 1, 8, 8)
    assert batch["image"].min() == 0.0 and batch["image"].max() == 1.0
    assert batch["label"].dtype == np.int64 and sorted(set(batch["label"].tolist())) == list(range(10))


def test_make_digits_shards_converts_an_npz(tmp_path, capsys):
    arrays = {"features": np.arange(30.0).reshape(10, 3), "target": np.arange(10) % 2}
    np.savez(tmp_path / "arrays.npz", **arrays)
    path = load_example("make_digits_shards").main(["--out", str(tmp_path / "ds"), "--from-npz",
                                                    str(tmp_path / "arrays.npz"), "--samples-per-shard", "4"])
    ds = ShardDataset(path)
    assert ds.shard_sizes == (4, 4, 2) and "features" in capsys.readouterr().out
    for name, array in arrays.items():
        np.testing.assert_array_equal(ds.get_batch(range(10))[name], array)


def test_batch_transform_runs_once_per_batch_and_agrees_with_item_access(tmp_path):
    images = np.arange(40 * 2 * 3, dtype=np.uint8).reshape(40, 2, 3)
    path = write_shards(tmp_path / "ds", {"image": images, "label": np.arange(40)}, samples_per_shard=16)
    calls = []

    def normalise(batch):
        calls.append(len(batch["label"]))
        return {"image": batch["image"].astype(np.float32) / 255, "label": batch["label"]}

    dataset = ShardDataset(path, batch_transform=normalise)
    batch = dataset.get_batch([3, 17, 39, 0])
    np.testing.assert_allclose(batch["image"], images[[3, 17, 39, 0]].astype(np.float32) / 255)
    assert calls == [4]
    np.testing.assert_allclose(dataset[17]["image"], images[17].astype(np.float32) / 255)
    assert dataset[17]["label"] == 17


def test_transform_and_batch_transform_together_are_refused(tmp_path):
    path = write_shards(tmp_path / "ds", {"x": np.zeros((4, 2))}, samples_per_shard=2)
    with pytest.raises(ValueError, match="not both"):
        ShardDataset(path, transform=lambda s: s, batch_transform=lambda b: b)


def test_loader_workers_inherit_the_shard_checks_instead_of_repeating_them(tmp_path):
    from distrain.data import DataLoader

    path = write_shards(tmp_path / "ds", {"x": np.arange(100.0)}, samples_per_shard=10)
    dataset = ShardDataset(path)
    assert dataset._verified == set()
    total = sum(float(b["x"].sum()) for b in DataLoader(dataset, batch_size=7, num_workers=2))
    assert total == float(np.arange(100.0).sum())
    assert dataset._verified == set(range(10))  # checked once, in the process that started the workers
