"""Run under `python -m distrain.launch -n N --backend mpi|ps`: every hvd call against NumPy.

Rank r's data is a known function of r, so each rank computes with NumPy what every call
must give from all ranks' inputs and compares; it prints "rank R ok" when all agree.
"""
import numpy

import distrain
import distrain.horovod as hvd
import distrain.nn as nn
from distrain.comm.plain_values import PlainValueError

hvd.init()
rank, size = hvd.rank(), hvd.size()


def data(r, shape=(3, 4), salt=0.0):
    return (numpy.arange(numpy.prod(shape), dtype=numpy.float32).reshape(shape) * (r + 1) + salt + r) / 7


def raises(error, text, call):
    try:
        call()
    except error as caught:
        assert text in str(caught), (text, str(caught))
        return
    raise AssertionError(f"no {error.__name__} ({text})")


# -- the world ------------------------------------------------------------------------------
assert hvd.is_initialized() and size >= 2 and 0 <= rank < size
assert (hvd.local_rank(), hvd.local_size()) == (rank, size)  # one machine
assert (hvd.cross_rank(), hvd.cross_size()) == (0, 1)
assert hvd.mpi_threads_supported() == (distrain.distributed.get_backend() == "mpi")
assert hvd.mpi_built() and not hvd.gloo_built() and hvd.nccl_built() in (True, False)
hvd.init()  # a second init is a no-op, as in Horovod

# -- allreduce: every op against NumPy ----------------------------------------------------
everyone = numpy.stack([data(r) for r in range(size)])


def adasum_pair(a, b):  # Maleki et al.'s formula, written out independently of distrain/horovod/adasum.py
    a, b = a.astype(numpy.float64).ravel(), b.astype(numpy.float64).ravel()
    dot = a @ b
    return (1 - dot / (2 * (a @ a))) * a + (1 - dot / (2 * (b @ b))) * b


adasum_expected = adasum_pair(everyone[0], everyone[1])
if size == 3:
    adasum_expected = adasum_pair(adasum_expected, everyone[2])
for op, expected in ((hvd.Average, everyone.mean(0)), (hvd.Sum, everyone.sum(0)), (hvd.Min, everyone.min(0)),
                     (hvd.Max, everyone.max(0)), (hvd.Product, everyone.prod(0)),
                     (hvd.Adasum, adasum_expected.reshape(3, 4))):
    source = distrain.tensor(data(rank))
    result = hvd.allreduce(source, op=op, name=f"x.{op.name}")
    numpy.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, err_msg=op.name)
    numpy.testing.assert_array_equal(source.numpy(), data(rank))  # not modified
# Adasum's two limits: orthogonal gradients add up, equal ones are averaged
orthogonal = numpy.zeros(size, dtype=numpy.float32)
orthogonal[rank] = rank + 1.0
numpy.testing.assert_allclose(hvd.allreduce(distrain.tensor(orthogonal), op=hvd.Adasum).numpy(),
                              numpy.arange(1, size + 1), rtol=1e-6)
numpy.testing.assert_allclose(hvd.allreduce(distrain.tensor(data(0)), op=hvd.Adasum).numpy(), data(0), rtol=1e-6)

