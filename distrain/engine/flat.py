"""Flat parameter and gradient buffers: many parameters living in one contiguous array.

Why: an optimizer step over a model of 50 parameter tensors is 50 x (a dozen array ops)
of Python and kernel launches when done per parameter, but only a dozen array ops over
one buffer when the parameters are packed; an allreduce of gradients wants contiguous
slices, not 50 small messages. So distrain can pack a model's parameters (per device
and dtype) into ONE array, each Parameter's array being a view of its slice, and give
the gradients a twin buffer of the same layout.

NOTE [ Flat gradients ]
A packed parameter's `.grad` is None until backward produces a gradient for it (as in
PyTorch, so `zero_grad(set_to_none=True)` keeps its meaning); the engine then copies
the first gradient into the parameter's slice of `FlatParameters.grad` and binds `.grad`
to a Tensor viewing that slice, and later gradients accumulate into it in place
(autograd/engine.py, `finish_leaf`). Slices of parameters whose `.grad` is None hold
stale values: read a slice only for parameters whose `.grad` is their flat view
(`FlatParameters.grad_is_flat`). Optimizers (engine/optim/) and the data-parallel
reducer use `segment(param)` -> (offset, numel) to address slices.

The price of fixed gradient memory (PyTorch's DDP pays it too with gradient_as_bucket_view):
a `.grad` tensor kept across `zero_grad()` is the same slice the next backward writes,
so it shows the new gradient. `.grad.clone()` what you want to keep.

The ops that make the big gradients (linear, conv2d) go one step further: for the first
contribution to a packed parameter's gradient they compute it straight into the flat
slice (`claim_flat_gradient`), so no gradient is copied at all.

Example::

    >>> model = distrain.nn.Linear(4, 3)
    >>> (flat,) = distrain.nn.utils.pack_parameters(model.parameters())
    >>> flat.segment(model.bias)
    (12, 3)
"""
from __future__ import annotations

from ..errors import DistrainError
from .backend import array_module
from .autograd.engine import accumulation
from .tensor import _make


class FlatParameters:
    """One device's and dtype's parameters packed into `data`, their gradients into `grad`.

    Attributes:
        data: the 1-D parameter buffer; each parameter's array is a view of a slice.
        grad: the 1-D gradient buffer with the same layout.
        parameters: the packed parameters, in buffer order.
    """

    def __init__(self, parameters, data=None):
        """Pack `parameters` into a new buffer; or, given `data` (a 1-D array of the packed size
        and dtype, e.g. shared memory another process filled), make them views of it, keeping
        its contents (engine/shared_memory.py rebuilds a received buffer this way)."""
        parameters = list(parameters)
        if not parameters:
            raise DistrainError("FlatParameters needs at least one parameter")
        first = parameters[0]._data
        xp = array_module(first)
        for parameter in parameters:
            array = parameter._data
            if type(array) is not type(first) or array.dtype != first.dtype or getattr(array, "device", None) != \
                    getattr(first, "device", None):
                raise DistrainError(
                    f"FlatParameters packs one device and dtype; got {parameter.device}/{parameter.dtype} beside "
                    f"{parameters[0].device}/{parameters[0].dtype}. Use pack_parameters(), which groups them."
                )
        self.array_module = xp
        self.parameters = parameters
        self.offsets = []
        total = 0
        for parameter in parameters:
            self.offsets.append(total)
            total += parameter._data.size
        if data is not None and (data.shape != (total,) or data.dtype != first.dtype or type(data) is not type(first)):
            raise DistrainError(f"FlatParameters(data=...) needs a 1-D {first.dtype} array of {total} elements "
                                f"for these parameters, got {type(data).__name__} {data.dtype} of shape {data.shape}")
        with _device_of(first):
            self.data = xp.empty(total, dtype=first.dtype) if data is None else data
            self.grad = xp.zeros(total, dtype=first.dtype)
        self._position = {}
        for index, (parameter, offset) in enumerate(zip(parameters, self.offsets)):
            old_flat = parameter.__dict__.get("_flat")
            if old_flat is not None:
                old_flat.release(parameter)
            size = parameter._data.size
            view = self.data[offset:offset + size].reshape(parameter._data.shape)
            if data is None:
                view[...] = parameter._data
            grad_view = self.grad[offset:offset + size].reshape(parameter._data.shape)
            if parameter._grad is not None:
                grad_view[...] = parameter._grad._data
            parameter._data = view
            parameter._flat = self
            parameter._flat_grad = _make(grad_view)
            if parameter._grad is not None:
                parameter._grad = parameter._flat_grad
            self._position[id(parameter)] = index

    # -- addressing -------------------------------------------------------------------------
    def __len__(self):
        return len(self.parameters)

    def numel(self) -> int:
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return self.parameters[0].device

    def __contains__(self, parameter):
        return parameter.__dict__.get("_flat") is self and id(parameter) in self._position

    def segment(self, parameter):
        """(offset, numel) of `parameter`'s slice in `data` and `grad`."""
        if parameter not in self:
            raise DistrainError(f"parameter of shape {tuple(parameter.shape)} is not packed in this buffer")
        index = self._position[id(parameter)]
        return self.offsets[index], self.parameters[index]._data.size

    def segments(self):
        """[(parameter, offset, numel)] for every parameter still packed here, in buffer order."""
        return [(p, offset, p._data.size) for p, offset in zip(self.parameters, self.offsets) if p in self]

    @staticmethod
    def grad_is_flat(parameter) -> bool:
        """True when `parameter.grad` is its view of a flat gradient buffer (NOTE [ Flat gradients ])."""
        grad = parameter._grad
        return grad is not None and grad is parameter.__dict__.get("_flat_grad")

    def move_data(self, data):
        """Move the parameter buffer into `data` (a 1-D array of the same size and dtype, e.g. in
        shared memory); every packed parameter becomes its view of the new buffer, so modules and
        optimizers holding the parameters (and their flat state) keep working."""
        data[...] = self.data
        self.data = data
        for parameter, offset, size in self.segments():
            parameter._data = data[offset:offset + size].reshape(parameter._data.shape)

    # -- leaving -----------------------------------------------------------------------------
    def release(self, parameter):
        """Give `parameter` its own arrays again (it is moved, re-packed or reassigned)."""
        if parameter not in self:
            return
        parameter._data = parameter._data.copy()
        if parameter._grad is not None and parameter._grad is parameter._flat_grad:
            parameter._grad = _make(parameter._grad._data.copy())
        del self._position[id(parameter)]
        parameter._flat = None
        parameter._flat_grad = None

    def unpack(self):
        """Release every parameter; the buffer is empty afterwards."""
        for parameter in list(self.parameters):
            self.release(parameter)

    def __repr__(self):
        return (f"FlatParameters({len(self._position)} parameters, {self.numel()} elements, {self.dtype}, "
                f"{self.device})")


