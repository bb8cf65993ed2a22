"""A hand-written data-parallel loop with the communicator alone (no DistributedDataParallel).

For custom training loops: after backward, average each gradient over ranks yourself
with `allreduce(..., "mean")`, and average metrics the same way. Start it with

    python -m distrain.launch -n 2 examples/custom_loop.py

Every rank fits a linear regression to its own shard of synthetic data; the averaged
gradients make all ranks take the same steps, which the script checks at the end.
"""
import numpy as np

import distrain
import distrain.distributed as dist


def main():
    comm = dist.init()
    rng = np.random.default_rng(comm.rank)  # each rank its own data
    true_w = np.array([[2.0], [-3.0], [0.5]], dtype=np.float32)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = x @ true_w + 0.01 * rng.standard_normal((256, 1)).astype(np.float32)
    x, y = distrain.tensor(x), distrain.tensor(y)

    distrain.manual_seed(0)  # the same initial weights on every rank
    w = distrain.zeros(3, 1, requires_grad=True)
    for step in range(200):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        comm.allreduce(w.grad.numpy(), "mean")  # in place: every rank now holds the average gradient
        with distrain.no_grad():
            w -= 0.1 * w.grad
            w.grad.zero_()
        if step % 50 == 0:
            metric = np.array([loss.item()])
            comm.allreduce(metric, "mean")
            if comm.rank == 0:
                print(f"step {step}: loss averaged over {comm.size} ranks {metric[0]:.5f}", flush=True)

    weights = comm.allgather(w.detach().numpy().ravel())
    assert np.allclose(weights, weights[0]), "ranks diverged"
    if comm.rank == 0:
        print("learned", np.round(weights[0], 3).tolist(), "true", true_w.ravel().tolist(), flush=True)
    dist.shutdown()
    return weights[0]


if __name__ == "__main__":
    main()
