"""Shared tensors across processes, run by test_shared_tensors.py in a process group of its own.

`python -W error shared_script.py START_METHOD` runs every scenario with that start method
and prints one JSON line `RESULT {...}` of what the parent saw.
"""
import gc
import json
import sys

import numpy as np

import distrain
import distrain.multiprocessing as mp

WAIT_SECONDS = 60


def add_to_slot(index, slots):
    """Child `index` adds index + 1 to slot `index` (a closed form: slot i ends at i + 1 per round)."""
    with distrain.no_grad():
        slots[index] += index + 1


def step_shared_model(rank, model, lock, report):
    """One SGD step of a loss linear in the weights: each child moves every weight by -lr * (rank + 1)."""
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
    loss = model(distrain.ones(1, 3)).sum() * (rank + 1)  # d loss / d every weight and bias = rank + 1
    with lock:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    report.put({"rank": rank, "packed_together": model.weight._flat is model.bias._flat,
                "shared": [p.is_shared() for p in model.parameters()],
                "grad": model.bias.grad.tolist()})


def receive_and_write(queue, done):
    shared, private = queue.get(timeout=WAIT_SECONDS)
    with distrain.no_grad():
        shared[0] = 42.0
        private[0] = 42.0
    done.put((shared.is_shared(), private.is_shared()))


def send_own_tensor(queue, written, observed):
    mine = distrain.full((3,), 7.0).share_memory_()
    queue.put(mine)
    if not written.wait(WAIT_SECONDS):
        raise TimeoutError("the parent did not write into the tensor within 60 s")
    observed.put(mine.tolist())


def mapped_segments():
    """How many shared-memory files this process maps (NOTE [ Shared tensors between processes ])."""
    with open("/proc/self/maps") as maps:
        return sum("memfd:distrain-shared" in line for line in maps)


def main(start_method):
    context = mp.get_context(start_method)
    result = {}

    slots = distrain.zeros(4).share_memory_()
    workers = [context.Process(target=add_to_slot, args=(index, slots)) for index in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT_SECONDS)
    result["slots_after_processes"] = slots.tolist()
    mp.start_processes(add_to_slot, args=(slots,), nprocs=3, start_method=start_method)
    result["slots_after_spawn"] = slots.tolist()

    model = distrain.nn.Linear(3, 2)
    with distrain.no_grad():
        model.weight.copy_(distrain.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3)))
        model.bias.copy_(distrain.tensor([10.0, 20.0]))
    model.share_memory()
    lock, report = context.Lock(), context.Queue()
    workers = [context.Process(target=step_shared_model, args=(rank, model, lock, report)) for rank in range(3)]
    for worker in workers:
        worker.start()
    result["children"] = sorted((report.get(timeout=WAIT_SECONDS) for _ in workers), key=lambda r: r["rank"])
    for worker in workers:
        worker.join(WAIT_SECONDS)
    result["weight"] = model.weight.tolist()
    result["bias"] = model.bias.tolist()
    result["parent_grad"] = None if model.bias.grad is None else model.bias.grad.tolist()

    queue, done = context.Queue(), context.Queue()
    shared, private = distrain.zeros(2).share_memory_(), distrain.zeros(2)
    worker = context.Process(target=receive_and_write, args=(queue, done))
    worker.start()
    queue.put((shared, private))
    result["child_saw_shared"] = done.get(timeout=WAIT_SECONDS)
    worker.join(WAIT_SECONDS)
    result["parent_to_child"] = [shared.tolist(), private.tolist()]

    queue, observed, written = context.Queue(), context.Queue(), context.Event()
    worker = context.Process(target=send_own_tensor, args=(queue, written, observed))
    worker.start()
    received = queue.get(timeout=WAIT_SECONDS)
    result["received"] = [received.is_shared(), received.tolist()]
    with distrain.no_grad():
        received[1] = 5.0
    written.set()
    result["child_to_parent"] = observed.get(timeout=WAIT_SECONDS)
    worker.join(WAIT_SECONDS)

    result["exit_codes"] = [w.exitcode for w in workers] + [worker.exitcode]
    result["segments_while_held"] = mapped_segments()
    del slots, model, shared, private, received, workers, worker
    gc.collect()
    result["segments_after_release"] = mapped_segments()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
