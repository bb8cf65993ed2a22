"""`cnn`: a small convolutional network for small images (8x8 digits, 28x28 MNIST, 32x32 CIFAR).

Conv-BN-ReLU blocks, each after the first halving the resolution and doubling the channels
until the feature map is at most 4x4, then global average pooling and one linear layer.
The depth follows the image size, so the same few lines serve an 8x8 digit (two blocks)
and a 32x32 CIFAR image (four). It is the trainer's default model: on scikit-learn's digits
(1438 training, 359 held-out images) 20-30 epochs of Adam at batch 32 reach 98-99% in
4-6 s on two CPU cores.
"""
from __future__ import annotations

import distrain.nn as nn

from . import arguments
from .registry import register

SMALLEST_MAP = 4  # stop halving once the feature map is this small: pooling a 4x4 map still sees position


def conv_bn_relu(in_channels, out_channels, stride):
    """3x3 convolution (no bias: BatchNorm's shift replaces it), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


@register("cnn")
class SmallCNN(nn.Module):
    """A small CNN: `features` (Conv-BN-ReLU blocks), global average `pool`, `flatten`, linear `classifier`.

    Args:
        in_channels: image channels (default 3); or give `input_shape` (C, H, W).
        num_classes: the number of outputs (logits), default 10.
        width: channels of the first block (default 32); each later block doubles them.
        input_size: the image height/width the depth is chosen for (default 32; taken from
            `input_shape` when given). Other sizes still run (the pooling is global), the
            depth is just tuned for this one.

    Example::

        >>> model = distrain.models.create("cnn", input_shape=(1, 8, 8), num_classes=10)
        >>> model(distrain.randn(4, 1, 8, 8)).shape
        distrain.Size([4, 10])
    """

    def __init__(self, in_channels=None, num_classes=10, width=32, input_size=None, input_shape=None):
        super().__init__()
        name = "cnn"
        shape = arguments.image_shape(name, input_shape)
        channels = arguments.given_or_derived(name, "in_channels", in_channels, shape and shape[0], default=3)
        size = arguments.given_or_derived(name, "input_size", input_size, shape and min(shape[1:]), default=32)
        out_channels = arguments.integer(name, "width", width)
        blocks = [conv_bn_relu(channels, out_channels, stride=1)]
        while size > SMALLEST_MAP:
            blocks.append(conv_bn_relu(out_channels, 2 * out_channels, stride=2))
            out_channels, size = 2 * out_channels, (size + 1) // 2
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(out_channels, arguments.integer(name, "num_classes", num_classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))
