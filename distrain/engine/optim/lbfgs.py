"""L-BFGS: a quasi-Newton method that re-evaluates the loss several times per `step(closure)`.

Unlike the elementwise rules (NOTE [ Optimizer chunks ]), L-BFGS works on the whole
parameter vector at once: dot products and a two-loop recursion over the last
`history_size` updates. On distrain's flat buffers that vector already exists: when the
parameters are packed, in order, in one buffer (the default for a model's parameters),
the parameter vector is a slice of `FlatParameters.data` updated in place, and the
gradient vector is one copy of the slice of `FlatParameters.grad`. Otherwise (parameters
not packed, or spread over buffers) they are gathered and scattered per parameter, as
PyTorch does.

The iteration is PyTorch's (torch/optim/lbfgs.py): the same stopping tests in the same
order, the same first step `min(1, 1 / |g|_1) * lr`, the same history and line search
(line_search.py), so the trajectories agree with PyTorch's. As in PyTorch, the dot
products and the quantities made from them (step sizes, curvature ratios) are scalars of
the parameters' dtype, not Python floats: in float32 the line search's tests then round
as PyTorch's do, and take the same branches.
"""
from __future__ import annotations

from ..autograd.grad_mode import enable_grad
from ..backend import array_module
from ..flat import FlatParameters
from ..tensor import Tensor, _make
from .input_checks import OptimizerError
from .line_search import strong_wolfe
from .optimizer import Optimizer

_LINE_SEARCHES = (None, "strong_wolfe")
_COUNTERS = ("func_evals", "n_iter")  # counted in the state itself; the rest is computed on raw arrays (memory)


