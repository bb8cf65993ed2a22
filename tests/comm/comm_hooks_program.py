"""DDP with a communication hook, written once for PyTorch and distrain: only the import block differs.

Run: python -m distrain.launch -n N --backend mpi|ps comm_hooks_program.py HOOK
     TWIN=torch python -m torch.distributed.run --standalone --nproc_per_node N comm_hooks_program.py HOOK
HOOK: allreduce | fp16 | bf16 | custom (a hook of the program's own: GradBucket in, Future out).
Prints each rank's losses and the buckets the custom hook saw.
"""
import json
import os
import sys

import numpy

if os.environ.get("TWIN") == "torch":
    import torch
    import torch.distributed as dist
    import torch.futures
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(1)
else:
    import distrain as torch
    import distrain.distributed as dist
    import distrain.futures
    from distrain.distributed.algorithms.ddp_comm_hooks import default_hooks
    from distrain.nn.parallel import DistributedDataParallel

hook_name = sys.argv[1]
seen = []


def averaging_hook(state, bucket):
    """A user's hook: divide, all_reduce, and hand the result on through a Future and then()."""
    seen.append([bucket.index(), bucket.is_last(), len(bucket.parameters()), len(bucket.gradients())])
    tensor = bucket.buffer()
    tensor.div_(state["world_size"])
    dist.all_reduce(tensor)
    future = torch.futures.Future()
    future.set_result([tensor])
    return future.then(lambda done: done.value()[0])


dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
generator = numpy.random.default_rng(11)
weights = [generator.standard_normal(shape).astype(numpy.float32) * 0.5 for shape in ((16, 8), (16,), (4, 16), (4,))]
inputs = generator.standard_normal((5, size, 6, 8)).astype(numpy.float32)
targets = generator.standard_normal((5, size, 6, 4)).astype(numpy.float32) * 100  # large gradients: fp16 overflow risk

model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
model.load_state_dict({name: torch.from_numpy(value) for name, value in zip(model.state_dict(), weights)})
ddp = DistributedDataParallel(model, bucket_cap_mb=0.0002)  # several buckets
hooks = {"allreduce": (None, default_hooks.allreduce_hook), "fp16": (None, default_hooks.fp16_compress_hook),
         "bf16": (None, default_hooks.bf16_compress_hook), "custom": ({"world_size": size}, averaging_hook)}
ddp.register_comm_hook(*hooks[hook_name])
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.001, momentum=0.9)
losses = []
for step in range(5):
    optimizer.zero_grad()
    loss = ((ddp(torch.from_numpy(inputs[step, rank])) - torch.from_numpy(targets[step, rank])) ** 2).mean()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print("RESULT " + json.dumps({"rank": rank, "losses": losses, "seen": seen[:3]}), flush=True)
dist.barrier()
dist.destroy_process_group()
