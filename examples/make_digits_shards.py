"""Turn a dataset into distrain shards: scikit-learn's handwritten digits, or any .npz file.

The digits are 1797 grey 8x8 images of the digits 0-9. They are written as two fields,
"image" (float32, shape (1, 8, 8): one channel, scaled from 0..16 to [0, 1]) and "label"
(int64), in shards of --samples-per-shard samples. `distrain.data.ShardDataset(OUT)` reads
them back; a later example trains on them.

With --from-npz, every array in the .npz file becomes a field of the same name (all of
them must have the same length along their first axis); scikit-learn is then not needed.

    python examples/make_digits_shards.py --out data/digits [--samples-per-shard 256]
    python examples/make_digits_shards.py --out data/mine --from-npz arrays.npz [--overwrite]
"""
import argparse

import numpy as np

from distrain.data import ShardDataset, write_shards
from distrain.errors import ShardError


def digits_fields():
    """The digits as {"image": float32 (1797, 1, 8, 8) in [0, 1], "label": int64 (1797,)}."""
    try:
        from sklearn.datasets import load_digits  # optional: only this conversion needs scikit-learn
    except ImportError:
        raise SystemExit("the digits come from scikit-learn: pip install scikit-learn (or use --from-npz)") from None

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # pixel values are 0..16
    return {"image": images, "label": digits.target.astype(np.int64)}


def npz_fields(path):
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write scikit-learn's digits (or an .npz) as distrain shards.")
    parser.add_argument("--out", required=True, help="the dataset directory to create")
    parser.add_argument("--samples-per-shard", type=int, default=256)
    parser.add_argument("--from-npz", metavar="FILE", help="convert the arrays in this .npz instead of the digits")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    args = parser.parse_args(argv)

    fields = npz_fields(args.from_npz) if args.from_npz else digits_fields()
    try:
        path = write_shards(args.out, fields, samples_per_shard=args.samples_per_shard, overwrite=args.overwrite)
    except ShardError as error:  # e.g. a dataset already there: say so without a traceback
        parser.exit(1, f"error: {error}\n")
    print(ShardDataset(path, verify="full"))
    return path


if __name__ == "__main__":
    main()
