"""The project's own CIFAR-10 teacher: a wide, shallow ResNet in the style of the fast CIFAR-10 recipes
("ResNet-9" of the DAWNBench entries, airbench), narrowed to train on two CPU cores.

conv-BN-ReLU stem at 32x32, then three stages, each a conv-BN-ReLU, a 2x2 max pool and one residual block
(two conv-BN-ReLU with an identity shortcut), then global max pooling and a linear classifier. Only 3x3 convs,
BatchNorm, ReLU, max pooling and adds: every layer is int8-friendly. For a 3x32x32 input, default widths:

    stem   3 ->  32 @32x32
    stage1 32 -> 64 @32x32, pool -> 16x16, residual block 64 @16x16
    stage2 64 -> 128 @16x16, pool -> 8x8, residual block 128 @8x8
    stage3 128 -> 256 @8x8, pool -> 4x4, residual block 256 @4x4
    global max pool, linear 256 -> 10

About 1.9 M parameters and 114 M MACs per image. `edgekit quantize ... --arch edgekit.zoo.cifar_net:cifar_net`
rebuilds it from a state_dict; models/cifar10_net.pt2 is the trained ExportedProgram (scripts/train_cifar10.py).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv (no bias), BatchNorm, ReLU; the resolution is kept."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + f(x) with f two conv-BN-ReLU layers at the same width (the ResNet-9 residual)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv_bn(ch, ch), conv_bn(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Stage(nn.Module):
    """conv-BN-ReLU to the new width, 2x2 max pool (halves the resolution), one residual block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_bn(in_ch, out_ch)
        self.pool = nn.MaxPool2d(2)
        self.res = Residual(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.pool(self.conv(x)))


class CifarNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = (32, 64, 128, 256),
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, widths[0])
        self.stages = nn.Sequential(*(Stage(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, classes)
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_net(num_classes: int = 10) -> CifarNet:
    """Factory for `--arch edgekit.zoo.cifar_net:cifar_net` (the CIFAR-10 teacher, models/cifar10_net.pt2)."""
    return CifarNet(num_classes=num_classes)
