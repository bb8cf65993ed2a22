"""The exceptions distrain raises.

Every error distrain raises on bad input is a `DistrainError`, so a training script can
catch "anything distrain refused" in one clause. Each kind also derives from the builtin
exception a Python (or PyTorch) user would expect, so `except ValueError` and
`except RuntimeError` keep working for code ported from PyTorch.

Messages name what is wrong (the op, the shapes, the devices, the dtype, the file, the
rank) and what to do about it.
"""


class DistrainError(Exception):
    """Base class of every error distrain raises on purpose."""


class ShapeError(DistrainError, ValueError):
    """Shapes that do not fit together: matmul, broadcasting, cat, reshape, view."""


class DeviceError(DistrainError, RuntimeError):
    """Tensors on different devices, or a device that is not available here."""


class DTypeError(DistrainError, TypeError):
    """A dtype that cannot be used for the requested operation (e.g. gradients of ints, mixed dtypes
    into a matrix product), or a value of a type an op cannot take (a str where a size belongs)."""


class ArgumentError(DistrainError, ValueError):
    """An argument value an op does not accept: a dropout probability outside [0, 1], a kernel size
    of 0, randint's low >= high, an unknown reduction."""


class IndexingError(DistrainError, IndexError):
    """An index out of range for the tensor's shape, or of a kind a tensor cannot be indexed with."""


class OutOfMemoryError(DistrainError, MemoryError):
    """A tensor larger than the memory this machine (or GPU) can give: the message names its shape and size."""


class AutogradError(DistrainError, RuntimeError):
    """Misuse of the autograd graph: freed graphs, modified saved tensors, bad gradients."""


class CheckpointError(DistrainError, RuntimeError):
    """A checkpoint file that cannot be loaded: empty, truncated, damaged, or another format."""


class CheckpointWriteError(CheckpointError, OSError):
    """The operating system refused a checkpoint write (disk full, no permission, I/O error).

    Also an OSError with the original `errno`, so `except OSError` around a save keeps working."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class StateDictError(DistrainError, RuntimeError):
    """A state_dict that does not fit the model or optimizer: missing, unexpected or mismatched entries."""


class OptimizerError(DistrainError, ValueError):
    """Bad optimizer or scheduler input: a hyperparameter out of range, a mismatched state dict, ..."""


class OptimizerTypeError(DistrainError, TypeError):
    """Something that is not a floating-point leaf Tensor was given to an optimizer as a parameter."""


class ShardError(DistrainError, RuntimeError):
    """A shard dataset that cannot be written or read: no samples, an existing dataset in the way,
    a missing, truncated or damaged shard file, or an index.json that disagrees with its files."""


class ModelError(DistrainError, ValueError):
    """distrain.models refused a request: an unknown model name, or an argument the model does not take or accept."""


class MetricsError(DistrainError, ValueError):
    """A metrics.jsonl that cannot be read (a damaged line before the last one, no such file) or
    a metric value that cannot be written as JSON (not a scalar, a reserved name)."""
