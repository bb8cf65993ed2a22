"""The training step of the jit tests, compiled or eager: the eager one is the oracle of the other."""
from distrain.engine import jit


def training_step(model, loss_fn, optimizer, compiled, **options):
    """`step(x, y) -> loss`: distrain.jit.compile_step's, or the same step written eagerly."""
    if compiled:
        return jit.compile_step(model, loss_fn, optimizer, **options)

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step
