"""MobileNetV2 and MobileNetV3-small, adapted to any input size from 16 px up and to 1 or 3 channels.

Both are stacks of inverted residuals (Sandler et al. 2018): a 1x1 conv widens the block by an expansion
factor, a depthwise 3x3 (or 5x5) conv filters each channel on its own, a 1x1 conv narrows it back. That
costs a fraction of the multiply-accumulates of a plain 3x3 conv, which is the point for edge targets.
MobileNetV3 (Howard et al. 2019) adds squeeze-excitation and the hard-swish activation.

The ImageNet designs halve the resolution five times (224 -> 7). A 28-px image halved five times would be
1 px, so `stride_schedule` keeps only as many halvings as leave a final feature map of about 4 px and drops
the earliest ones: on small images the fine detail lives in the early, full-resolution layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLE_SLOTS = 5  # the stem and four stages halve the resolution in the ImageNet designs
FINAL_MAP = 4  # stop halving once the feature map is this small (px)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8 (what vector units like), never more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def stride_schedule(size: int) -> list[int]:
    """Stride of each downsampling slot for a `size`-px input: halve until the map is <= FINAL_MAP px.

    28 -> [1, 1, 2, 2, 2] (28 -> 14 -> 7 -> 4), 64 -> [1, 2, 2, 2, 2] (64 -> 4), 224 -> [2] * 5 (224 -> 7).
    """
    halvings = min(DOWNSAMPLE_SLOTS, max(0, math.ceil(math.log2(size / FINAL_MAP))))
    return [1] * (DOWNSAMPLE_SLOTS - halvings) + [2] * halvings


def _init_weights(model: nn.Module) -> None:
    # He init for convs (ReLU-family activations), unit BN, small classifier: the torchvision MobileNet init.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class ConvBNAct(nn.Sequential):
    """conv -> BN -> activation; `groups=channels` makes it depthwise. act=None: linear (a bottleneck output)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act=nn.ReLU6) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            act(inplace=True) if act is not None else nn.Identity(),
        )


class SqueezeExcite(nn.Module):
    """Reweight channels by a gate computed from their global average (Hu et al. 2018, MobileNetV3 form)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = make_divisible(channels / 4)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        gate = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1)
        gate = F.hardsigmoid(self.expand(F.relu(self.reduce(gate))))  # (N, C, 1, 1) in 0..1
        return x * gate


class InvertedResidual(nn.Module):
    """(N, cin, H, W) -> (N, cout, H/stride, W/stride); adds the input back when the shapes match."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int, kernel: int = 3, act=nn.ReLU6,
                 se: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBNAct(cin, hidden, act=act))  # expand: (N, hidden, H, W)
        # depthwise: (N, hidden, H/s, W/s)
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        # Linear bottleneck: no activation on the narrow output, a ReLU there would destroy information.
        layers.append(ConvBNAct(hidden, cout, act=None))  # project: (N, cout, H/s, W/s)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# MobileNetV2 stages: (expansion, channels, blocks, downsamples). The stem is downsampling slot 0.
V2_STAGES = [(1, 16, 1, False), (6, 24, 2, True), (6, 32, 3, True), (6, 64, 4, True), (6, 96, 3, False),
             (6, 160, 3, True), (6, 320, 1, False)]


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float, input_size: int) -> None:
        super().__init__()
        strides = iter(stride_schedule(input_size))
        stem = make_divisible(32 * width)
        self.stem = ConvBNAct(in_channels, stem, 3, next(strides))  # (N, C, H, W) -> (N, stem, H/s0, W/s0)
        blocks, cin = [], stem
        for expansion, channels, n, downsamples in V2_STAGES:
            cout = make_divisible(channels * width)
            for i in range(n):
                stride = next(strides) if downsamples and i == 0 else 1
                blocks.append(InvertedResidual(cin, cin * expansion, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*blocks)  # -> (N, 320 * width, ~4, ~4) for 28-64 px inputs
        # As in the paper, the 1280-wide head is not narrowed below width 1: it is what the classifier sees.
        self.num_features = make_divisible(1280 * max(1.0, width))
        self.head = ConvBNAct(cin, self.num_features)  # (N, num_features, h, w)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.num_features, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # pooled: (N, num_features)


# MobileNetV3-small blocks: (kernel, expanded, out, squeeze-excite, hard-swish, downsamples).
V3_SMALL_BLOCKS = [
    (3, 16, 16, True, False, True),
    (3, 72, 24, False, False, True),
    (3, 88, 24, False, False, False),
    (5, 96, 40, True, True, True),
    (5, 240, 40, True, True, False),
    (5, 240, 40, True, True, False),
    (5, 120, 48, True, True, False),
    (5, 144, 48, True, True, False),
    (5, 288, 96, True, True, True),
    (5, 576, 96, True, True, False),
    (5, 576, 96, True, True, False),
]


class MobileNetV3Small(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float, input_size: int) -> None:
        super().__init__()
        strides = iter(stride_schedule(input_size))
        stem = make_divisible(16 * width)
        self.stem = ConvBNAct(in_channels, stem, 3, next(strides), act=nn.Hardswish)  # (N, stem, H/s0, W/s0)
        blocks, cin = [], stem
        for kernel, expanded, out, se, hswish, downsamples in V3_SMALL_BLOCKS:
            cout = make_divisible(out * width)
            blocks.append(InvertedResidual(cin, make_divisible(expanded * width), cout,
                                           next(strides) if downsamples else 1, kernel,
                                           nn.Hardswish if hswish else nn.ReLU, se))
            cin = cout
        self.blocks = nn.Sequential(*blocks)  # -> (N, 96 * width, ~4, ~4) for 28-64 px inputs
        head = make_divisible(576 * width)
        self.head = ConvBNAct(cin, head, act=nn.Hardswish)  # (N, head, h, w)
        # V3 puts a wide fully connected layer after pooling, where it is cheap (1x1 spatially).
        self.num_features = 1024
        self.classifier = nn.Sequential(nn.Linear(head, self.num_features), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2), nn.Linear(self.num_features, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # pooled: (N, head)
