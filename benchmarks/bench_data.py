"""The data pipeline: loader throughput beside PyTorch's DataLoader, and training with the loader on.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_data.py                  # 50,000 samples, 3 rounds
    python benchmarks/bench_data.py --samples 20000 --rounds 2 --record

Data: `--samples` synthetic 3x32x32 uint8 images with int64 labels, written once (cached in
the system's temp directory) both as distrain shards and as one .npy pair that PyTorch's
Dataset memory-maps. Every contender reads with a batch of 256, shuffled, and applies the
same per-sample float32 normalisation ((x / 255 - mean) / std per channel).

Throughput (samples/s; one epoch per measurement, contenders alternating epoch by epoch,
the median of `--rounds`):
  distrain_w0 / torch_w0   ShardDataset + DataLoader vs torch Dataset + DataLoader, in process
  distrain_w2 / torch_w2   the same with 2 worker processes       target distrain >= 1.5x torch
  distrain_* use ShardDataset's batch_transform (the normalisation once per batch, vectorised);
  distrain_per_sample_* the per-sample transform, PyTorch's idiom, for comparison
  ceiling                  one process gathering shuffled batches from the memmap with one fancy
                           index per batch and normalising the batch in one pass
                                                                    target distrain_w2 >= ceiling / 2
Training (`training_*`): an MLP 3072-512-10 step (forward, backward, SGD) per batch, once
fed from batches already in memory and once from the loader (`--training-workers`, default
1): the step time with the loader on should be within 5% of the in-memory one.
"""
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BATCH = 256
MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)


def make_data(samples):
    """Write (once) the synthetic dataset as shards and as .npy files; return their paths."""
    import numpy as np

    from distrain.data import write_shards

    root = os.path.join(tempfile.gettempdir(), f"distrain_bench_data_{samples}")
    shards, images_path, labels_path = (os.path.join(root, name) for name in ("shards", "images.npy", "labels.npy"))
    if not os.path.exists(os.path.join(shards, "index.json")):
        os.makedirs(root, exist_ok=True)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (samples, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, samples).astype(np.int64)
        np.save(images_path, images)
        np.save(labels_path, labels)
        write_shards(shards, {"image": images, "label": labels}, samples_per_shard=4096, overwrite=True)
    return shards, images_path, labels_path


class Normalize:
    """(x / 255 - mean) / std per channel, on one NumPy sample: distrain's transform."""

    def __init__(self):
        import numpy as np

        self.scale = (1.0 / (255.0 * np.asarray(STD, np.float32))).reshape(3, 1, 1)
        self.shift = (np.asarray(MEAN, np.float32) / np.asarray(STD, np.float32)).reshape(3, 1, 1)

    def __call__(self, sample):
        image = sample["image"] * self.scale  # uint8 * float32 -> float32; broadcasts over a batch too
        image -= self.shift
        return {"image": image, "label": sample["label"]}


def torch_dataset(images_path, labels_path):
    import numpy as np
    import torch

    class NpyImages(torch.utils.data.Dataset):
        """The usual PyTorch way: a memmapped .npy, one sample per __getitem__, a tensor transform."""

        def __init__(self):
            self.images = self.labels = None
            self.mean = torch.tensor(MEAN).view(3, 1, 1)
            self.std = torch.tensor(STD).view(3, 1, 1)
            self.length = len(np.load(labels_path, mmap_mode="r"))

        def __len__(self):
            return self.length

        def __getitem__(self, index):
            if self.images is None:  # opened in each worker
                self.images = np.load(images_path, mmap_mode="r")
                self.labels = np.load(labels_path, mmap_mode="r")
            image = torch.from_numpy(np.array(self.images[index])).float().div_(255).sub_(self.mean).div_(self.std)
            return image, int(self.labels[index])

    return NpyImages()


def epoch_seconds(loader):
    start = time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch["label"] if isinstance(batch, dict) else batch[1])
    return time.perf_counter() - start, count