scaled = hvd.allreduce(distrain.tensor(data(rank)), op=hvd.Sum, prescale_factor=0.5, postscale_factor=3.0)
numpy.testing.assert_allclose(scaled.numpy(), everyone.sum(0) * 1.5, rtol=1e-5)
integers = hvd.allreduce(distrain.tensor(numpy.array([rank * 3 + 1, 7], dtype=numpy.int64)))
numpy.testing.assert_array_equal(integers.numpy(), [sum(r * 3 + 1 for r in range(size)) // size, 7])
assert hvd.allreduce(distrain.tensor(data(rank)), average=False).numpy().sum() == numpy.float32(everyone.sum(0)).sum()

in_place = distrain.tensor(data(rank))
assert hvd.allreduce_(in_place, op=hvd.Sum) is in_place
numpy.testing.assert_allclose(in_place.numpy(), everyone.sum(0), rtol=1e-6)

handle = hvd.allreduce_async(distrain.tensor(data(rank, (1000,))), op=hvd.Max)
other = hvd.allreduce_async_(distrain.tensor(data(rank)), name="second")
assert isinstance(handle, int) and hvd.poll(handle) in (True, False)
numpy.testing.assert_allclose(hvd.synchronize(other).numpy(), everyone.mean(0), rtol=1e-6)
numpy.testing.assert_allclose(hvd.synchronize(handle).numpy(), data(size - 1, (1000,)), rtol=1e-6)
raises(hvd.HorovodError, "not a handle of an operation in flight", lambda: hvd.synchronize(handle))

compressed = hvd.allreduce(distrain.tensor(data(rank)), compression=hvd.Compression.fp16)
assert compressed.dtype == numpy.float32
numpy.testing.assert_allclose(compressed.numpy(), everyone.mean(0), rtol=2e-3)

# -- allgather: first dimensions may differ -----------------------------------------------
mine = data(rank, (rank + 1, 2))
gathered = hvd.allgather(distrain.tensor(mine))
numpy.testing.assert_array_equal(gathered.numpy(), numpy.concatenate([data(r, (r + 1, 2)) for r in range(size)]))
numpy.testing.assert_array_equal(hvd.synchronize(hvd.allgather_async(distrain.tensor(data(rank)))).numpy(),
                                 everyone.reshape(-1, 4))
assert hvd.allgather_object({"rank": rank}) == [{"rank": r} for r in range(size)]

# -- broadcast --------------------------------------------------------------------------------
root = size - 1
source = distrain.tensor(data(rank))
numpy.testing.assert_array_equal(hvd.broadcast(source, root_rank=root).numpy(), data(root))
numpy.testing.assert_array_equal(source.numpy(), data(rank))
assert hvd.broadcast_(source, root) is source
numpy.testing.assert_array_equal(source.numpy(), data(root))
numpy.testing.assert_array_equal(hvd.synchronize(hvd.broadcast_async(distrain.tensor(data(rank)), 0)).numpy(),
                                 data(0))
target = distrain.tensor(data(rank))
assert hvd.synchronize(hvd.broadcast_async_(target, 0)) is target
numpy.testing.assert_array_equal(target.numpy(), data(0))

# -- alltoall ---------------------------------------------------------------------------------
rows = data(rank, (2 * size, 3))  # rank r sends rows 2s, 2s+1 to rank s
numpy.testing.assert_array_equal(hvd.alltoall(distrain.tensor(rows)).numpy(),
                                 numpy.concatenate([data(s, (2 * size, 3))[2 * rank:2 * rank + 2] for s in range(size)]))
splits = [receiver + 1 for receiver in range(size)]  # rank r sends receiver+1 rows to each receiver
uneven = data(rank, (sum(splits), 3))
output, received = hvd.alltoall(distrain.tensor(uneven), splits=distrain.tensor(numpy.array(splits)))
expected_rows = [data(s, (sum(splits), 3))[sum(splits[:rank]):sum(splits[:rank]) + rank + 1] for s in range(size)]
numpy.testing.assert_array_equal(output.numpy(), numpy.concatenate(expected_rows))
numpy.testing.assert_array_equal(received.numpy(), [rank + 1] * size)
output, _ = hvd.synchronize(hvd.alltoall_async(distrain.tensor(uneven), splits=splits))
numpy.testing.assert_array_equal(output.numpy(), numpy.concatenate(expected_rows))

# -- objects, parameters, optimizer state ----------------------------------------------------
assert hvd.broadcast_object({"epoch": 3, "best": (0.5, "a")} if rank == 1 else None, root_rank=1) == \
    {"epoch": 3, "best": (0.5, "a")}
raises(PlainValueError, "is a set", lambda: hvd.broadcast_object({1, 2} if rank == 0 else None))


def build():
    distrain.manual_seed(rank)  # different on every rank
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))


model = build()
hvd.broadcast_parameters(model.state_dict(), root_rank=1)
distrain.manual_seed(1)
reference = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
    numpy.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)
model = build()
hvd.broadcast_parameters(model.named_parameters(), root_rank=0)
numpy.testing.assert_array_equal(model[0].weight.detach().numpy(), (distrain.manual_seed(0), nn.Linear(4, 5))[1].weight
                                 .detach().numpy())


def resumed_adam(model):
    """Rank 0's optimizer after a 'resume': three Adam steps, then a changed lr and betas."""
    optimizer = distrain.optim.Adam(model.parameters(), lr=0.01)
    for step in range(3):
        optimizer.zero_grad()
        model(distrain.tensor(data(step, (6, 4)))).pow(2).sum().backward()
        optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.003
    optimizer.param_groups[0]["betas"] = (0.8, 0.99)
    return optimizer


model = build()
optimizer = resumed_adam(model) if rank == 0 else distrain.optim.Adam(model.parameters(), lr=0.5)
hvd.broadcast_optimizer_state(optimizer, root_rank=0)
distrain.manual_seed(0)
reference_optimizer = resumed_adam(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)))
ours, theirs = optimizer.state_dict(), reference_optimizer.state_dict()
assert ours["param_groups"] == theirs["param_groups"], (ours["param_groups"], theirs["param_groups"])
assert sorted(ours["state"]) == sorted(theirs["state"])
for index, values in theirs["state"].items():
    assert ours["state"][index]["step"] == values["step"] == 3
    for name in ("exp_avg", "exp_avg_sq"):
        numpy.testing.assert_array_equal(ours["state"][index][name].numpy(), values[name].numpy())

