"""Horovod's PyTorch API over distrain: `import distrain.horovod as hvd` where a program has `import horovod.torch as hvd`.

    import distrain.horovod as hvd
    hvd.init()
    sampler = distrain.data.DistributedSampler(dataset, num_replicas=hvd.size(), rank=hvd.rank())
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.01 * hvd.size())
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())

Run it as any distrain job: `python -m distrain.launch -n 4 --backend mpi|ps train.py`
(or under mpirun). A thin face, no second mechanism (shared/DESIGN.md): the world is
distrain.distributed's process group (basics.py), the collectives are the communicators'
(tensor_collectives.py), DistributedOptimizer is DistributedDataParallel's GradientReducer
(optimizer.py), join() is its join protocol (join.py).

==============================  =====================================================
file                            what
==============================  =====================================================
basics.py                       init, shutdown, rank, size, local/cross ranks, *_built
ops.py                          Average, Sum, Adasum, Min, Max, Product
tensor_collectives.py           allreduce(_), allgather, broadcast(_), alltoall, barrier
handles.py                      the `_async` forms' handles: poll, synchronize
broadcast_state.py              broadcast_parameters/optimizer_state/object
optimizer.py, compression.py    DistributedOptimizer, Compression.none/fp16
adasum.py, join.py              Adasum's formula; join()
==============================  =====================================================

Not supported (a one-line error says so): process sets, hvd.init(comm=...), Adasum with
fp16 compression in DistributedOptimizer. Results of the collectives carry no autograd
history.
"""
from .basics import (ccl_built, cross_rank, cross_size, cuda_built, ddl_built, gloo_built, gloo_enabled, init,
                     is_homogeneous, is_initialized, local_rank, local_size, mpi_built, mpi_enabled,
                     mpi_threads_supported, nccl_built, rank, rocm_built, shutdown, size)
from .broadcast_state import broadcast_object, broadcast_optimizer_state, broadcast_parameters
from .compression import Compression, Compressor
from .handles import poll, synchronize
from .join import join
from .ops import Adasum, Average, HorovodError, Max, Min, Product, ReduceOp, Sum
from .optimizer import DistributedOptimizer
from .tensor_collectives import (allgather, allgather_async, allgather_object, allreduce, allreduce_, allreduce_async,
                                 allreduce_async_, alltoall, alltoall_async, barrier, broadcast, broadcast_,
                                 broadcast_async, broadcast_async_)

__all__ = ["Adasum", "Average", "Compression", "Compressor", "DistributedOptimizer", "HorovodError", "Max", "Min",
           "Product", "ReduceOp", "Sum", "allgather", "allgather_async", "allgather_object", "allreduce",
           "allreduce_", "allreduce_async", "allreduce_async_", "alltoall", "alltoall_async", "barrier", "broadcast",
           "broadcast_", "broadcast_async", "broadcast_async_", "broadcast_object", "broadcast_optimizer_state",
           "broadcast_parameters", "ccl_built", "cross_rank", "cross_size", "cuda_built", "ddl_built", "gloo_built",
           "gloo_enabled", "init", "is_homogeneous", "is_initialized", "join", "local_rank", "local_size",
           "mpi_built", "mpi_enabled", "mpi_threads_supported", "nccl_built", "poll", "rank", "rocm_built",
           "shutdown", "size", "synchronize"]