def ceiling_epoch(images_path, labels_path):
    import numpy as np

    images = np.load(images_path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    scale = (1.0 / (255.0 * np.asarray(STD, np.float32))).reshape(1, 3, 1, 1)
    shift = (np.asarray(MEAN, np.float32) / np.asarray(STD, np.float32)).reshape(1, 3, 1, 1)
    order = np.random.default_rng(0).permutation(len(labels))

    def run():
        start = time.perf_counter()
        for begin in range(0, len(order), BATCH):
            index = order[begin:begin + BATCH]
            batch = images[index] * scale
            batch -= shift
            labels[index]
        return time.perf_counter() - start, len(order)

    return run


def throughput(args, paths):
    import torch

    from distrain.data import DataLoader, ShardDataset

    shards, images_path, labels_path = paths
    contenders = {}
    for workers in (0, 2):
        # distrain's lean path: the same normalisation as a batch transform (one vectorised pass per batch)
        batched = ShardDataset(shards, batch_transform=Normalize())
        contenders[f"distrain_w{workers}"] = DataLoader(batched, batch_size=BATCH, shuffle=True, num_workers=workers,
                                                        seed=0, persistent_workers=workers > 0)
        # and PyTorch's idiom in distrain: the transform called once per sample
        per_sample = ShardDataset(shards, transform=Normalize())
        contenders[f"distrain_per_sample_w{workers}"] = DataLoader(
            per_sample, batch_size=BATCH, shuffle=True, num_workers=workers, seed=0, persistent_workers=workers > 0)
        generator = torch.Generator().manual_seed(0)
        contenders[f"torch_w{workers}"] = torch.utils.data.DataLoader(
            torch_dataset(images_path, labels_path), batch_size=BATCH, shuffle=True, num_workers=workers,
            generator=generator, persistent_workers=workers > 0)
    runs = {name: (lambda loader=loader: epoch_seconds(loader)) for name, loader in contenders.items()}
    runs["ceiling"] = ceiling_epoch(images_path, labels_path)
    for run in runs.values():
        run()  # warm-up: page cache, worker start-up, first shard checks
    rates = {name: [] for name in runs}
    for round_number in range(args.rounds):
        names = list(runs)
        names = names[round_number % len(names):] + names[:round_number % len(names)]
        for name in names:
            seconds, count = runs[name]()
            rates[name].append(count / seconds)
    return {name: statistics.median(values) for name, values in rates.items()}


def training(args, paths):
    import distrain
    from distrain.data import DataLoader, ShardDataset

    shards = paths[0]
    distrain.manual_seed(0)
    model = distrain.nn.Sequential(distrain.nn.Flatten(), distrain.nn.Linear(3072, 512), distrain.nn.ReLU(),
                                   distrain.nn.Linear(512, 10))
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = distrain.nn.CrossEntropyLoss()

    def step(images, labels):
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()

    loader = DataLoader(ShardDataset(shards, batch_transform=Normalize()), batch_size=BATCH, shuffle=True,
                        num_workers=args.training_workers, seed=0, persistent_workers=True, drop_last=True)
    in_memory = [{"image": b["image"].clone(), "label": b["label"].clone()} for _, b in zip(range(40), loader)]

    def memory_epoch():
        start = time.perf_counter()
        for batch in in_memory:
            step(batch["image"], batch["label"])
        return (time.perf_counter() - start) / len(in_memory)

    def loader_epoch():
        start = time.perf_counter()
        count = 0
        for batch in loader:
            step(batch["image"], batch["label"])
            count += 1
            if count == len(in_memory):
                break
        return (time.perf_counter() - start) / count

    memory_epoch(), loader_epoch()
    memory, streamed = [], []
    for _ in range(args.rounds + 2):
        memory.append(memory_epoch())
        streamed.append(loader_epoch())
    return statistics.median(memory), statistics.median(streamed)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--training-workers", type=int, default=1,
                        help="loader workers in the training comparison (default %(default)s: on 2 cores, a "
                             "second worker takes a core from the training step)")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl")
    args = parser.parse_args(argv)
    harness.limit_threads_before_import(args.threads)
    machine = harness.machine_info(args.threads, harness.apply_thread_limits(args.threads))
    paths = make_data(args.samples)
    rates = throughput(args, paths)
    memory_ms, loader_ms = training(args, paths)
    print(f"# {machine['cpu']}, {machine['cores']} cores, {args.samples} samples of 3x32x32 uint8, batch {BATCH}")
    for name, rate in rates.items():
        print(f"{name:14s} {rate:12,.0f} samples/s")
    results = [
        {"name": "loader_per_sample_transform_w2_vs_torch", "distrain_samples_per_s": rates["distrain_per_sample_w2"],
         "peer_samples_per_s": rates["torch_w2"], "speedup": rates["distrain_per_sample_w2"] / rates["torch_w2"],
         "target": None},
        {"name": "loader_w0_vs_torch", "distrain_samples_per_s": rates["distrain_w0"],
         "peer_samples_per_s": rates["torch_w0"], "speedup": rates["distrain_w0"] / rates["torch_w0"], "target": None},
        {"name": "loader_w2_vs_torch", "distrain_samples_per_s": rates["distrain_w2"],
         "peer_samples_per_s": rates["torch_w2"], "speedup": rates["distrain_w2"] / rates["torch_w2"],
         "target": ">= 1.5"},
        {"name": "loader_w2_vs_memmap_ceiling", "distrain_samples_per_s": rates["distrain_w2"],
         "ceiling_samples_per_s": rates["ceiling"], "fraction_of_ceiling": rates["distrain_w2"] / rates["ceiling"],
         "target": ">= 0.5"},
        {"name": "training_step_with_loader", "in_memory_ms": memory_ms * 1e3, "with_loader_ms": loader_ms * 1e3,
         "ratio": loader_ms / memory_ms, "loader_workers": args.training_workers, "target": "<= 1.05"},
    ]
    for result in results:
        result["machine"] = machine
        result["samples"] = args.samples
        print(json.dumps(result))
    print(f"training step: in memory {memory_ms * 1e3:.2f} ms, with a {args.training_workers}-worker loader "
          f"{loader_ms * 1e3:.2f} ms "
          f"({loader_ms / memory_ms:.3f}x)")
    if args.record:
        with open(harness.default_results_path(RESULTS_DIR), "a") as results_file:
            for result in results:
                results_file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
