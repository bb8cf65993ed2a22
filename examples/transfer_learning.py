"""Transfer learning: reuse a trained backbone, freeze it, train a new head.

Last script of the lecture's progression (checkpoints, then transfer learning):

1. Pretrain. A small CNN (a convolutional "backbone" that turns an image into 16
   features, plus a linear "head" that turns features into class scores) learns task A:
   in which of the four quadrants of a 12x12 image is the bright blob?
2. Checkpoint. `distrain.save` writes the model's and the optimizer's state_dicts and the
   step count to one file, atomically (a crash mid-save leaves the previous file whole).
3. Transfer. A fresh model loads the checkpoint with `load_state_dict`, the backbone is
   frozen (`requires_grad_(False)`: no gradients, and the optimizer skips it), and the
   head is replaced by a new Linear for task B: is the blob in the top or the bottom half?
   Only the head trains; the backbone's features, learnt on task A, carry over.

    python examples/transfer_learning.py [--pretrain-steps 150] [--steps 100] [--checkpoint PATH]

Prints task A's accuracy, then task B's before and after training the new head, and
checks that the frozen backbone did not change.
"""
import argparse
import os
import tempfile

import distrain
import distrain.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def blob_images(n, generator_seed):
    """n noisy 12x12 images with one bright 3x3 blob; returns (images, quadrant 0-3)."""
    distrain.manual_seed(generator_seed)
    images = distrain.randn(n, 1, 12, 12) * 0.3
    quadrant = distrain.randint(0, 4, (n,))
    rows = distrain.randint(0, 4, (n,)) + (quadrant // 2) * 6  # top-left corner of the blob
    cols = distrain.randint(0, 4, (n,)) + (quadrant % 2) * 6
    for i in range(n):  # building the toy data set, not part of training
        r, c = int(rows[i]), int(cols[i])
        images[i, 0, r:r + 3, c:c + 3] += 2.0
    return images, quadrant


def accuracy(model, images, labels):
    with distrain.no_grad():
        model.eval()
        predicted = model(images).argmax(dim=1)
        model.train()
    return (predicted == labels).float().mean().item()


def train(model, optimizer, images, labels, steps, batch_size=64):
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps):
        batch = distrain.randint(0, images.shape[0], (batch_size,))
        loss = loss_fn(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Pretrain, checkpoint, freeze the backbone, train a new head.")
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--checkpoint", default=os.path.join(tempfile.gettempdir(), "distrain_transfer.ckpt"))
    args = parser.parse_args(argv)

    images, quadrants = blob_images(1024, generator_seed=0)

    # 1. Pretrain on task A (which quadrant).
    model = SmallCNN(num_classes=4)
    optimizer = distrain.optim.Adam(model.parameters(), lr=1e-2)
    train(model, optimizer, images, quadrants, args.pretrain_steps)
    accuracy_a = accuracy(model, images, quadrants)
    print(f"task A (quadrant, 4 classes): accuracy {accuracy_a:.3f}")

    # 2. Checkpoint everything needed to resume or reuse the run.
    distrain.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "step": args.pretrain_steps}, args.checkpoint)
    print(f"saved checkpoint {args.checkpoint}")

    # 3. Transfer to task B (top or bottom half): load, freeze the backbone, new head.
    checkpoint = distrain.load(args.checkpoint)
    transferred = SmallCNN(num_classes=4)
    transferred.load_state_dict(checkpoint["model"])
    transferred.backbone.requires_grad_(False)
    transferred.head = nn.Linear(16, 2)  # a new, trainable head for the new task
    frozen_before = {name: p.detach().clone() for name, p in transferred.backbone.named_parameters()}

    halves = quadrants // 2
    print(f"task B (half, 2 classes): accuracy with an untrained head {accuracy(transferred, images, halves):.3f}")
    trainable = [p for p in transferred.parameters() if p.requires_grad]
    head_optimizer = distrain.optim.Adam(trainable, lr=1e-2)
    train(transferred, head_optimizer, images, halves, args.steps)
    accuracy_b = accuracy(transferred, images, halves)
    print(f"task B after training only the head: accuracy {accuracy_b:.3f}")

    unchanged = all(bool((p == frozen_before[name]).all()) for name, p in transferred.backbone.named_parameters())
    print(f"frozen backbone unchanged: {unchanged}")
    return accuracy_a, accuracy_b, unchanged


if __name__ == "__main__":
    main()
