"""A word-level LSTM language model in the style of pytorch/examples' word_language_model: an Embedding, a
2-layer LSTM, a tied-size Linear decoder, batchify and get_batch over a token stream, hidden state carried
between batches and detached (repackage_hidden), gradient clipping, Adam, perplexity on held-out
text. Dropout is 0 so that the two frameworks' random generators do not enter.

    python word_language_model.py EPOCHS    # prints `LOSS <epoch> <batch> <loss>` and `VALID <epoch> <loss>`
"""
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
# --- end of imports


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.0):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt=12):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


def corpus(length, ntokens=20, seed=9):
    """A token stream with structure to learn: a noisy walk over the vocabulary."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([1, 2, 3, -1], size=length, p=[0.5, 0.2, 0.2, 0.1])
    return torch.from_numpy((np.cumsum(steps) % ntokens).astype(np.int64))


def main(epochs):
    ntokens = 20
    train_data, val_data = batchify(corpus(2400), 8), batchify(corpus(600, seed=11), 4)
    model = RNNModel(ntokens, 32, 48, 2)
    rng = np.random.default_rng(10)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, size=tuple(parameter.shape)).astype(np.float32)))
    criterion = nn.NLLLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        model.train()
        hidden = model.init_hidden(8)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, 12)):
            data, targets = get_batch(train_data, i)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            print(f"LOSS {epoch} {batch} {loss.item():.9g}")
        model.eval()
        total_loss, hidden = 0.0, model.init_hidden(4)
        with torch.no_grad():
            for i in range(0, val_data.size(0) - 1, 12):
                data, targets = get_batch(val_data, i)
                output, hidden = model(data, hidden)
                total_loss += len(data) * criterion(output, targets).item()
        valid = total_loss / (len(val_data) - 1)
        print(f"VALID {epoch} {valid:.9g}")
        print(f"PPL {epoch} {math.exp(valid):.9g}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
