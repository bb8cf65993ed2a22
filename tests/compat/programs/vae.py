"""A variational autoencoder in the style of pytorch/examples' vae: fc encoder to mu/logvar, the
reparameterisation trick, a sigmoid decoder, binary cross-entropy plus KL divergence, Adam. The noise of the
reparameterisation comes from NumPy (the two frameworks' generators differ); the data are blurry blobs in [0, 1].

    python vae.py EPOCHS          # prints `LOSS <epoch> <batch> <loss>` and `TEST <epoch> <loss>`
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim
# --- end of imports


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc21 = nn.Linear(32, 4)
        self.fc22 = nn.Linear(32, 4)
        self.fc3 = nn.Linear(4, 32)
        self.fc4 = nn.Linear(32, 64)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar, eps):
        std = torch.exp(0.5 * logvar)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x, eps):
        mu, logvar = self.encode(x.view(-1, 64))
        z = self.reparameterize(mu, logvar, eps)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 64), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def data(rng, count):
    centres = rng.uniform(0, 8, size=(count, 2))
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(64, 2)
    images = np.exp(-((grid[None] - centres[:, None]) ** 2).sum(-1) / 6.0)
    return torch.from_numpy(images.astype(np.float32))


def main(epochs):
    rng = np.random.default_rng(5)
    train, test = data(rng, 256), data(rng, 64)
    model = VAE()
    weights = np.random.default_rng(6)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.from_numpy(weights.normal(0, 0.2, size=tuple(parameter.shape)).astype(np.float32)))
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    noise = np.random.default_rng(7)
    for epoch in range(epochs):
        model.train()
        for batch, start in enumerate(range(0, len(train), 32)):
            x = train[start:start + 32]
            eps = torch.from_numpy(noise.standard_normal((len(x), 4)).astype(np.float32))
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(x, eps)
            loss = loss_function(recon_batch, x, mu, logvar)
            loss.backward()
            optimizer.step()
            print(f"LOSS {epoch} {batch} {loss.item() / len(x):.9g}")
        model.eval()
        with torch.no_grad():
            recon, mu, logvar = model(test, torch.zeros(len(test), 4))
            print(f"TEST {epoch} {loss_function(recon, test, mu, logvar).item() / len(test):.9g}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
