"""metrics.jsonl: exact floats, strict JSON for non-finite values, resume truncation, TensorBoard events."""
import glob
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from distrain import durable
from distrain.errors import ArgumentError, MetricsError
from distrain.train.metrics import MetricsLog, read_metrics


def strict_json(line):
    """json.loads that refuses NaN/Infinity, which Python's json accepts but JSON does not."""
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant} in {line!r}")
    return json.loads(line, parse_constant=refuse)


def lines_of(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as file:
        return file.read().split("\n")


def write_steps(run_dir, steps, **options):
    """Train lines for `steps` (loss 1/step) and an eval line every 5th step, as a trainer writes them."""
    with MetricsLog(run_dir, tensorboard=False, **options) as metrics:
        for step in steps:
            metrics.train(step, epoch=step // 5, loss=1.0 / step, lr=0.1, samples_per_s=1000.0 + step)
            if step % 5 == 0:
                metrics.eval(step, epoch=step // 5, accuracy=step / 100)


def test_floats_round_trip_bit_for_bit(tmp_path):
    losses = [0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 2.0 / 3.0, float(np.float32(0.1)),
              np.float64(1.0) / 3.0, np.float32(1.0) / np.float32(3.0), np.float16(0.1)]
    with MetricsLog(tmp_path, tensorboard=False) as metrics:
        for step, loss in enumerate(losses, start=1):
            metrics.train(step, epoch=0, loss=loss, lr=np.float32(0.01), samples_per_s=1.0, comm_s=loss)
    records = read_metrics(tmp_path)
    assert [record["step"] for record in records] == list(range(1, len(losses) + 1))
    for record, loss in zip(records, losses):
        expected = struct.pack("<d", float(loss))  # float32/16 widen to float64 exactly
        assert struct.pack("<d", record["loss"]) == expected
        assert struct.pack("<d", record["comm_s"]) == expected
        assert type(record["loss"]) is float
        assert np.float32(record["lr"]) == np.float32(0.01)
    for line in lines_of(tmp_path)[:-1]:
        strict_json(line)
    assert lines_of(tmp_path)[-1] == ""  # every line ends with a newline


def test_lines_hold_the_documented_keys(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as metrics:
        metrics.train(3, epoch=1, loss=0.5, lr=0.1, samples_per_s=1500.0, data_wait_s=0.002, time=12.5)
        metrics.eval(3, epoch=1, accuracy=np.float32(0.75), loss=0.4)
    train, evaluation = (strict_json(line) for line in lines_of(tmp_path)[:2])
    assert train == {"kind": "train", "step": 3, "epoch": 1, "loss": 0.5, "lr": 0.1, "samples_per_s": 1500.0,
                     "data_wait_s": 0.002, "time": 12.5}
    assert evaluation == {"kind": "eval", "step": 3, "epoch": 1, "accuracy": 0.75, "loss": 0.4}


def test_nonfinite_values_are_strings_listed_under_nonfinite(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as metrics:
        metrics.train(1, epoch=0, loss=float("nan"), lr=np.float32("-inf"), samples_per_s=float("inf"))
        metrics.train(2, epoch=0, loss=0.25, lr=0.1, samples_per_s=10.0)
    first, second = (strict_json(line) for line in lines_of(tmp_path)[:2])
    assert first == {"kind": "train", "step": 1, "epoch": 0, "loss": "nan", "lr": "-inf", "samples_per_s": "inf",
                     "nonfinite": ["loss", "lr", "samples_per_s"]}
    assert "nonfinite" not in second
    records = read_metrics(tmp_path)
    assert math.isnan(records[0]["loss"])
    assert records[0]["lr"] == float("-inf") and records[0]["samples_per_s"] == float("inf")
    assert records[1]["loss"] == 0.25


def test_lines_are_in_the_file_after_flush_and_sync(tmp_path, monkeypatch):
    metrics = MetricsLog(tmp_path, tensorboard=False)
    for step in (1, 2):
        metrics.train(step, epoch=0, loss=0.5, lr=0.1, samples_per_s=10.0)
        metrics.flush()
        assert [record["step"] for record in read_metrics(tmp_path)] == list(range(1, step + 1))  # before close
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    metrics.sync()
    assert synced == [metrics._file.fileno()]
    metrics.close()


def test_resume_keeps_the_lines_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path):
    write_steps(tmp_path, range(1, 11))
    original = lines_of(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as file:
        file.write('{"kind": "train", "step": 11, "epoch": 2, "lo')  # killed mid-line
    assert [record["step"] for record in read_metrics(tmp_path)][-1] == 10  # the reader skips the torn line

    write_steps(tmp_path, range(6, 9), resume_step=5)  # the checkpoint of step 5
    kept = [line for line in original if line and json.loads(line)["step"] <= 5]
    assert len(kept) == 6  # 5 train lines and the eval of step 5
    assert lines_of(tmp_path) == kept + original[6:9] + [""]  # byte for byte what the first run wrote
    assert [(record["kind"], record["step"]) for record in read_metrics(tmp_path)] == [
        ("train", 1), ("train", 2), ("train", 3), ("train", 4), ("train", 5), ("eval", 5),
        ("train", 6), ("train", 7), ("train", 8)]


def test_resume_keeps_a_complete_last_line_without_its_newline(tmp_path):
    write_steps(tmp_path, range(1, 4))
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-1])  # cut exactly before the last newline
    write_steps(tmp_path, [4], resume_step=3)
    assert [record["step"] for record in read_metrics(tmp_path)] == [1, 2, 3, 4]


def test_resume_rewrite_is_atomic(tmp_path, monkeypatch):
    write_steps(tmp_path, range(1, 11))
    before = (tmp_path / "metrics.jsonl").read_bytes()

    def disk_fails(descriptor):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(durable.os, "fsync", disk_fails)
    with pytest.raises(OSError):
        MetricsLog(tmp_path, resume_step=5, tensorboard=False)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before  # the old file, whole
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # and no temporary left beside it


def test_a_new_run_starts_an_empty_file(tmp_path):
    write_steps(tmp_path, range(1, 11))
    write_steps(tmp_path, [1, 2])
    assert [record["step"] for record in read_metrics(tmp_path)] == [1, 2]


def test_a_damaged_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    write_steps(tmp_path, range(1, 4))
    lines = lines_of(tmp_path)
    lines[1] = lines[1][:20]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(MetricsError, match=r"metrics.jsonl, line 2: not a JSON object"):
        read_metrics(tmp_path)
    with pytest.raises(MetricsError, match="line 2"):
        MetricsLog(tmp_path, resume_step=3, tensorboard=False)
    with pytest.raises(MetricsError, match="no metrics.jsonl in"):
        read_metrics(tmp_path / "elsewhere")


def test_bad_values_are_refused_with_their_name(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as metrics:
        with pytest.raises(MetricsError, match="metric 'comm_s' is a list"):
            metrics.train(1, epoch=0, loss=1.0, lr=0.1, samples_per_s=1.0, comm_s=[1.0, 2.0])
        with pytest.raises(MetricsError, match="'nonfinite' is a reserved key"):
            metrics.train(1, epoch=0, loss=1.0, lr=0.1, samples_per_s=1.0, nonfinite=True)
        with pytest.raises(MetricsError, match="step must be an integer"):
            metrics.train(1.5, epoch=0, loss=1.0, lr=0.1, samples_per_s=1.0)
        with pytest.raises(ArgumentError, match=r"accuracy is a fraction in \[0, 1\], got 97.5"):
            metrics.eval(1, epoch=0, accuracy=97.5)
    assert lines_of(tmp_path) == [""]  # nothing half-written


def read_events(run_dir):
    """Every Event in run_dir's TensorBoard files, read from the TFRecord framing by hand.

    A record is: length (uint64 LE), its masked CRC (uint32), the data, the data's masked CRC.
    """
    from tensorboardX.proto import event_pb2
    events = []
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        with open(path, "rb") as file:
            data = file.read()
        position = 0
        while position < len(data):
            (length,) = struct.unpack_from("<Q", data, position)
            event = event_pb2.Event()
            event.ParseFromString(data[position + 12:position + 12 + length])
            events.append(event)
            position += 12 + length + 4
    return events


def scalars(events):
    return [(value.tag, event.step, value.simple_value) for event in events for value in event.summary.value]


def test_tensorboard_gets_the_same_numbers(tmp_path):
    with MetricsLog(tmp_path) as metrics:
        metrics.train(1, epoch=0, loss=0.1 + 0.2, lr=0.05, samples_per_s=1234.5, data_wait_s=0.25, comm_s=0.125,
                      time=1700000000.0)
        metrics.train(2, epoch=0, loss=float("nan"), lr=0.05, samples_per_s=1000.0)
        metrics.eval(2, epoch=0, accuracy=0.875)
    events = read_events(tmp_path)
    assert sorted(scalars(events)) == sorted([
        ("train/epoch", 1, 0.0), ("train/loss", 1, np.float32(0.1 + 0.2)), ("train/lr", 1, np.float32(0.05)),
        ("train/samples_per_s", 1, 1234.5), ("train/data_wait_s", 1, 0.25), ("train/comm_s", 1, 0.125),
        ("train/epoch", 2, 0.0), ("train/lr", 2, np.float32(0.05)), ("train/samples_per_s", 2, 1000.0),
        ("eval/epoch", 2, 0.0), ("eval/accuracy", 2, 0.875)])  # no NaN loss, no time, no step
    assert [event.wall_time for event in events if event.step == 1 and event.summary.value] == [1700000000.0] * 6
    starts = [event.step for event in events if event.session_log.status == event.session_log.START]
    assert starts == [0]  # a new run hides whatever an earlier run left in run_dir


def test_a_histogram_line_holds_its_counts_and_tensorboard_one_bar_per_whole_number(tmp_path):
    with MetricsLog(tmp_path) as metrics:
        metrics.histogram("staleness", 12, [3, 0, 8, 1], tag="staleness/rank_1", rank=1, mean=float("nan"))
        metrics.histogram("staleness", 13, [], tag="staleness/rank_1", rank=1)  # nothing seen: no TensorBoard event
        with pytest.raises(MetricsError, match=r"counts must be a list of whole numbers >= 0"):
            metrics.histogram("staleness", 14, [1, -1], tag="staleness/rank_1")
        with pytest.raises(MetricsError, match="'nonfinite' is a reserved key"):
            metrics.histogram("staleness", 14, [1], tag="staleness/rank_1", nonfinite=3)
    records = read_metrics(tmp_path)
    assert [{key: value for key, value in record.items() if key != "mean"} for record in records] == [
        {"kind": "staleness", "step": 12, "rank": 1, "counts": [3, 0, 8, 1], "nonfinite": ["mean"]},
        {"kind": "staleness", "step": 13, "rank": 1, "counts": []}]
    assert math.isnan(records[0]["mean"])
    histograms = [(value.tag, event.step, value.histo) for event in read_events(tmp_path)
                  for value in event.summary.value if value.HasField("histo")]
    assert [(tag, step) for tag, step, _ in histograms] == [("staleness/rank_1", 12)]
    histogram = histograms[0][2]
    assert list(histogram.bucket) == [3, 0, 8, 1] and list(histogram.bucket_limit) == [0.5, 1.5, 2.5, 3.5]
    assert (histogram.min, histogram.max, histogram.num, histogram.sum, histogram.sum_squares) == (0, 3, 12, 19, 41)
    assert not [value for event in read_events(tmp_path) for value in event.summary.value
                if value.HasField("simple_value")]  # the line's numbers are not scalars in TensorBoard


def test_tensorboard_on_resume_purges_the_steps_after_the_checkpoint(tmp_path):
    with MetricsLog(tmp_path, resume_step=7) as metrics:
        metrics.train(8, epoch=1, loss=0.5, lr=0.1, samples_per_s=10.0)
    events = read_events(tmp_path)
    starts = [event.step for event in events if event.session_log.status == event.session_log.START]
    assert starts == [8]  # TensorBoard drops the earlier files' events of steps >= 8
    assert ("train/loss", 8, 0.5) in scalars(events)


def test_without_tensorboardx_one_line_says_so_and_metrics_still_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` raises ImportError
    said = []
    with MetricsLog(tmp_path, say=said.append) as metrics:
        metrics.train(1, epoch=0, loss=0.5, lr=0.1, samples_per_s=10.0)
    assert len(said) == 1 and "tensorboardX is not installed" in said[0] and "distrain[viz]" in said[0]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
    assert read_metrics(tmp_path)[0]["loss"] == 0.5


def test_tensorboard_false_writes_no_events_and_says_nothing(tmp_path):
    said = []
    with MetricsLog(tmp_path, tensorboard=False, say=said.append) as metrics:
        metrics.train(1, epoch=0, loss=0.5, lr=0.1, samples_per_s=10.0)
    assert said == [] and os.listdir(tmp_path) == ["metrics.jsonl"]


def test_tensorboard_every_keeps_training_scalars_of_every_nth_step_and_every_evaluation(tmp_path):
    with MetricsLog(tmp_path, tensorboard_every=10) as metrics:
        for step in range(1, 26):
            metrics.train(step, epoch=0, loss=1.0 / step, lr=0.1, samples_per_s=1.0)
        metrics.eval(25, epoch=0, accuracy=0.5)
    steps = sorted({(tag.split("/")[0], step) for tag, step, _ in scalars(read_events(tmp_path))})
    assert steps == [("eval", 25), ("train", 10), ("train", 20)]
    assert len(lines_of(tmp_path)) == 25 + 1 + 1  # metrics.jsonl keeps every step (and ends with a newline)


def test_tensorboard_does_not_import_torch(tmp_path):
    """distrain never imports torch; tensorboardX would (1-3 s per rank) where torch is installed."""
    code = ("import sys; from distrain.train.metrics import MetricsLog; "
            f"MetricsLog({str(tmp_path)!r}).close(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr
