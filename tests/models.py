"""Small CNNs for tests: fast to export, calibrate and run, but real conv nets (BN, residual, pooling).

`--arch tests.models:tiny_cnn` works from the repository root (the CLI puts the cwd on sys.path).
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.stem(x)
        x = x + self.block(x)  # a residual add, as in the real models
        x = self.down(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def tiny_cnn() -> TinyCNN:
    return TinyCNN(1, 10)


def tiny_cnn_rgb() -> TinyCNN:
    return TinyCNN(3, 10)


def not_a_module():
    return "not a model"
