"""What an optimizer's update rule runs on: chunks of parameters, as raw xp arrays.

NOTE [ Optimizer chunks ]
Every optimizer class implements one method, `_update(chunk, group)`: the arithmetic of
its rule on raw arrays (numpy or cupy). The base class (optimizer.py) decides what a
chunk is, and that is the only difference between the "packed" and the "per-parameter"
path:

- a parameter on its own (not packed, or its `.grad` or its state lives elsewhere) is one
  chunk: its array, its `.grad` array, and the arrays of its state tensors;
- parameters packed in one `FlatParameters` buffer (engine/flat.py) that are adjacent in
  it, in the same param group, whose `.grad` is their flat view, whose state lives in this
  optimizer's flat state arrays for that buffer, and that share the step count and the
  state names, are ONE chunk: the slices `flat.data[a:b]`, `flat.grad[a:b]` and
  `flat_state[name][a:b]`. A model packed in one buffer is then updated by one call.

On NumPy a chunk whose arrays are contiguous is cut into cache-sized blocks (BLOCK_BYTES
per array) before `_update` sees it, so the dozen passes of an update rule run over data
in cache rather than main memory; on CuPy a chunk is one block (one kernel per pass).
Block size, measured on a 2-core AMD EPYC (one step, SGD momentum / Adam, 1 MiB blocks
against 128 KiB): 101k parameters 66 / 228 us against 103 / 317; 1.9M parameters 0.97 /
3.1 ms against 1.18 / 3.5 (one whole-buffer pass: 2.6 / 8.1); 25M parameters 13.4 / 34.5
ms against 14.6 / 38.3. Below 1 MiB the Python around each block's NumPy calls costs
more than the cache misses it saves. On the numba path Adam and SGD run one compiled
pass per block instead (kernels/adam.py, kernels/sgd.py); blocks cost them under 0.1 ms
per 1.86M parameters, so they keep the blocks (and the threads that share them out).
Every update rule is elementwise, so the numbers are identical however the parameters
are chunked or blocked (tests/engine/optim compares the two paths bit for bit).
"""
from __future__ import annotations

import numpy

from ..backend import array_module

BLOCK_BYTES = 1024 * 1024  # per array (see the module docstring for the measurements)


class Chunk:
    """The arrays one call of `_update` works on, updated in place.

    Attributes:
        xp: numpy or cupy, the module of the arrays.
        param: the parameter values (written in place).
        grad: the gradient; read only, never write into it (it is the user's `.grad`).
        state: {state name: array} of the same shape as `param`, written in place.
        step: the step count of these parameters including this step (1 on the first
            update), or None for optimizers that keep no count (SGD).
        fresh: True when the state was created for this step (SGD's momentum buffer
            starts as a copy of the gradient, not as zeros).
        scalars: the values of the per-parameter scalar state (beyond the step) that
            `Optimizer._advance_scalar_state` returned for these parameters this step,
            e.g. NAdam's (mu_product,); () for the optimizers that keep none.
    """

    __slots__ = ("_scratch", "fresh", "grad", "param", "scalars", "state", "step", "xp")

    def __init__(self, xp, param, grad, state, step, fresh, scratch, scalars=()):
        self.xp = xp
        self.param = param
        self.grad = grad
        self.state = state
        self.step = step
        self.fresh = fresh
        self._scratch = scratch
        self.scalars = scalars

    def __len__(self):
        return self.param.size

    def scratch(self, index):
        """Scratch array number `index` (0 or 1), shaped like `param`, contents undefined.

        Scratch 0 is where `grad_with` puts a modified gradient: an update rule may
        overwrite it once it has read that gradient for the last time.
        """
        return self._scratch.get(index, self.param)

    def grad_with(self, weight_decay=0.0, maximize=False):
        """The gradient the rule descends: `-grad` if maximize, plus `weight_decay * param`.

        Returns `grad` itself when neither applies (so, read only), else scratch 0.
        """
        weight_decay = float(weight_decay)
        if weight_decay == 0.0 and not maximize:
            return self.grad
        xp, modified = self.xp, self.scratch(0)
        if weight_decay == 0.0:
            xp.negative(self.grad, out=modified)
        else:
            xp.multiply(self.param, weight_decay, out=modified)
            (xp.subtract if maximize else xp.add)(modified, self.grad, out=modified)
        return modified

    def with_scratch(self, scratch):
        """The same arrays with another scratch pool (each thread of a parallel step has its own)."""
        return Chunk(self.xp, self.param, self.grad, self.state, self.step, self.fresh, scratch, self.scalars)

    def blocks(self, block_bytes=None):
        """This chunk cut into pieces of `block_bytes` per array (NumPy, contiguous arrays), else itself."""
        block = (block_bytes or BLOCK_BYTES) // max(self.param.itemsize, 1)
        arrays = (self.param, self.grad, *self.state.values())
        if self.xp is not numpy or self.param.size <= block + block // 2 or \
                not all(array.flags.c_contiguous for array in arrays):
            return (self,)
        param, grad = self.param.reshape(-1), self.grad.reshape(-1)
        state = {name: array.reshape(-1) for name, array in self.state.items()}
        return [Chunk(self.xp, param[start:start + block], grad[start:start + block],
                      {name: array[start:start + block] for name, array in state.items()},
                      self.step, self.fresh, self._scratch, self.scalars)
                for start in range(0, param.size, block)]


class ScratchPool:
    """Reusable scratch arrays, one pair per (array type, device, dtype), grown on demand.

    Update rules write their intermediates here with `out=` instead of allocating a
    temporary per operation; with blocking (NumPy) the arrays stay one block long.
    """

    def __init__(self):
        self._arrays = {}

    def get(self, index, like):
        key = (index, type(like), getattr(getattr(like, "device", None), "id", None), like.dtype.str)
        array = self._arrays.get(key)
        if array is None or array.size < like.size:
            array = self._arrays[key] = array_module(like).empty_like(like, shape=(like.size,))
        return array[:like.size].reshape(like.shape)

    def clear(self):
        self._arrays.clear()


def coalesce(runs, flat_state, scratch):
    """Chunks for packed parameters: adjacent slices with the same step, freshness, state names and scalars.

    Args:
        runs: [(id(flat), offset, numel, flat, step, fresh, state keys, scalars)] for parameters
            whose state lives in `flat_state[flat]` and whose `.grad` is their flat view.
        flat_state: {FlatParameters: {state name: 1-D array as long as the buffer}}.
    """
    chunks = []
    runs.sort()  # by buffer, then offset (offsets within a buffer are distinct)
    start = 0
    while start < len(runs):
        _, offset, numel, flat = runs[start][:4]
        same = runs[start][4:]  # step, fresh, state keys, scalars
        end_offset, stop = offset + numel, start + 1
        while stop < len(runs):
            other = runs[stop]
            if other[3] is not flat or other[1] != end_offset or other[4:] != same:
                break
            end_offset += other[2]
            stop += 1
        step, fresh, names, scalars = same
        arrays = flat_state.get(flat, {})
        chunks.append(Chunk(flat.array_module, flat.data[offset:end_offset], flat.grad[offset:end_offset],
                            {name: arrays[name][offset:end_offset] for name in names if name in arrays}, step, fresh,
                            scratch, scalars))
        start = stop
    return chunks
