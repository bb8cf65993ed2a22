"""A torch twin of torchvision's BasicBlock ResNets, the oracle for distrain.models.resnet.

torchvision cannot be installed beside the pinned torch, so this is written here from the
architecture (He et al., 2015, as torchvision lays it out), with torchvision's attribute
names, which are what its state_dict keys are made of:

    conv1, bn1, relu, maxpool, layer1..layer4 (Sequentials of blocks), avgpool, fc
    block: conv1, bn1, relu, conv2, bn2, downsample (Sequential(1x1 conv, BatchNorm) or None)

`TORCHVISION_PARAMETER_COUNTS` are the published sizes of torchvision's resnet18/34 with
1000 classes, a check of this twin that does not depend on it.
"""
from __future__ import annotations

import torch
from torch import nn

TORCHVISION_PARAMETER_COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672}
BLOCKS_PER_STAGE = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


class TwinBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        projects = stride > 1 or inplanes != planes
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                         nn.BatchNorm2d(planes)) if projects else None)

    def forward(self, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + shortcut)


class TwinResNet(nn.Module):
    def __init__(self, arch, num_classes=1000, stem="imagenet", in_channels=3):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        widths = (64, 128, 256, 512)
        inplanes = 64
        for stage, (planes, count) in enumerate(zip(widths, BLOCKS_PER_STAGE[arch]), start=1):
            first_stride = 1 if stage == 1 else 2
            blocks = [TwinBlock(inplanes if i == 0 else planes, planes, first_stride if i == 0 else 1)
                      for i in range(count)]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomise_batch_norms(model, generator):
    """Give every BatchNorm non-trivial weights, biases and running statistics.

    Fresh BatchNorms hold weight 1, bias 0, mean 0, variance 1, under which a wrong
    mapping of these tensors (or eval mode not using the running statistics) goes unseen.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=generator)))
    return model
