"""DDP over subgroups (4 ranks): ranks {0, 1} and {2, 3} each train their own replica, given as process_group.

Each rank starts from its own weights; DDP makes them its group's first rank's, and backward
averages the gradient over the group only: checked against NumPy.
"""
import numpy

import distrain
import distrain.distributed as dist
from distrain.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
rank = dist.get_rank()
assert dist.get_world_size() == 4, "run me on 4 ranks"
pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
mine = pairs[rank // 2]
other = pairs[1 - rank // 2]
try:
    DDP(distrain.nn.Linear(3, 1), process_group=other)
    raise AssertionError("a group this rank is not in was accepted")
except ValueError as error:
    assert "not a member of this process_group" in str(error), error
model = distrain.nn.Linear(3, 1)
with distrain.no_grad():
    model.weight.copy_(distrain.tensor([[rank + 1.0, 0.5, -1.0]]))
    model.bias.fill_(float(rank))
ddp = DDP(model, process_group=mine)
root = rank // 2 * 2  # the group's rank 0, in the whole job
numpy.testing.assert_array_equal(model.weight.detach().numpy(), [[root + 1.0, 0.5, -1.0]])
inputs = numpy.arange(6, dtype=numpy.float32).reshape(2, 3) * (rank + 1)
ddp(distrain.tensor(inputs)).sum().backward()
members = [root, root + 1]
expected = numpy.mean([(numpy.arange(6, dtype=numpy.float32).reshape(2, 3) * (r + 1)).sum(axis=0) for r in members],
                      axis=0)
numpy.testing.assert_allclose(model.weight.grad.numpy()[0], expected, rtol=1e-6)
numpy.testing.assert_allclose(model.bias.grad.numpy(), [2.0], rtol=1e-6)
print(f"rank {rank} ok", flush=True)
dist.destroy_process_group()
