"""The two-layer net again, with distrain.nn: layers and a loss instead of raw weights.

Second script of the lecture's progression (after examples/two_layer_net.py). The model
is `nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)`: each Linear owns its weight and bias
as Parameters, so `model.parameters()` finds them without our listing them, and
`nn.MSELoss(reduction="sum")` is the summed squared error (the lecture wrote it with the
old spelling `size_average=False`, which distrain also accepts). The update is still by
hand: for every parameter, `param.data -= learning_rate * param.grad.data` (`.data` is
the same storage outside the graph, so the step is not recorded).

    python examples/two_layer_net_nn.py [--steps 500] [--device cuda]

Prints the loss every 50 steps; it falls by orders of magnitude.
"""
import argparse

import distrain


def main(argv=None):
    parser = argparse.ArgumentParser(description="Two-layer net with nn.Sequential and a manual update.")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    distrain.manual_seed(0)

    N, D_in, H, D_out = 64, 1000, 100, 10
    x = distrain.randn(N, D_in, device=args.device)
    y = distrain.randn(N, D_out, device=args.device)

    # Define our model as a sequence of layers.
    model = distrain.nn.Sequential(
        distrain.nn.Linear(D_in, H),
        distrain.nn.ReLU(),
        distrain.nn.Linear(H, D_out)).to(args.device)
    loss_fn = distrain.nn.MSELoss(size_average=False)  # common loss functions are provided

    learning_rate = 1e-4
    for t in range(args.steps):
        y_pred = model(x)
        loss = loss_fn(y_pred, y)
        if t % 50 == 0 or t == args.steps - 1:
            print(t, loss.item())

        model.zero_grad()
        loss.backward()

        for param in model.parameters():
            param.data -= learning_rate * param.grad.data
    return loss.item()


if __name__ == "__main__":
    main()
