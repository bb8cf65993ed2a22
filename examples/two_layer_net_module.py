"""The two-layer net as a Module subclass, trained on mini-batches.

Fourth script of the lecture's progression: the model is a class. `__init__` creates the
layers (assigning them to attributes registers their parameters) and `forward` says how
they combine; backward comes from autograd. Here the ReLU is `.clamp(min=0)`, to show
that forward is ordinary tensor code. Mini-batches are slices of a shuffled index, the
loop a DataLoader would write for us (distrain.data, a later part of distrain).

    python examples/two_layer_net_module.py [--epochs 10] [--batch-size 8]
"""
import argparse

import distrain


class TwoLayerNet(distrain.nn.Module):
    def __init__(self, D_in, H, D_out):
        super().__init__()
        self.linear1 = distrain.nn.Linear(D_in, H)
        self.linear2 = distrain.nn.Linear(H, D_out)

    def forward(self, x):
        h_relu = self.linear1(x).clamp(min=0)
        y_pred = self.linear2(h_relu)
        return y_pred


def main(argv=None):
    parser = argparse.ArgumentParser(description="Two-layer Module trained on mini-batches with Adam.")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    distrain.manual_seed(0)

    N, D_in, H, D_out = 64, 1000, 100, 10
    x = distrain.randn(N, D_in, device=args.device)
    y = distrain.randn(N, D_out, device=args.device)

    model = TwoLayerNet(D_in, H, D_out).to(args.device)
    criterion = distrain.nn.MSELoss(reduction="sum")
    optimizer = distrain.optim.Adam(model.parameters(), lr=1e-3)

    for epoch in range(args.epochs):
        order = distrain.randperm(N, device=args.device)  # a new sample order every epoch
        epoch_loss = 0.0
        for start in range(0, N, args.batch_size):
            batch = order[start:start + args.batch_size]
            x_batch, y_batch = x[batch], y[batch]

            y_pred = model(x_batch)
            loss = criterion(y_pred, y_batch)

            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        print(f"epoch {epoch}: mean batch loss {epoch_loss / (N // args.batch_size):.4f}")
    with distrain.no_grad():
        full_loss = criterion(model(x), y).item()
    print(f"loss on all {N} samples: {full_loss:.4f}")
    return full_loss


if __name__ == "__main__":
    main()
