"""`resnet18`, `resnet34`: torchvision's BasicBlock ResNets, with torchvision's parameter and buffer names.

The names are the contract: `conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.bn2`,
`layer2.0.downsample.0` (the 1x1 projection) and `.1` (its BatchNorm), `fc`, and each
BatchNorm's `running_mean`, `running_var`, `num_batches_tracked`. A torchvision state_dict
therefore loads with a strict `load_state_dict`, and a distrain one loads into torchvision.
Modules without state (`relu`, `maxpool`, `avgpool`) keep torchvision's names too, so the
printed model reads like torchvision's.

The "cifar" stem is the usual variant for 32x32 images (a 3x3 stride-1 `conv1` and no max
pooling, so layer1 sees the full 32x32 map instead of 8x8): the names are unchanged, only
`conv1.weight`'s shape differs, and `maxpool` is an Identity.

Initialisation is torchvision's: convolutions kaiming_normal_ (fan_out, relu), BatchNorm
weight 1 and bias 0, the Linear head PyTorch's default; `zero_init_residual` zeroes each
block's last BatchNorm weight, so every block starts as the identity (Goyal et al., 2017).
"""
from __future__ import annotations

import distrain.nn as nn

from . import arguments
from .registry import register

STEMS = ("imagenet", "cifar")


def conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the input (projected by `downsample` when the shape changes), then ReLU."""

    expansion = 1  # torchvision's name: output channels per `planes` (4 in the Bottleneck of ResNet-50)

    def __init__(self, in_channels, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))
        else:
            self.downsample = None
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A BasicBlock ResNet: stem, four stages of `layers[i]` blocks (64, 128, 256, 512 channels), pooling, `fc`.

    Args:
        layers: blocks per stage, e.g. [2, 2, 2, 2] for ResNet-18.
        num_classes: outputs of `fc` (default 1000, ImageNet's).
        stem: "imagenet" (7x7 stride-2 conv, 3x3 stride-2 max pooling) or "cifar" (3x3 stride-1 conv, no pooling).
        in_channels: input image channels (default 3); or give `input_shape` (C, H, W).
        zero_init_residual: start each block's last BatchNorm weight at 0 (default False).
    """

    def __init__(self, layers, num_classes=1000, stem="imagenet", in_channels=None, zero_init_residual=False,
                 input_shape=None, name="resnet"):
        super().__init__()
        shape = arguments.image_shape(name, input_shape)
        channels = arguments.given_or_derived(name, "in_channels", in_channels, shape and shape[0], default=3)
        num_classes = arguments.integer(name, "num_classes", num_classes)
        arguments.choice(name, "stem", stem, STEMS)
        arguments.flag(name, "zero_init_residual", zero_init_residual)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        in_planes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_planes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        self._initialise(zero_init_residual)

    def _initialise(self, zero_init_residual):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register("resnet18")
def resnet18(num_classes=1000, stem="imagenet", in_channels=None, zero_init_residual=False, input_shape=None):
    """ResNet-18 (He et al., 2015): BasicBlocks [2, 2, 2, 2], 11.7 M parameters with 1000 classes.

    Example::

        >>> model = distrain.models.create("resnet18", num_classes=10, stem="cifar")
        >>> model(distrain.randn(2, 3, 32, 32)).shape
        distrain.Size([2, 10])
    """
    return ResNet([2, 2, 2, 2], num_classes, stem, in_channels, zero_init_residual, input_shape, name="resnet18")


@register("resnet34")
def resnet34(num_classes=1000, stem="imagenet", in_channels=None, zero_init_residual=False, input_shape=None):
    """ResNet-34: BasicBlocks [3, 4, 6, 3], 21.8 M parameters with 1000 classes (see resnet18)."""
    return ResNet([3, 4, 6, 3], num_classes, stem, in_channels, zero_init_residual, input_shape, name="resnet34")
