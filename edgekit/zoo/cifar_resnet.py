"""The CIFAR ResNets of He et al. 2016 (section 4.2), as the widely used published checkpoints define them.

6n+2 layers: a 3x3 stem to 16 channels, three stages of n BasicBlocks at 16, 32 and 64 channels (32x32, 16x16,
8x8 for a 32x32 input), global average pooling and a linear classifier. The shortcut is the paper's option A:
identity, and where a stage halves the resolution and doubles the channels, stride-2 subsampling padded with zero
channels, so the shortcut has no weights. Names follow the akamaster/pytorch_resnet_cifar10 checkpoints
(BSD-2-Clause; conv1, bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}, linear), so their state_dicts load as
published: `edgekit quantize resnet20.th --arch edgekit.zoo.cifar_resnet:resnet20 ...`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .resnet import BasicBlock


class ShortcutA(nn.Module):
    """Option A: x[:, :, ::2, ::2] with (out - in) / 2 zero channels on each side; no weights."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, (out_ch - in_ch) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C + 2 pad, H / s, W / s)
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_ch = [], 16
        for out_ch, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks_per_stage):
                s = stride if i == 0 else 1
                layers.append(BasicBlock(in_ch, out_ch, s, shortcut=ShortcutA(in_ch, out_ch, s)))
                in_ch = out_ch
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 32, 32) -> (N, classes)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        # adaptive pooling: the same as the original's avg_pool2d over the whole 8x8 map, at any input size
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(3, num_classes)


def resnet32(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(5, num_classes)


def resnet44(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(7, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(9, num_classes)
