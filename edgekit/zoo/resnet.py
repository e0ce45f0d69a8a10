"""A small ResNet for low-resolution images (28-64 px), the bundled default teacher.

Three stages of two BasicBlocks (He et al. 2016) at full, 1/2 and 1/4 resolution. For a 28x28 input:
stem 1->32 @28x28, stage1 32 @28x28, stage2 64 @14x14, stage3 128 @7x7, global pool, linear.
About 0.7 M parameters and 87 M MACs: big enough to reach ~93 % on Fashion-MNIST, small enough to
train on two CPU cores in well under an hour.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut. `shortcut` replaces the default (a 1x1 projection where the shape
    changes, the paper's option B), e.g. with cifar_resnet's weightless option A."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        # A 1x1 projection only where the shape changes; identity otherwise.
        self.shortcut: nn.Module = nn.Identity()
        if shortcut is not None and (stride != 1 or in_ch != out_ch):
            self.shortcut = shortcut
        elif stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, prev = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(prev, width, stride), BasicBlock(width, width, 1)]
            prev = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def fashion_resnet(in_channels: int = 1, num_classes: int = 10) -> SmallResNet:
    """Factory for `--arch edgekit.zoo.resnet:fashion_resnet` (the bundled teacher)."""
    return SmallResNet(in_channels=in_channels, num_classes=num_classes)
