"""A new differentiable op: ReLU written as a distrain.autograd.Function.

When an operation is not built in (or a faster fused version is wanted), subclass
`autograd.Function` and write both directions: `forward(ctx, ...)` computes the result
from tensors and saves what backward needs with `ctx.save_for_backward`; `backward(ctx,
grad_output)` returns the gradient of the loss with respect to each input. Call it with
`MyReLU.apply(x)`; autograd records it in the graph like any built-in op.

The script checks the hand-written backward against finite differences
(`distrain.autograd.gradcheck`, in float64) and then trains the lecture's two-layer net
with it.

    python examples/custom_function.py [--steps 500]
"""
import argparse

import distrain


class MyReLU(distrain.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_x = grad_output.clone()
        grad_x[x < 0] = 0  # no gradient where the input was negative
        return grad_x


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a two-layer net with a custom autograd Function.")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    distrain.manual_seed(0)

    # 1. Is backward right? Compare with finite differences in float64 (away from the kink at 0).
    probe = distrain.randn(5, 4, dtype=distrain.float64)
    probe = (probe + probe.sign() * 0.1).requires_grad_()
    print("gradcheck:", distrain.autograd.gradcheck(MyReLU.apply, (probe,)))

    # 2. Use it.
    N, D_in, H, D_out = 64, 1000, 100, 10
    x = distrain.randn(N, D_in, device=args.device)
    y = distrain.randn(N, D_out, device=args.device)
    w1 = distrain.randn(D_in, H, device=args.device, requires_grad=True)
    w2 = distrain.randn(H, D_out, device=args.device, requires_grad=True)
    learning_rate = 1e-6
    for t in range(args.steps):
        y_pred = MyReLU.apply(x.mm(w1)).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        if t % 50 == 0 or t == args.steps - 1:
            print(t, loss.item())
        loss.backward()
        with distrain.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return loss.item()


if __name__ == "__main__":
    main()
