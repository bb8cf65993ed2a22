"""A two-layer network trained by hand: tensors, autograd and an SGD step, nothing else.

This is the classic lecture script (CS231n lecture 8, "Deep Learning Software") with
`import torch` replaced by `import distrain`. It fits random targets y from random inputs x
with a network of two weight matrices and a ReLU between them:

    y_pred = relu(x @ w1) @ w2          x: (N, D_in)  w1: (D_in, H)  w2: (H, D_out)

What each step does:

1. Forward. `x.mm(w1).clamp(min=0).mm(w2)` is ordinary tensor arithmetic. Because w1 and
   w2 were created with requires_grad=True, distrain records every operation that touches
   them in a graph as it runs ("define by run": the graph is whatever code just executed).
2. Loss. `(y_pred - y).pow(2).sum()` is the squared error, a tensor with one element;
   `loss.item()` turns it into a Python float for printing.
3. Backward. `loss.backward()` walks the recorded graph from the loss back to the leaves
   and stores d(loss)/d(w1) in `w1.grad` and d(loss)/d(w2) in `w2.grad`.
4. Update. The step `w -= learning_rate * w.grad` must not itself be recorded, or the next
   backward would try to differentiate through the update: `with distrain.no_grad():`
   switches recording off. The weights are changed in place, so they stay the same
   leaf tensors.
5. Reset. backward *adds* into .grad (so gradients of several losses can be summed), so
   the gradients are zeroed before the next step.

Run it (from the repository root, after `pip install -e .`):

    python examples/two_layer_net.py                 # 500 steps on the CPU
    python examples/two_layer_net.py --steps 100
    python examples/two_layer_net.py --device cuda   # needs a GPU and pip install -e ".[gpu]"

It prints the step number and the loss every 50 steps; the loss falls by several orders of
magnitude. The next examples replace the hand-written parts with distrain.nn (layers and
losses) and distrain.optim (the update rule).
"""
import argparse

import distrain


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a two-layer net with raw tensors and autograd.")
    parser.add_argument("--steps", type=int, default=500, help="training steps (default %(default)s)")
    parser.add_argument("--device", default="cpu", help='"cpu" (default), "cuda" or "cuda:N"')
    args = parser.parse_args(argv)

    distrain.manual_seed(0)  # the same random data and weights on every run

    # N is the batch size; D_in the input size; H the hidden size; D_out the output size.
    N, D_in, H, D_out = 64, 1000, 100, 10

    # Random inputs and targets. They need no gradient: requires_grad is False by default.
    x = distrain.randn(N, D_in, device=args.device)
    y = distrain.randn(N, D_out, device=args.device)

    # The weights are what we learn, so autograd must track them.
    w1 = distrain.randn(D_in, H, device=args.device, requires_grad=True)
    w2 = distrain.randn(H, D_out, device=args.device, requires_grad=True)

    learning_rate = 1e-6
    for t in range(args.steps):
        # Forward pass: predicted y, recorded in the autograd graph.
        y_pred = x.mm(w1).clamp(min=0).mm(w2)

        # Loss: sum of squared errors.
        loss = (y_pred - y).pow(2).sum()
        if t % 50 == 0 or t == args.steps - 1:
            print(t, loss.item())

        # Backward pass: fills w1.grad and w2.grad.
        loss.backward()

        # Gradient descent, outside the graph; then clear the gradients for the next step.
        with distrain.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()


if __name__ == "__main__":
    main()
