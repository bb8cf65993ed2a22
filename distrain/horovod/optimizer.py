"""hvd.DistributedOptimizer: data parallelism for a custom loop by wrapping the optimizer.

    optimizer = distrain.optim.SGD(model.parameters(), lr=0.01 * hvd.size())
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    ... loss.backward(); optimizer.step()     # gradients combined over ranks during backward

The gradients are reduced by GradientReducer (gradient_reducer.py), the mechanism of
DistributedDataParallel: buckets of the flat gradient buffer start their allreduce as soon
as backward has filled them; `synchronize()` (run by `step()`) waits for them. What
Horovod lets you choose maps onto the reducer's parameters:

- op: hvd.Average (default), hvd.Sum, or hvd.Adasum (adasum.py; here applied to the
  gradients, synchronously at synchronize(). Horovod's CPU Adasum combines the wrapped
  optimizer's parameter changes instead; for plain SGD the two are the same, since Adasum
  is unchanged by scaling every input by -lr);
- compression: Compression.none or Compression.fp16 (float16 buckets);
- gradient_predivide_factor f (Average only): scale by 1/f before the sum, f/size after;
- backward_passes_per_step k: reduce once every parameter has accumulated k backward
  passes (their sum: scale the loss by 1/k for the mean), then step().

Accepted and not needed: num_groups and groups (distrain's buckets group the gradients),
sparse_as_dense (there are no sparse gradients). Composition, not a generated subclass:
everything else (param_groups, state_dict, ...) is the wrapped optimizer's.
"""
from __future__ import annotations

import contextlib

from ..comm_hooks import BucketReduction
from ..engine.optim.optimizer import Optimizer
from ..errors import DistrainError
from ..gradient_reducer import GradientReducer
from ..parallel import _communicator, check_same_parameters_everywhere
from .join import register as register_for_join
from .adasum import adasum
from .basics import communicator
from .compression import Compression, Compressor
from .ops import Adasum, Average, HorovodError, ReduceOp, Sum

_COMBINES = {Average: "average", Sum: "sum", Adasum: adasum}


