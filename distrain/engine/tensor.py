"""`Tensor`: an n-dimensional array on a device, plus what autograd needs to know about it.

A tensor wraps one array (`numpy.ndarray` on "cpu", `cupy.ndarray` on "cuda:N") and adds
the autograd fields: `requires_grad`, `grad`, `grad_fn` (the node that produced it) and a
version counter shared with its views (bumped by every in-place op, see NOTE [ Saved
tensors and the version counter ] in autograd/graph.py).

The math methods (`x.exp()`, `x + y`, `x.sum(dim)`, ...) are defined next to their
gradients in `engine/ops/` and attached to this class in one place, `ops/__init__.py`.
"""
from __future__ import annotations

import numpy

from ..errors import AutogradError, DeviceError, DTypeError
from . import backend, dtypes
from .autograd.api import backward as _autograd_backward
from .autograd.graph import RemovableHandle


class Size(tuple):
    """A tensor's shape: a tuple that also answers `numel()`, like `torch.Size`."""

    def numel(self) -> int:
        count = 1
        for extent in self:
            count *= extent
        return count

    def __repr__(self):
        return f"distrain.Size({list(self)})"


def _make(data, requires_grad=False):
    """Wrap an array as a tensor without copying or checking (the ops' fast constructor)."""
    tensor = _new_tensor(Tensor)
    tensor._data = data
    tensor._requires_grad = requires_grad
    tensor._grad = None
    tensor.grad_fn = None
    tensor._output_nr = 0
    tensor._version_counter = [0]
    tensor._base = None
    tensor._hooks = None
    tensor._post_accumulate_hooks = None
    return tensor


_new_tensor = object.__new__