# -- DistributedOptimizer: Sum, Adasum, predivide against NumPy --------------------------------
inputs = [data(r, (4, 4)) for r in range(size)]


def local_gradients(x):
    distrain.manual_seed(5)
    local = nn.Linear(4, 3)
    local(distrain.tensor(x)).pow(2).sum().backward()
    return [local.weight.grad.numpy().copy(), local.bias.grad.numpy().copy()]


each = [local_gradients(x) for x in inputs]
for op, predivide, combine in ((hvd.Sum, 1.0, lambda gs: numpy.sum(gs, 0)), (hvd.Average, 4.0, lambda gs: numpy.mean(gs, 0)),
                               (hvd.Adasum, 1.0, None)):
    distrain.manual_seed(5)
    layer = nn.Linear(4, 3)
    wrapped = hvd.DistributedOptimizer(distrain.optim.SGD(layer.parameters(), lr=0.1), layer.named_parameters(),
                                       op=op, gradient_predivide_factor=predivide)
    wrapped.zero_grad()
    layer(distrain.tensor(inputs[rank])).pow(2).sum().backward()
    wrapped.synchronize()
    for index, parameter in enumerate((layer.weight, layer.bias)):
        gradients = [g[index] for g in each]
        if combine is None:  # Adasum per parameter tensor
            expected = adasum_pair(gradients[0], gradients[1])
            expected = adasum_pair(expected, gradients[2]) if size == 3 else expected
            expected = expected.reshape(gradients[0].shape)
        else:
            expected = combine(gradients)
        numpy.testing.assert_allclose(parameter.grad.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=op.name)
    with wrapped.skip_synchronize():
        wrapped.step()

# -- join: rank r has r + 1 batches; nothing hangs, the sum over ranks with data / size ---------
batches = [[data(r + 10 * i, (4, 4)) for i in range(r + 1)] for r in range(size)]
distrain.manual_seed(7)
joined_reference = nn.Linear(4, 3)
reference_sgd = distrain.optim.SGD(joined_reference.parameters(), lr=0.05)
for i in range(size):
    reference_sgd.zero_grad()
    for r in range(size):
        if i < len(batches[r]):
            (joined_reference(distrain.tensor(batches[r][i])).pow(2).sum() / size).backward()
    reference_sgd.step()
distrain.manual_seed(7)
joining = nn.Linear(4, 3)
joining_optimizer = hvd.DistributedOptimizer(distrain.optim.SGD(joining.parameters(), lr=0.05),
                                             joining.named_parameters())
for x in batches[rank]:
    joining_optimizer.zero_grad()
    joining(distrain.tensor(x)).pow(2).sum().backward()
    joining_optimizer.step()
assert hvd.join() == size - 1
if rank == size - 1:  # the rank that took every step holds the whole run's result
    numpy.testing.assert_allclose(joining.weight.detach().numpy(), joined_reference.weight.detach().numpy(),
                                  rtol=1e-5, atol=1e-6)
hvd.broadcast_parameters(joining.state_dict(), root_rank=size - 1)
numpy.testing.assert_allclose(joining.weight.detach().numpy(), joined_reference.weight.detach().numpy(), rtol=1e-5,
                              atol=1e-6)
joining_optimizer.zero_grad()  # training goes on in step after the join
joining(distrain.tensor(data(rank, (4, 4)))).pow(2).sum().backward()
joining_optimizer.step()

# -- bad input: one-line errors naming what is wrong ------------------------------------------
raises(hvd.HorovodError, "op=7 is not one of", lambda: hvd.allreduce(distrain.tensor(data(rank)), op=7))
raises(hvd.HorovodError, "dtype bool cannot be combined",
       lambda: hvd.allreduce(distrain.tensor(numpy.array([True, False]))))
raises(hvd.HorovodError, "expected a Tensor, got list", lambda: hvd.allreduce([1.0, 2.0]))
raises(hvd.HorovodError, f"root_rank={size} is not a rank of this world of {size}",
       lambda: hvd.broadcast(distrain.tensor(data(rank)), root_rank=size))
raises(hvd.HorovodError, "all but the first dimension, and the dtype, must agree",
       lambda: hvd.allgather(distrain.tensor(data(rank, (2, 3 + (rank == 1))))))
raises(hvd.HorovodError, "splits must be", lambda: hvd.alltoall(distrain.tensor(data(rank, (4, 2))), splits=[1, 1]))
raises(hvd.HorovodError, "op=<ReduceOp.Max: 4> is not supported for gradients",
       lambda: hvd.DistributedOptimizer(distrain.optim.SGD(build().parameters(), lr=0.1), op=hvd.Max))
raises(hvd.HorovodError, "process sets are not supported", lambda: hvd.allreduce(distrain.tensor(data(0)),
                                                                               process_set=object()))
hvd.barrier()
print(f"rank {rank} ok", flush=True)
hvd.shutdown()