def claim_flat_gradient(tensor):
    """The flat gradient slot an op may write `tensor`'s gradient into directly, else None.

    Only a packed parameter qualifies, only during a backward that accumulates into
    `.grad` (not autograd.grad, not create_graph), only while its `.grad` is None (the
    slot holds nothing that must be kept), without hooks (which must see the gradient
    before it lands), and only once per backward: a second use of the same parameter
    gets an ordinary array, and the engine adds the two. The claim belongs to the running
    backward (a finished one's claim is void, so an exception cannot leave it stuck), and
    a nested backward finishing first keeps its gradient out of the claimed slot.
    """
    flat_grad = tensor._flat_grad
    run = accumulation.run
    if flat_grad is None or tensor._grad is not None or tensor._hooks or run is None:
        return None
    claim = tensor.__dict__.get("_flat_grad_claim")
    if claim is not None and not claim.finished:  # taken in this backward already, or by one still running
        return None
    tensor._flat_grad_claim = run
    return flat_grad


def pack_parameters(parameters):
    """Pack `parameters` (an iterable of Parameters) into one FlatParameters per (device, dtype).

    Parameters keep their identity (modules and optimizers holding them keep working);
    only their arrays move into the buffers. Pack before creating an optimizer, and
    again after moving a model to another device or dtype. Returns the buffers in the
    order their first parameter appears.
    """
    from .nn.parameter import Parameter  # nn imports the ops, which import this module

    groups = {}
    seen = set()
    for parameter in parameters:
        if id(parameter) in seen:
            continue
        if not isinstance(parameter, Parameter):
            raise DistrainError(
                f"only nn.Parameter objects can be packed, got a {type(parameter).__name__}; "
                "wrap it with distrain.nn.Parameter(tensor)"
            )
        seen.add(id(parameter))
        key = (str(parameter.device), parameter._data.dtype.str)
        groups.setdefault(key, []).append(parameter)
    return [FlatParameters(group) for group in groups.values()]


class _device_of:
    """Allocate on the device of `array` (a no-op context for NumPy)."""

    def __init__(self, array):
        self.device = getattr(array, "device", None)

    def __enter__(self):
        if self.device is not None and hasattr(self.device, "__enter__"):
            self.device.__enter__()

    def __exit__(self, *exc_info):
        if self.device is not None and hasattr(self.device, "__exit__"):
            self.device.__exit__(*exc_info)