class Tensor:
    """An n-dimensional array on a device that can record the ops applied to it.

    Make tensors with the factories (`distrain.tensor`, `zeros`, `randn`, ...);
    `Tensor(data)` also works and, like `torch.Tensor`, gives float32.

    Example::

        >>> x = distrain.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        tensor([[2., 4.],
                [6., 8.]])
    """

    __slots__ = ("_data", "_requires_grad", "_grad", "grad_fn", "_output_nr", "_version_counter",
                 "_base", "_hooks", "_post_accumulate_hooks", "__weakref__")

    # Flat-buffer membership (engine/flat.py); only Parameters (which have a __dict__) set them.
    _flat = None
    _flat_grad = None

    __hash__ = object.__hash__  # == is elementwise; identity is the hash, as in PyTorch
    __array_ufunc__ = None  # numpy scalars and arrays defer to Tensor's reflected operators (np.float64(2) * t)

    def __new__(cls, data=(), *, device=None):
        from .factories import tensor  # the factories build on this class

        return tensor(data, dtype=dtypes.get_default_dtype(), device=device)

    # -- what it is ----------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self):
        return dtypes._PUBLIC[self._data.dtype]  # distrain.float32 (a NumPy dtype underneath: dtypes.py)

    @property
    def device(self) -> backend.Device:
        return backend.device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is not numpy.ndarray and backend.device_of(self._data) is not backend.CPU

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[dim]

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    def element_size(self) -> int:
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # -- autograd fields -----------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        """Mark a leaf as needing (or no longer needing) a gradient; returns self."""
        requires_grad = bool(requires_grad)
        if requires_grad and self._data.dtype.kind != "f":
            raise DTypeError(
                f"only floating-point tensors can require gradients; this tensor has dtype {self._data.dtype}. "
                "Convert it first, e.g. x.float()."
            )
        if self.grad_fn is not None and not requires_grad:
            raise AutogradError(
                f"requires_grad can only be switched off on leaf tensors; this one was produced by "
                f"'{self.grad_fn.name()}'. Use .detach() to get a tensor outside the graph."
            )
        self._requires_grad = requires_grad
        return self

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise DTypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            if value._data.shape != self._data.shape:
                raise AutogradError(f"assigned grad has shape {tuple(value.shape)} but the tensor has shape {tuple(self.shape)}")
            if type(value._data) is not type(self._data):
                raise DeviceError(f"assigned grad is on {value.device} but the tensor is on {self.device}")
            if value._data.dtype != self._data.dtype:
                raise DTypeError(f"assigned grad has dtype {value.dtype} but the tensor has dtype {self.dtype}; "
                                 f"convert it first, e.g. grad.to({self.dtype})")
        self._grad = value

    def _reset_grad(self, set_to_none):
        """What zero_grad does to one tensor (Module and Optimizer alike): `.grad = None`, or
        zeros written into the same gradient tensor (so a flat-buffer view stays that view)."""
        grad = self._grad
        if grad is None:
            return
        if set_to_none:
            self._grad = None
            return
        if grad.grad_fn is not None:
            grad.detach_()
        grad._data.fill(0)
        grad._version_counter[0] += 1

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        return self._version_counter[0]

    @property
    def data(self):
        """The same storage outside the graph; in-place changes through it are not tracked."""
        return _make(self._data)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise DTypeError(f"tensor.data must be assigned a Tensor, got {type(value).__name__}")
        self._data = value._data

    def detach(self):
        """A tensor sharing storage (and version counter) with self, outside the graph."""
        return self._detached_alias()

    def detach_(self):
        if self._base is not None and self._base._requires_grad:
            raise AutogradError("cannot detach_() a view of a tensor that requires grad; use .detach()")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def _detached_alias(self):
        alias = _make(self._data)
        alias._version_counter = self._version_counter
        alias._base = self
        return alias

    def _saved_alias(self):
        """What a node keeps of an output it saves: the array and version counter, nothing that
        leads back to the output (whose grad_fn is the node: that would be a reference cycle,
        freed only by the garbage collector, keeping every activation alive until then)."""
        alias = _make(self._data)
        alias._version_counter = self._version_counter
        return alias

    def _detached_copy(self):
        return _make(self._data.copy())

    def _attached_to(self, node, output_nr):
        """This saved output re-attached to the node that made it (create_graph backward)."""
        alias = _make(self._data, True)
        alias._version_counter = self._version_counter
        alias.grad_fn = node
        alias._output_nr = output_nr
        return alias

    def _ones_like_detached(self):
        return _make(backend.array_module(self._data).ones_like(self._data))

    def retain_grad(self):
        """Keep `.grad` on a non-leaf tensor after backward (leaves always keep it)."""
        if self.grad_fn is None:
            return
        target = self

        def keep(grad):
            target._grad = grad.detach() if target._grad is None else target._grad + grad.detach()

        self.grad_fn.register_output_hook(self._output_nr, keep)

    def register_hook(self, hook):
        """Call `hook(grad)` when this tensor's gradient is computed; a returned tensor replaces it.

        Returns a handle whose `remove()` unregisters the hook.
        """
        if not self._requires_grad:
            raise AutogradError("cannot register a hook on a tensor that does not require grad")
        if self.grad_fn is not None:
            return self.grad_fn.register_output_hook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call `hook(tensor)` once per backward, after this leaf's `.grad` is complete."""
        if self.grad_fn is not None:
            raise AutogradError("post-accumulate-grad hooks can only be registered on leaf tensors")
        if not self._requires_grad:
            raise AutogradError("cannot register a hook on a tensor that does not require grad")
        if self._post_accumulate_hooks is None:
            self._post_accumulate_hooks = []
        self._post_accumulate_hooks.append(hook)
        return RemovableHandle(self._post_accumulate_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (see `distrain.autograd.backward`)."""
        _autograd_backward(self, gradient, retain_graph, create_graph, inputs)

    # -- sharing between processes (engine/shared_memory.py) ----------------------------
    def share_memory_(self):
        """Move this cpu tensor's values into shared memory, in place; returns self.

        Sent to another process (Process arguments, Queue), the tensor then arrives as a handle
        to the same memory, so writes on either side are seen by both: Hogwild-style training.
        A Parameter moves with its whole flat buffer. See NOTE [ Shared tensors between processes ].
        """
        from .shared_memory import share_tensor

        return share_tensor(self)

    def is_shared(self) -> bool:
        """True when this tensor's values are in shared memory (`share_memory_()`, or received so)."""
        from .shared_memory import is_shared

        return is_shared(self._data)

    # -- leaving distrain ----------------------------------------------------------------
    def _refuse_if_traced(self, what):
        """While distrain.jit captures, Python may not read a tensor's values: say where and why (traced_array.py)."""
        escape = getattr(self._data, "escape", None)
        if escape is not None:
            raise escape(what)

    def item(self):
        self._refuse_if_traced("read with .item()")
        if self._data.size != 1:
            raise AutogradError(f"item() needs a tensor with one element; this one has shape {tuple(self.shape)}")
        return self._data.item()

    def tolist(self):
        self._refuse_if_traced("read with .tolist()")
        return self._data.tolist()

    def numpy(self, force=False):
        """The NumPy array itself (sharing memory) for a cpu tensor that needs no grad."""
        if type(self._data) is not numpy.ndarray:
            if hasattr(self._data, "escape"):  # a TracedArray: distrain.jit is capturing
                raise self._data.escape("read with .numpy()")
            if not force:
                raise DeviceError(f"numpy() needs a cpu tensor; this one is on {self.device}. Use .cpu().numpy().")
            return self._data.get()
        if self._requires_grad and not force:
            raise AutogradError("cannot call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        if hasattr(self._data, "escape"):  # a TracedArray: distrain.jit is capturing
            raise self._data.escape("converted to a NumPy array (numpy.asarray(tensor))")
        array = self._data if type(self._data) is numpy.ndarray else self._data.get()
        if dtype is not None:
            return array.astype(dtype, copy=bool(copy))
        return array.copy() if copy else array  # NumPy 2: copy=True must never share memory

    def __bool__(self):
        self._refuse_if_traced("used as a Python truth value (an `if`, `while`, `and`/`or` or `assert` on a tensor)")
        if self._data.size != 1:
            raise AutogradError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous; use .any() or .all()"
            )
        return bool(self._data.item())

    def __float__(self):
        self._refuse_if_traced("converted to a Python float")
        return float(self.item())

    def __int__(self):
        self._refuse_if_traced("converted to a Python int")
        return int(self.item())

    def __index__(self):
        self._refuse_if_traced("used as a Python integer (an index, a size or a range bound)")
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.item())

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __repr__(self):
        from .tensor_repr import tensor_repr

        self._refuse_if_traced("printed (repr or str of a tensor)")

        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, format_spec):
        """`f"{loss:.4f}"` formats a 0-d tensor's number, as PyTorch does; any other tensor accepts
        only the empty spec (`f"{x}"` is `str(x)`) and raises TypeError for another, like PyTorch."""
        if self._data.ndim == 0 and type(self) is Tensor:  # PyTorch's rule: not for subclasses (Parameter)
            self._refuse_if_traced("formatted as text (print, f-string or str.format)")
            return self._data.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def __reduce__(self):
        """Pickle as (cpu values, dtype, device, requires_grad); the graph is not pickled."""
        return (_rebuild, (numpy.asarray(self.__array__()), str(self.device), self._requires_grad))

    def __deepcopy__(self, memo):
        copy = _make(self._data.copy(), self._requires_grad)
        if self._grad is not None:
            copy._grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = copy
        return copy


def _rebuild(array, device, requires_grad):
    return _make(backend.move_array(array, backend.Device(device)), requires_grad)
