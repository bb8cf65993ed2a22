"""Save and load checkpoints: trees of tensors, arrays and plain Python values, without pickle.

`distrain.save(obj, f)` writes nested dicts, lists and tuples of tensors, NumPy (or CuPy)
arrays and plain values to a path or a binary file: state_dicts of models, optimizers and
schedulers, the epoch, the RNG state. `distrain.load(f)` gives the same tree back: tuples stay
tuples, int keys stay ints, tensors keep dtype, shape, requires_grad and device (a Parameter
loads as a plain Tensor, as in a state_dict; `.grad` and the graph are not saved).

Example::

    >>> import distrain
    >>> state = {"epoch": 3, "weight": distrain.randn(2, 3, requires_grad=True),
    ...          "milestones": (30, 60), "rng": distrain.get_rng_state()}
    >>> distrain.save(state, "ckpt.dt")
    >>> restored = distrain.load("ckpt.dt", map_location="cpu")
    >>> restored["epoch"], restored["milestones"], restored["weight"].requires_grad
    (3, (30, 60), True)

No pickle: loading a pickle runs whatever code the file names. A distrain checkpoint is data
only (msgpack for the structure, raw bytes for the arrays), so loading one never runs code.

Nothing is lost: saving to a path writes a temporary file beside the target
(`.NAME.HOST.PID.RANDOM.tmp`), fsyncs it, renames it onto the target and fsyncs the
directory, so a process killed at any instant leaves the previous checkpoint whole. A killed
save leaves its temporary file; the next save to the same path removes it once its writer is
dead (NOTE [ Temporary names and dead writers ] in durable.py). A save the operating system
refuses (disk full, no permission) raises `CheckpointWriteError` naming the file, removes its
temporary file and leaves the previous checkpoint as it was.

Loading never trusts the file: every meaningful byte is covered by a CRC-32, and the header
is checked field by field (types, dtypes, shapes against sizes, ranges inside the data,
nesting at most MAX_NESTING deep) before anything is allocated or viewed, so a truncated,
damaged or forged file raises `CheckpointError` naming the file and what is wrong.

Here: `writer.py` (save), `reader.py` (load, the frame), `header.py` (the checks of a header
that may be forged), `format.py` (the constants both sides share). `distrain.load` also reads
PyTorch's .pt/.pth files and safetensors files, and `distrain.save` writes safetensors to a
path ending in ".safetensors": `formats.py` says which file goes where.

File format, version 1 (integers little-endian)
-----------------------------------------------
::

    offset 0     preamble, 32 bytes: magic b"\\x89DTCKPT\\n" (8), format version (u32),
                 header length H (u64), file length N (u64), CRC-32 of those 28 bytes (u32)
    offset 32    header: H bytes of msgpack, described below
    offset D     data: D is 32 + H rounded up to a multiple of 64; each array's C-order bytes
                 start at D + its offset, a multiple of 64; padding between is zeros
    offset N-32  footer, 32 bytes: H (u64), N (u64), CRC-32 of preamble + header (u32),
                 CRC-32 of the footer's first 20 bytes (u32), end magic b"DTCKEND\\n" (8)

The preamble's layout is the same in every version. The header is a msgpack map
{"arrays": [entry, ...], "root": tree}. An entry describes one array: {"name": key path where
it was first met, "kind": "tensor" | "ndarray", "dtype": NumPy dtype string such as "<f4",
"shape": [...], "offset": from D, "nbytes", "crc32", "device": "cpu" | "cuda:N",
"requires_grad": bool}; entries lie in file order, without overlapping. The tree is the saved
object, with msgpack's types for None, bool, int, float, str, bytes, list and dict, and these
msgpack extension types:

    1  tuple           the msgpack-packed list of its items
    2  array           the msgpack-packed index of its entry (an object met twice is stored once
                       and loads as one object, so tied weights stay tied)
    3  big integer     two's-complement little-endian bytes (beyond 64 bits, e.g. PCG64 state)
    4  NumPy scalar    the msgpack-packed [dtype string, raw bytes]

Dict keys are str or int. Containers nest at most MAX_NESTING (100) deep.
"""

from .format import ALIGNMENT, END_MAGIC, FORMAT_VERSION, MAGIC, MAX_NESTING
from .formats import load, save
from .safetensors_format import load_safetensors, save_safetensors

__all__ = ["ALIGNMENT", "END_MAGIC", "FORMAT_VERSION", "MAGIC", "MAX_NESTING", "load", "load_safetensors", "save",
           "save_safetensors"]
