"""Run under `python -m distrain.launch -n N [--backend ps]`: every torch.distributed-style collective against NumPy.

Rank r's data is a known function of r, so each rank computes what every collective must give
from all ranks' inputs with NumPy and compares; it prints "rank R ok" when all agree.
"""
import numpy

import distrain
import distrain.distributed as dist


def data(rank, shape=(3, 2), salt=0):
    return numpy.arange(numpy.prod(shape), dtype=numpy.float32).reshape(shape) * (rank + 1) + salt + rank


dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
everyone = numpy.stack([data(r) for r in range(size)])

for op, expected in ((dist.ReduceOp.SUM, everyone.sum(0)), (dist.ReduceOp.AVG, everyone.mean(0)),
                     (dist.ReduceOp.MAX, everyone.max(0)), (dist.ReduceOp.MIN, everyone.min(0)),
                     (dist.ReduceOp.PRODUCT, everyone.prod(0))):
    tensor = distrain.tensor(data(rank))
    assert dist.all_reduce(tensor, op=op) is None
    numpy.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6, err_msg=str(op))

tensor = distrain.tensor(data(rank))
work = dist.all_reduce(tensor, async_op=True)
assert work.wait() and work.is_completed()
numpy.testing.assert_allclose(tensor.numpy(), everyone.sum(0), rtol=1e-6)

source = size - 1
tensor = distrain.tensor(data(rank))
dist.broadcast(tensor, src=source)
numpy.testing.assert_array_equal(tensor.numpy(), data(source))

outputs = [distrain.zeros(3, 2) for _ in range(size)]
dist.all_gather(outputs, distrain.tensor(data(rank)))
for r, out in enumerate(outputs):
    numpy.testing.assert_array_equal(out.numpy(), data(r))

joined = distrain.zeros(3 * size, 2)
dist.all_gather_into_tensor(joined, distrain.tensor(data(rank)))
numpy.testing.assert_array_equal(joined.numpy(), everyone.reshape(3 * size, 2))

tensor = distrain.tensor(data(rank))
dist.reduce(tensor, dst=0)
if rank == 0:
    numpy.testing.assert_allclose(tensor.numpy(), everyone.sum(0), rtol=1e-6)

gathered = [distrain.zeros(3, 2) for _ in range(size)] if rank == 1 else None
dist.gather(distrain.tensor(data(rank)), gathered, dst=1)
if rank == 1:
    for r, out in enumerate(gathered):
        numpy.testing.assert_array_equal(out.numpy(), data(r))

received = distrain.zeros(3, 2)
pieces = [distrain.tensor(data(r, salt=100)) for r in range(size)] if rank == 0 else None
dist.scatter(received, pieces, src=0)
numpy.testing.assert_array_equal(received.numpy(), data(rank, salt=100))

mine = distrain.zeros(3, 2)
dist.reduce_scatter(mine, [distrain.tensor(data(rank, salt=10 * target)) for target in range(size)])
numpy.testing.assert_allclose(mine.numpy(), sum(data(r, salt=10 * rank) for r in range(size)), rtol=1e-6)

outputs = [distrain.zeros(3, 2) for _ in range(size)]
dist.all_to_all(outputs, [distrain.tensor(data(rank, salt=10 * target)) for target in range(size)])
for sender, out in enumerate(outputs):  # what `sender` meant for this rank
    numpy.testing.assert_array_equal(out.numpy(), data(sender, salt=10 * rank))

objects = [None] * size
dist.all_gather_object(objects, {"rank": rank, "name": f"r{rank}"})
assert objects == [{"rank": r, "name": f"r{r}"} for r in range(size)], objects
listed = [rank, "mine"] if rank == 1 else [None, None]
dist.broadcast_object_list(listed, src=1)
assert listed == [1, "mine"], listed

array = data(rank)  # arrays work too
dist.all_reduce(array)
numpy.testing.assert_allclose(array, everyone.sum(0), rtol=1e-6)

for bad, words in ((lambda: dist.broadcast(distrain.zeros(2), src=size), f"src={size} is not a rank"),
                   (lambda: dist.all_gather([distrain.zeros(2)] * (size + 1), distrain.zeros(2)), "one entry per rank"),
                   (lambda: dist.all_gather_object([None] * size, object()), "object")):
    try:
        bad()
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        assert words in str(error), (words, str(error))
    else:
        raise AssertionError(f"no error for: {words}")
dist.barrier()
print(f"rank {rank} ok", flush=True)
dist.destroy_process_group()
