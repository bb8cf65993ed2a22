"""The two-layer net with an optimizer: distrain.optim does the update.

Third script of the lecture's progression. `optim.Adam(model.parameters(), lr=...)`
keeps Adam's running averages per parameter; each step is `zero_grad()`,
`loss.backward()`, `step()`. Under the hood the optimizer packs the model's parameters
into one flat buffer (distrain/engine/flat.py), so a step is a handful of array
operations over the whole model rather than a Python loop over its tensors.

    python examples/two_layer_net_optim.py [--steps 500] [--device cuda]
"""
import argparse

import distrain


def main(argv=None):
    parser = argparse.ArgumentParser(description="Two-layer net trained with distrain.optim.Adam.")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    distrain.manual_seed(0)

    N, D_in, H, D_out = 64, 1000, 100, 10
    x = distrain.randn(N, D_in, device=args.device)
    y = distrain.randn(N, D_out, device=args.device)

    model = distrain.nn.Sequential(
        distrain.nn.Linear(D_in, H),
        distrain.nn.ReLU(),
        distrain.nn.Linear(H, D_out)).to(args.device)
    loss_fn = distrain.nn.MSELoss(reduction="sum")

    # Use an optimizer for the update rule (create it after moving the model to its device).
    optimizer = distrain.optim.Adam(model.parameters(), lr=1e-4)
    for t in range(args.steps):
        y_pred = model(x)
        loss = loss_fn(y_pred, y)
        if t % 50 == 0 or t == args.steps - 1:
            print(t, loss.item())

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()  # updates every parameter
    return loss.item()


if __name__ == "__main__":
    main()
