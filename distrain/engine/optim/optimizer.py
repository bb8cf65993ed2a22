"""`Optimizer`: the base class of every optimizer (PyTorch's API, one update path).

What the base class does: param groups, lazy per-parameter state, `zero_grad`, `step`,
`state_dict`/`load_state_dict`. What a subclass does: say which state arrays a
parameter needs (`_init_state`) and implement its rule once, in `_update(chunk, group)`,
on raw xp arrays. `step()` hands `_update` either one parameter or a whole run of
packed parameters at a time (NOTE [ Optimizer chunks ] in chunks.py).

Packing: by default the optimizer packs the `nn.Parameter`s it is given into flat
buffers (engine/flat.py) if they are not packed yet, and keeps their state (Adam's
exp_avg, ...) in flat arrays of the same layout, so one step is a dozen whole-buffer
array operations. As in PyTorch, create the optimizer after the model is on its final
device and dtype (`model.to(...)` first): moving a packed model afterwards unpacks it,
and the moved parameters fall back to the per-parameter path.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy

from ..autograd.grad_mode import enable_grad
from ..backend import array_module, device_of, move_array
from ..flat import pack_parameters
from ..nn.parameter import Parameter
from ..tensor import Tensor, _make
from .. import threads
from ..capture_state import active as _capturing
from .chunks import BLOCK_BYTES, Chunk, ScratchPool, coalesce

THREADED_BLOCK_BYTES = 1024 * 1024  # per array, when blocks go to several threads (see _update_chunks)
MIN_BLOCKS_PER_THREAD = 2  # below that, handing blocks to threads costs more than it saves
from .input_checks import SET_MESSAGE, OptimizerError, OptimizerTypeError, check_hyperparameters, checked_parameters


class Optimizer:
    """Base class of the optimizers: holds param groups and state, and runs the update.

    Args:
        params: an iterable of Tensors, or of dicts (param groups) each with a "params"
            entry and any hyperparameters that differ from `defaults`.
        defaults: the hyperparameters of every group that does not set its own.
        packed: None or True (default): pack the `nn.Parameter`s that are not packed yet
            into flat buffers and update them a buffer slice at a time; plain tensors
            (`distrain.randn(..., requires_grad=True)`) stay as they are. False: pack
            nothing and update every parameter on its own. Move the model to its final
            device and dtype before creating the optimizer (as PyTorch asks).

    Example::

        >>> model = distrain.nn.Linear(4, 2)
        >>> optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
        >>> loss = model(distrain.randn(8, 4)).pow(2).mean()
        >>> optimizer.zero_grad()
        >>> loss.backward()
        >>> optimizer.step()
    """

    counts_steps = True  # keep state["step"] (a Python int) per parameter; SGD does not
    scalar_state = ()  # names of per-parameter Python-number state besides "step" (NAdam: "mu_product")

    def __init__(self, params, defaults, packed=None):
        if isinstance(params, Tensor):
            raise OptimizerTypeError("params must be an iterable of Tensors or dicts, got a single Tensor; "
                                     "pass [tensor] or model.parameters()")
        if isinstance(params, (set, frozenset)):
            raise OptimizerTypeError(SET_MESSAGE)
        self.defaults = dict(defaults)
        self.packed = packed
        self.state = defaultdict(dict)
        self.param_groups = []
        self._flat_state = {}  # FlatParameters -> {state name: 1-D array as long as the buffer}
        self._state_home = {}  # parameter -> (FlatParameters, offset, numel) of its slice of the flat state
        self._scratch = ScratchPool()
        self._thread_scratch = [self._scratch]  # one pool per thread of a parallel step
        self._check_group(self.defaults, "")
        groups = list(params)
        if not groups:
            raise OptimizerError("optimizer got an empty parameter list; pass model.parameters() or a list of tensors")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- what subclasses implement ----------------------------------------------------------
    def _init_state(self, group):
        """{state name: initial fill value, or None for "set by the first update"} for one parameter."""
        return {}

    def _update(self, chunk: Chunk, group):
        """Apply one step of the rule to `chunk` in place (NOTE [ Optimizer chunks ])."""
        raise NotImplementedError

    def _advance_scalar_state(self, state, group, step):
        """Update this parameter's scalar state for `step`; the tuple of values reaches `_update` as `chunk.scalars`.

        Parameters whose values differ are never coalesced into one chunk, so a rule reads
        one number per chunk (NAdam's mu_product, the running product of its momentum schedule).
        """
        return ()

    def _check_group(self, group, where):
        """Raise OptimizerError for hyperparameters out of range; subclasses add their own rules."""
        check_hyperparameters(group, where)

    # -- param groups -----------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a dict {"params": [...], hyperparameter: value, ...}; missing ones take the defaults.

        Example::

            >>> optimizer.add_param_group({"params": head.parameters(), "lr": 1e-2})
        """
        params = checked_parameters(param_group, len(self.param_groups), self.param_groups)
        group = {**self.defaults, **param_group, "params": params}
        self._check_group(group, f" (param group {len(self.param_groups)})")
        if self.packed is not False:
            loose = [p for p in params if isinstance(p, Parameter) and p._flat is None]
            if loose:
                pack_parameters(loose)
        self.param_groups.append(group)

    # -- the training-loop calls ----------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Forget the gradients: `.grad = None` (default), or fill them with zeros in place."""
        for group in self.param_groups:
            for param in group["params"]:
                param._reset_grad(set_to_none)

    def step(self, closure=None):
        """Update every parameter that requires grad and has a `.grad`; others are skipped.

        Args:
            closure: optional function that zeroes the gradients, recomputes the loss,
                calls backward and returns the loss; it runs (with grad enabled) before
                the update, and its loss is returned.
        """
        if _capturing() is not None:
            from ..jit.errors import CaptureError

            raise CaptureError(
                f"distrain.jit: {type(self).__name__}.step() inside a traced function: its learning rate and step "
                "counts are Python numbers a replay would freeze. Capture forward and backward with "
                "distrain.jit.compile_step(model, loss_fn, optimizer), which runs the optimizer after each replay.")
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        served = self._served_model()
        if served is not None:  # asynchronous parameter-server training: the servers run this optimizer
            served.step(self)  # (NOTE [ Stale synchronous parallel ] in comm/ps/stale_synchronous.py)
            return loss
        for group in self.param_groups:
            chunks, updated = self._chunks(group)
            self._update_chunks(chunks, group)
            for param in updated:
                param._version_counter[0] += 1
        return loss

    def _served_model(self):
        """The ServedModel (comm/ps/served_model.py) whose parameters this optimizer holds, if any: in asynchronous
        parameter-server training step() pushes the gradients instead of updating. Every parameter is looked at,
        not only the first: an optimizer holding one parameter besides a served model's must be refused by the
        ServedModel, not step the model's parameters here without the servers (a few microseconds a step)."""
        for group in self.param_groups:
            for param in group["params"]:
                served = getattr(param, "_served", None)
                if served is not None:
                    return served
        return None

    def _update_chunks(self, chunks, group):
        """Run `_update` on every chunk's blocks, spread over the engine's threads when there are enough.

        Blocks are independent (every rule is elementwise), so consecutive runs of them go
        to different threads, each with its own scratch arrays (engine/threads.py). Threads
        get bigger blocks: measured on a 2-core Xeon (25M-parameter Adam step), 128 KiB
        blocks gained nothing from a second thread (each NumPy call is too short to amortise
        the GIL hand-over), 512 KiB blocks went from 90 ms to 54 ms. Fewer bytes than two
        such blocks per thread stay on this thread: handing a 30-parameter model's update to
        the pool cost ~100 us where the update itself takes ~10 us.
        """
        workers = threads.get_num_threads() if chunks and chunks[0].xp is numpy else 1
        if workers > 1:
            blocks = [block for chunk in chunks for block in chunk.blocks(THREADED_BLOCK_BYTES)]
            # by bytes, not blocks: many small unpacked parameters are little work, whatever their count
            total = sum(block.param.nbytes for block in blocks)
            workers = min(workers, len(blocks) // MIN_BLOCKS_PER_THREAD,
                          total // (MIN_BLOCKS_PER_THREAD * THREADED_BLOCK_BYTES))
        if workers <= 1:
            for chunk in chunks:
                for block in chunk.blocks(BLOCK_BYTES):
                    self._update(block, group)
            return
        while len(self._thread_scratch) < workers:
            self._thread_scratch.append(ScratchPool())
        size = -(-len(blocks) // workers)
        parts = [blocks[start:start + size] for start in range(0, len(blocks), size)]

        def update_part(index, part):
            scratch = self._thread_scratch[index]
            for block in part:
                self._update(block.with_scratch(scratch), group)

        threads.run_in_parallel(update_part, parts)

    def _chunks(self, group):
        """The chunks of one group's step (NOTE [ Optimizer chunks ]), and the parameters they cover."""
        runs, chunks, updated = [], [], []
        homes = self._state_home if self.packed is not False else {}
        counts_steps = self.counts_steps
        for param in group["params"]:
            grad = param._grad
            if grad is None or not param._requires_grad:
                continue
            state = self.state.get(param)
            fresh = not state
            if fresh:
                state = self._create_state(param, group)
            step, scalars = None, ()
            if counts_steps:
                step = state["step"] = state["step"] + 1
                scalars = self._advance_scalar_state(state, group, step)
            updated.append(param)
            home = homes.get(param)
            # still packed where its state lives, and its .grad is its flat view (FlatParameters.grad_is_flat)
            if home is not None and param._flat is home[0] and grad is param._flat_grad:
                runs.append((id(home[0]), home[1], home[2], home[0], step, fresh, tuple(state), scalars))
            else:
                chunks.append(Chunk(array_module(param._data), param._data, grad._data,
                                    {name: value._data for name, value in state.items() if isinstance(value, Tensor)},
                                    step, fresh, self._scratch, scalars))
        return chunks + coalesce(runs, self._flat_state, self._scratch), updated

    # -- state --------------------------------------------------------------------------------
    def _home(self, param):
        """The buffer whose flat state arrays should hold `param`'s state, or None."""
        return param._flat if self.packed is not False else None

    def _state_array(self, param, home, name):
        """A zeroed array for one state tensor: a view of the flat state of `home`, or its own."""
        if home is None:
            return array_module(param._data).zeros_like(param._data, order="C")
        arrays = self._flat_state.setdefault(home, {})
        if name not in arrays:
            arrays[name] = home.array_module.zeros_like(home.data)
        offset, numel = home.segment(param)
        return arrays[name][offset:offset + numel].reshape(param._data.shape)

    def _create_state(self, param, group):
        home = self._home(param)
        state = {"step": 0} if self.counts_steps else {}
        for name, fill in self._init_state(group).items():
            array = self._state_array(param, home, name)
            if fill is not None:
                array.fill(fill)  # a flat state slice may hold a dropped state's values
            state[name] = _make(array)
        self._set_home(param, home)
        if state:
            self.state[param] = state
        return state

    def _set_home(self, param, home):
        if home is None:
            self._state_home.pop(param, None)
        elif self._state_home.get(param, (None,))[0] is not home:
            self._state_home[param] = (home, *home.segment(param))

    def state_dict(self):
        """{"state": {index: {name: value}}, "param_groups": [{..., "params": [index, ...]}]}.

        Parameters are numbered in the order of the groups, as in PyTorch; the state
        tensors are the optimizer's own (views of its flat state for packed parameters):
        save or copy them before stepping again (`copy.deepcopy(opt.state_dict())`).
        """
        groups, state, index = [], {}, 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            for param in group["params"]:
                if self.state.get(param):
                    state[index] = dict(self.state[param])
                index += 1
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load what `state_dict()` returned: copy state values into place, take the hyperparameters.

        The groups must have the same number of parameters as this optimizer's, in the
        same order, with the same shapes; a mismatch raises OptimizerError naming it.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise OptimizerError("load_state_dict expects the dict returned by Optimizer.state_dict(), with 'state' "
                                 f"and 'param_groups'; got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise OptimizerError(f"loaded state dict has {len(saved_groups)} parameter group(s), this optimizer has "
                                 f"{len(self.param_groups)}; build the optimizer with the same param groups")
        by_index = {}
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise OptimizerError(f"param group {number} of the loaded state dict has {len(saved['params'])} "
                                     f"parameters, this optimizer's group {number} has {len(group['params'])}")
            self._check_group({**group, **saved}, f" (param group {number} of the loaded state dict)")
            by_index.update(zip(saved["params"], group["params"]))
        for index, values in state_dict["state"].items():
            if index not in by_index:
                raise OptimizerError(f"loaded state dict has state for parameter {index}, which no param group lists")
            shape = tuple(by_index[index].shape)
            for name, value in values.items():
                if name != "step" and name not in self.scalar_state and _is_array(value) and \
                        tuple(value.shape) != shape:
                    raise OptimizerError(f"state '{name}' of parameter {index} in the loaded state dict has shape "
                                         f"{tuple(value.shape)}, but parameter {index} has shape {shape}; the state "
                                         "dict belongs to another model")
        loaded = {id(by_index[index]) for index in state_dict["state"]}
        for param in by_index.values():
            if id(param) not in loaded:
                self.state.pop(param, None)
                self._state_home.pop(param, None)
        for index, values in state_dict["state"].items():
            self._load_param_state(by_index[index], values)
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({key: copy.deepcopy(value) for key, value in saved.items() if key != "params"})

    def _load_param_state(self, param, values):
        home = self._home(param)
        state = {}
        for name, value in values.items():
            if value is None:  # e.g. a momentum buffer not created yet: created at the next step
                continue
            if name == "step":
                state[name] = _plain_number(value)
            elif name in self.scalar_state:  # PyTorch saves them as 0-d tensors
                state[name] = float(value.item() if hasattr(value, "item") else value)
            elif _is_array(value):
                target = self._state_array(param, home, name)
                source = value._data if isinstance(value, Tensor) else numpy.asarray(value)
                target[...] = move_array(source, device_of(target))
                state[name] = _make(target)
            else:
                state[name] = copy.deepcopy(value)
        self._set_home(param, home)
        self.state[param] = state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        return "\n".join(lines + [")"])


def _is_array(value):
    return isinstance(value, (Tensor, numpy.ndarray)) or (hasattr(value, "shape") and hasattr(value, "__array__"))


def _plain_number(step):
    step = step.item() if hasattr(step, "item") else step
    return int(step) if isinstance(step, float) and step.is_integer() else step