class DistributedOptimizer(Optimizer):
    """Wraps `optimizer` so that step() applies the gradients combined over every rank (module docstring).

    An Optimizer (lr schedulers accept it) whose state and param groups are the wrapped one's.
    """

    def __init__(self, optimizer, named_parameters=None, compression=Compression.none, backward_passes_per_step=1,
                 op=Average, gradient_predivide_factor=1.0, num_groups=0, groups=None, sparse_as_dense=False,
                 process_set=None, *, comm=None, bucket_cap_mb=25, gradient_compression=None):
        object.__setattr__(self, "optimizer", optimizer)
        comm = _communicator(comm) if comm is not None else communicator("DistributedOptimizer")
        if process_set is not None:
            raise HorovodError("hvd.DistributedOptimizer: process sets are not supported; leave process_set out")
        op = ReduceOp(op) if op in list(ReduceOp) else op
        if op not in _COMBINES:
            raise HorovodError(f"hvd.DistributedOptimizer: op={op!r} is not supported for gradients; use hvd.Average, "
                               "hvd.Sum or hvd.Adasum")
        if gradient_compression is not None:
            compression = Compression.fp16 if gradient_compression == "fp16" else gradient_compression
        if not (isinstance(compression, type) and issubclass(compression, Compressor)) or \
                compression not in (Compression.none, Compression.fp16):
            raise HorovodError(f"hvd.DistributedOptimizer: compression={compression!r} is not supported; use "
                               "hvd.Compression.none or hvd.Compression.fp16 (a Compressor of your own works with "
                               "hvd.allreduce)")
        if op is Adasum and compression is Compression.fp16:
            raise HorovodError("hvd.DistributedOptimizer: op=hvd.Adasum with Compression.fp16 is not supported; use "
                               "Compression.none with Adasum")
        if op is not Average and gradient_predivide_factor != 1.0:
            raise HorovodError("hvd.DistributedOptimizer: gradient_predivide_factor applies to op=hvd.Average only")
        if not isinstance(backward_passes_per_step, int) or backward_passes_per_step < 1:
            raise HorovodError(f"hvd.DistributedOptimizer: backward_passes_per_step must be an int >= 1, got "
                               f"{backward_passes_per_step!r}")
        named = self._named(optimizer, named_parameters)
        check_same_parameters_everywhere(comm, named, "DistributedOptimizer")
        reduction = BucketReduction(_COMBINES[op], compression.reducer_compression, gradient_predivide_factor)
        reducer = GradientReducer(comm, [p for _, p in named], int(bucket_cap_mb * 2 ** 20),
                                  owner="DistributedOptimizer", reduction=reduction,
                                  passes_per_reduction=backward_passes_per_step, announces=True)
        object.__setattr__(self, "comm", comm)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "backward_passes_per_step", backward_passes_per_step)
        object.__setattr__(self, "_reducer", reducer)
        object.__setattr__(self, "_synchronized", False)
        object.__setattr__(self, "_should_synchronize", True)
        register_for_join(reducer)
        reducer.arm()

    @staticmethod
    def _named(optimizer, named_parameters):
        """(name, parameter) for every parameter of the optimizer that requires grad, in its order."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        if named_parameters is None:
            return [(f"allreduce.noname.{index}", p) for index, p in enumerate(params)]
        named = list(named_parameters)
        names = {}
        for name, parameter in named:
            if name in names.values():
                raise HorovodError(f"hvd.DistributedOptimizer: named_parameters holds the name {name!r} twice; "
                                   "parameter names must be unique")
            names[id(parameter)] = name
        unnamed = [index for index, p in enumerate(params) if id(p) not in names]
        if unnamed:
            raise HorovodError(f"hvd.DistributedOptimizer: named_parameters was given, but the optimizer's parameters "
                               f"{unnamed} (in param-group order) are not in it; pass model.named_parameters() of "
                               "the model whose parameters the optimizer updates")
        return [(names[id(p)], p) for p in params]

    # -- Horovod's calls -------------------------------------------------------------------------
    def synchronize(self):
        """Wait until every gradient is combined over the ranks (step() does this itself)."""
        if self._reducer.armed:
            self._reducer.position += 1  # NOTE [ sequence check ]
            self._reducer.finish()
        object.__setattr__(self, "_synchronized", True)

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside, step() does not synchronize: for a loop that called synchronize() itself (to clip gradients)."""
        object.__setattr__(self, "_should_synchronize", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_should_synchronize", True)

    def step(self, closure=None):
        """Combine the gradients over the ranks (if not done yet), then run the wrapped optimizer's step.

        A closure runs first (its backward is the one combined), then the update.
        """
        loss = None
        if closure is not None:
            from ..engine.autograd.grad_mode import enable_grad

            with enable_grad():
                loss = closure()
        if self._should_synchronize and not self._synchronized:
            self.synchronize()
        self.optimizer.step()
        object.__setattr__(self, "_synchronized", False)
        self._reducer.arm()  # the next backward's gradients
        return loss

    def zero_grad(self, set_to_none=True):
        if self._reducer.gradients_pending:
            raise DistrainError("hvd.DistributedOptimizer: zero_grad() was called after loss.backward() but before "
                                "step() or synchronize(): the gradients being combined would be lost. Call "
                                "zero_grad() before the backward passes of a step")
        self.optimizer.zero_grad(set_to_none)

    # -- the wrapped optimizer's --------------------------------------------------------------
    param_groups = property(lambda self: self.optimizer.param_groups)
    state = property(lambda self: self.optimizer.state)
    defaults = property(lambda self: self.optimizer.defaults)

    def add_param_group(self, param_group):
        raise HorovodError("hvd.DistributedOptimizer: add_param_group after wrapping is not supported; add every "
                           "group to the optimizer before wrapping it")

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.optimizer.load_state_dict(state_dict)

    def __getattr__(self, name):
        return getattr(self.__dict__["optimizer"], name)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r})"


__all__ = ["DistributedOptimizer"]