class LBFGS(Optimizer):
    """L-BFGS (Liu & Nocedal, 1989), after minFunc; one param group, and `step` needs a closure.

    Args:
        params: tensors (one group only: L-BFGS has no per-group hyperparameters).
        lr: learning rate, the step along the search direction (default 1).
        max_iter: the most iterations per `step()` (default 20).
        max_eval: the most loss evaluations per `step()` (default max_iter * 5 // 4).
        tolerance_grad: stop when the largest |gradient| is at most this (default 1e-7).
        tolerance_change: stop when the loss or the parameters change less (default 1e-9).
        history_size: how many past updates approximate the inverse Hessian (default 100).
        line_search_fn: None (fixed step lr) or "strong_wolfe".
        packed: see `Optimizer` (default: pack `nn.Parameter`s into flat buffers).

    State (PyTorch's layout, kept as the first parameter's state): "func_evals", "n_iter",
    "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss", "al".

    Example::

        >>> optimizer = distrain.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
        >>> def closure():
        ...     optimizer.zero_grad()
        ...     loss = loss_fn(model(inputs), targets)
        ...     loss.backward()
        ...     return loss
        >>> optimizer.step(closure)
    """

    counts_steps = False

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None, *, packed=None):
        if max_eval is None and isinstance(max_iter, int):
            max_eval = max_iter * 5 // 4
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval, "tolerance_grad": tolerance_grad,
                    "tolerance_change": tolerance_change, "history_size": history_size,
                    "line_search_fn": line_search_fn}
        super().__init__(params, defaults, packed=packed)
        if len(self.param_groups) != 1:
            raise OptimizerError(f"LBFGS doesn't support per-parameter options (parameter groups): got "
                                 f"{len(self.param_groups)} groups; pass one list of parameters")
        self._params = self.param_groups[0]["params"]

    def _check_group(self, group, where):
        super()._check_group(group, where)
        for key in ("max_iter", "max_eval", "history_size"):
            if not isinstance(group[key], int) or isinstance(group[key], bool) or group[key] < 1:
                raise OptimizerError(f"Invalid {key}: {group[key]!r}{where}; {key} must be a positive int")
        for key in ("tolerance_grad", "tolerance_change"):
            if not group[key] >= 0:
                raise OptimizerError(f"Invalid {key}: {group[key]}{where}; {key} must be >= 0")
        if group["line_search_fn"] not in _LINE_SEARCHES:
            raise OptimizerError(f"Invalid line_search_fn: {group['line_search_fn']!r}{where}; use None or "
                                 "'strong_wolfe'")

    def add_param_group(self, param_group):
        if self.param_groups:
            raise OptimizerError("LBFGS doesn't support per-parameter options (parameter groups); create it with "
                                 "all parameters in one list")
        super().add_param_group(param_group)

    # -- the parameter and gradient vectors -------------------------------------------------
    def _span(self):
        """(flat, start, stop) when the parameters fill flat.data[start:stop] in order, else None."""
        flat = getattr(self._params[0], "_flat", None)
        if flat is None or self.packed is False or self._params[0] not in flat:
            return None
        start = position = flat.segment(self._params[0])[0]
        for param in self._params:
            if param not in flat or flat.segment(param)[0] != position:
                return None
            position += param._data.size
        return flat, start, position

    def _params_vector(self, span):
        """A copy of the parameters as one vector (to restore them after a trial step)."""
        if span is not None:
            flat, start, stop = span
            return flat.data[start:stop].copy()
        return array_module(self._params[0]._data).concatenate([param._data.reshape(-1) for param in self._params])

    def _gather_flat_grad(self, span):
        """A new vector of the gradients, zeros where a parameter has none (PyTorch's rule)."""
        if span is not None and all(FlatParameters.grad_is_flat(param) for param in self._params):
            flat, start, stop = span
            return flat.grad[start:stop].copy()
        xp = array_module(self._params[0]._data)
        return xp.concatenate([param._grad._data.reshape(-1) if param._grad is not None else
                               xp.zeros(param._data.size, dtype=param._data.dtype) for param in self._params])

    def _write_params(self, span, vector, step_size=None):
        """params += step_size * vector, or params = vector when step_size is None: one slice operation when packed."""
        update = vector if step_size is None else step_size * vector
        if span is not None:
            flat, start, stop = span
            target = flat.data[start:stop]
            if step_size is None:
                target[...] = update
            else:
                target += update
            return
        offset = 0
        for param in self._params:
            size = param._data.size
            piece = update[offset:offset + size].reshape(param._data.shape)
            if step_size is None:
                param._data[...] = piece
            else:
                param._data += piece
            offset += size

    # -- the step -----------------------------------------------------------------------------
    def step(self, closure=None):
        """Run up to max_iter L-BFGS iterations; returns the loss the closure gave at the start.

        Args:
            closure: a function that zeroes the gradients, computes the loss, calls
                backward and returns the loss (required: L-BFGS evaluates it several times).
        """
        if self._served_model() is not None:  # never a local step on parameters that the servers hold
            raise OptimizerError("LBFGS cannot train asynchronously on the parameter servers: the servers run the "
                                 "optimizer, and L-BFGS needs a closure that recomputes the loss, which only a rank "
                                 "can run. Use an elementwise optimizer (SGD, Adam, ...) or --ps-mode sync")
        if closure is None:
            raise OptimizerError("LBFGS.step needs a closure that zeroes the gradients, computes the loss, calls "
                                 "backward and returns the loss: optimizer.step(closure)")
        group = self.param_groups[0]
        lr, max_iter, max_eval = float(group["lr"]), group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = float(group["tolerance_grad"]), float(group["tolerance_change"])
        history_size = group["history_size"]
        span = self._span()

        def evaluate():
            with enable_grad():
                value = closure()
            return value, _as_float(value), self._gather_flat_grad(span)

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        memory = _unwrapped({name: value for name, value in state.items() if name not in _COUNTERS})
        first_loss, loss, flat_grad = evaluate()
        evaluations = 1
        state["func_evals"] += 1
        if abs(flat_grad).max() <= tolerance_grad:
            return first_loss
        direction, t = memory.get("d"), memory.get("t")
        old_dirs, old_stps, ro = memory.get("old_dirs"), memory.get("old_stps"), memory.get("ro")
        h_diag, prev_flat_grad, prev_loss = memory.get("H_diag"), memory.get("prev_flat_grad"), memory.get("prev_loss")
        iteration = 0
        while iteration < max_iter:
            iteration += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                direction, old_dirs, old_stps, ro, h_diag = -flat_grad, [], [], [], 1
            else:
                direction = self._two_loop_direction(state, memory, flat_grad, prev_flat_grad, direction, t,
                                                     old_dirs, old_stps, ro, h_diag, history_size)
                h_diag = memory["H_diag"]
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss
            t = min(1.0, 1.0 / abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
            slope = flat_grad.dot(direction)
            if slope > -tolerance_change:  # not a descent direction any more
                break
            line_evaluations = 0
            if group["line_search_fn"] == "strong_wolfe":
                start = self._params_vector(span)

                def evaluate_at(step_size, direction=direction, start=start):
                    self._write_params(span, direction, step_size)
                    _, value, gradient = evaluate()
                    self._write_params(span, start)
                    return value, gradient

                loss, flat_grad, t, line_evaluations = strong_wolfe(evaluate_at, direction, t, loss, flat_grad, slope,
                                                                    max_ls=max_eval - evaluations)
                self._write_params(span, direction, t)
                optimal = abs(flat_grad).max() <= tolerance_grad
            else:
                self._write_params(span, direction, t)
                optimal = False
                if iteration != max_iter:  # the last iteration's loss is evaluated by the next step()
                    _, loss, flat_grad = evaluate()
                    optimal = abs(flat_grad).max() <= tolerance_grad
                    line_evaluations = 1
            evaluations += line_evaluations
            state["func_evals"] += line_evaluations
            if iteration == max_iter or evaluations >= max_eval or optimal:
                break
            if abs(direction * t).max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
        memory.update({"d": direction, "t": t, "old_dirs": old_dirs, "old_stps": old_stps, "ro": ro, "H_diag": h_diag,
                       "prev_flat_grad": prev_flat_grad, "prev_loss": prev_loss})
        state.update(_wrapped(memory))
        for param in self._params:
            param._version_counter[0] += 1
        return first_loss

    @staticmethod
    def _two_loop_direction(state, memory, flat_grad, prev_flat_grad, direction, t, old_dirs, old_stps, ro, h_diag,
                            history_size):
        """Record the last update (if its curvature is positive), then apply the inverse-Hessian estimate to -grad."""
        y = flat_grad - prev_flat_grad
        s = direction * t
        ys = y.dot(s)
        if ys > 1e-10:
            if len(old_dirs) == history_size:
                del old_dirs[0], old_stps[0], ro[0]
            old_dirs.append(y)
            old_stps.append(s)
            ro.append(1.0 / ys)
            h_diag = ys / y.dot(y)
        memory["H_diag"] = h_diag
        if "al" not in memory:
            memory["al"] = [None] * history_size
        al = memory["al"]
        q = -flat_grad
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = old_stps[i].dot(q) * ro[i]
            q -= al[i] * old_dirs[i]
        r = q * h_diag
        for i in range(len(old_dirs)):
            be_i = old_dirs[i].dot(r) * ro[i]
            r += (al[i] - be_i) * old_stps[i]
        return r

    # -- state dicts ----------------------------------------------------------------------------
    def load_state_dict(self, state_dict):
        """As `Optimizer.load_state_dict`; the state is PyTorch's LBFGS state of parameter 0 (vectors and lists)."""
        if not isinstance(state_dict, dict) or "state" not in state_dict:
            return super().load_state_dict(state_dict)
        saved = state_dict["state"]
        super().load_state_dict({**state_dict, "state": {}})
        if 0 in saved:
            xp = array_module(self._params[0]._data)
            self.state[self._params[0]] = _wrapped({name: _loaded(value, xp, self._params[0]._data)
                                                    for name, value in saved[0].items()})


def _as_float(value):
    return float(value.item() if hasattr(value, "item") else value)


def _unwrapped(state):
    """The state with raw arrays in place of Tensors (lists too), for the arithmetic."""
    def raw(value):
        if isinstance(value, Tensor):
            return value._data
        if isinstance(value, list):
            return [raw(item) for item in value]
        return value
    return {name: raw(value) for name, value in state.items()}


def _wrapped(memory):
    """The state with Tensors around its arrays, as a state dict shows them."""
    def tensor(value):
        if isinstance(value, list):
            return [tensor(item) for item in value]
        return _make(value) if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0 else value
    return {name: tensor(value) for name, value in memory.items()}


def _loaded(value, xp, like):
    """A loaded state value as this optimizer keeps it: arrays and scalars of the parameters' device and dtype."""
    if isinstance(value, list):
        return [_loaded(item, xp, like) for item in value]
    if isinstance(value, Tensor):
        value = value._data
    if hasattr(value, "shape"):
        array = value.numpy() if hasattr(value, "numpy") and not hasattr(value, "__array_interface__") else value
        array = xp.array(array, dtype=like.dtype)  # a copy: prev_flat_grad is updated in place
        return array[()] if array.ndim == 0 else array
    return value
