"""distrain.nn.utils.rnn: padded and packed batches of variable-length sequences, PyTorch's functions.

A PackedSequence holds the steps of a batch of sequences sorted by length, time-major:
`data` stacks the `batch_sizes[t]` sequences still running at step t. The recurrent
layers take one and advance only those rows each step (ops/recurrent.py), so padding costs
no arithmetic and the final states are each sequence's own last step.

Packing and unpacking are one `index_select` each (differentiable): the positions of the
valid (step, sequence) cells of the time-major padded grid, in packed order.

Example::

    >>> seqs = [distrain.ones(3, 2), distrain.ones(1, 2)]
    >>> packed = distrain.nn.utils.rnn.pack_sequence(seqs)
    >>> packed.batch_sizes
    tensor([2, 1, 1])
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy

from ...errors import ArgumentError, ShapeError
from .. import factories
from ..ops.indexing import index_select
from ..ops.shape import cat, stack
from ..tensor import Tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pack_sequence", "pad_packed_sequence", "pad_sequence"]


class PackedSequence(NamedTuple):
    """data (sum(lengths), *), batch_sizes (steps,) int64 on the CPU, and the sort permutation and its inverse."""
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args, **kwargs):
        return self._replace(data=self.data.to(*args, **kwargs))


def _valid_cells(batch_sizes):
    """Flat indices (into a time-major (steps, batch) grid) of the cells a packed batch holds, in packed order."""
    sizes = numpy.asarray(batch_sizes, dtype=numpy.int64)
    batch = int(sizes[0]) if len(sizes) else 0
    mask = numpy.arange(batch)[None, :] < sizes[:, None]
    return numpy.flatnonzero(mask.ravel()), batch


def packed_from_padded(padded, batch_sizes):
    """The packed data of a time-major padded tensor (steps, batch, *) whose columns are sorted by length."""
    cells, _ = _valid_cells(batch_sizes)
    steps, batch = padded.shape[0], padded.shape[1]
    return index_select(padded.reshape(steps * batch, *padded.shape[2:]), 0, cells)


def padded_from_packed(data, batch_sizes, padding_value=0.0, total_length=None):
    """The time-major padded tensor (steps, batch, *) of packed `data`; empty cells hold padding_value."""
    cells, batch = _valid_cells(batch_sizes)
    steps = len(batch_sizes) if total_length is None else total_length
    source = numpy.full(steps * batch, data.shape[0], dtype=numpy.int64)  # the padding row, appended last
    source[cells] = numpy.arange(len(cells))
    filler = factories.full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    return index_select(cat([data, filler], 0), 0, source).reshape(steps, batch, *data.shape[1:])


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors of shape (L_i, *) into (max L, B, *) (or (B, max L, *)), padding with padding_value."""
    if padding_side not in ("right", "left"):
        raise ArgumentError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    sequences = list(sequences)
    if not sequences:
        raise ArgumentError("pad_sequence: expected a non-empty list of tensors")
    trailing = tuple(sequences[0].shape[1:])
    for position, sequence in enumerate(sequences):
        if tuple(sequence.shape[1:]) != trailing:
            raise ShapeError(f"pad_sequence: every tensor must have shape (L, *{trailing}); tensor {position} has "
                             f"shape {tuple(sequence.shape)}")
    longest = max(sequence.shape[0] for sequence in sequences)
    padded = []
    for sequence in sequences:
        missing = longest - sequence.shape[0]
        if missing:
            filler = factories.full((missing, *trailing), padding_value, dtype=sequence.dtype, device=sequence.device)
            sequence = cat([sequence, filler] if padding_side == "right" else [filler, sequence], 0)
        padded.append(sequence)
    return stack(padded, 0 if batch_first else 1)


def _lengths_list(lengths):
    values = lengths.tolist() if isinstance(lengths, Tensor) else [int(n) for n in lengths]
    return [int(n) for n in values]


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *)) of sequences with the given lengths."""
    lengths = _lengths_list(lengths)
    batch = input.shape[0 if batch_first else 1]
    if len(lengths) != batch:
        raise ShapeError(f"pack_padded_sequence: got {len(lengths)} lengths for a batch of {batch} "
                         f"(input shape {tuple(input.shape)}, batch_first={batch_first})")
    if min(lengths) <= 0:
        raise ArgumentError(f"pack_padded_sequence: every length must be positive, got {lengths}")
    if batch_first:
        input = input.transpose(0, 1)
    if max(lengths) > input.shape[0]:
        raise ShapeError(f"pack_padded_sequence: a length of {max(lengths)} exceeds the {input.shape[0]} padded steps")
    sorted_indices = unsorted_indices = None
    if enforce_sorted:
        if any(a < b for a, b in itertools.pairwise(lengths)):
            raise ArgumentError(f"pack_padded_sequence: lengths {lengths} are not sorted in decreasing order; sort "
                                "the batch or pass enforce_sorted=False")
    else:
        order = numpy.argsort(-numpy.asarray(lengths), kind="stable")
        sorted_indices = factories.tensor(order, dtype=None).long()
        unsorted_indices = factories.tensor(numpy.argsort(order), dtype=None).long()
        input = index_select(input, 1, order)
        lengths = [lengths[i] for i in order]
    counts = numpy.asarray(lengths)
    batch_sizes = (numpy.arange(lengths[0])[:, None] < counts[None, :]).sum(axis=1)
    data = packed_from_padded(input[:lengths[0]], batch_sizes)
    return PackedSequence(data, factories.tensor(batch_sizes).long(), sorted_indices, unsorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo pack_padded_sequence: (padded (T, B, *) or (B, T, *), lengths int64 tensor) in the original order."""
    sizes = numpy.asarray(sequence.batch_sizes.tolist(), dtype=numpy.int64)
    if total_length is not None and total_length < len(sizes):
        raise ArgumentError(f"pad_packed_sequence: total_length={total_length} is less than the longest sequence's "
                            f"{len(sizes)} steps")
    padded = padded_from_packed(sequence.data, sizes, padding_value, total_length)
    lengths = (numpy.arange(int(sizes[0]))[None, :] < sizes[:, None]).sum(axis=0)
    if sequence.unsorted_indices is not None:
        order = numpy.asarray(sequence.unsorted_indices.tolist(), dtype=numpy.int64)
        padded = index_select(padded, 1, order)
        lengths = lengths[order]
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, factories.tensor(lengths).long()


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of tensors (L_i, *) directly."""
    lengths = [sequence.shape[0] for sequence in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)
