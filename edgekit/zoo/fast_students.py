"""Students that are fast at small inputs (16-64 px) in int8 at batch 1: few, wide stages of few large ops.

At 28-32 px a batch-1 call of a small CNN costs as much in per-op overhead (kernel dispatch, reorders,
re-quantization between layers) and in streaming weights as in arithmetic, so a student made of many small ops
(MobileNet's 11-17 inverted residuals with squeeze-excitation and hard-swish) can be slower in int8 than a teacher
of fewer, larger convolutions though it has 5x fewer MACs (issue 14: openvino int8 0.41 vs 0.29 ms). These designs
spend their ops where they pay:

- a stride-2 stem: the first conv runs at half the input size (a full-resolution stem at 32 px was 12 % of the
  teacher's whole .tflite latency in XNNPACK), and three stages after it, the last two entered by a stride-2 conv;
- one block per stage at most, and none in the last (at 4 px, where its weights cost more time than its MACs);
- plain ReLU / ReLU6 only, which every int8 runtime fuses into the convolution before it, and no
  squeeze-excitation (a global pool, two tiny matmuls and a gate multiply: four ops of almost no arithmetic);
- BatchNorm, folded into the convolutions at export.

Two families, a few widths each (`edgekit students --target openvino --teacher T` times them on the target):

  resnet_s    ResNet-style: stem conv, then per stage a 3x3 conv (stride 2 from the second) and, in the first
              two, one basic block (two 3x3 convs and the residual add, which fuses into the convolution in
              OpenVINO and XNNPACK). Widths (stem, stages) = (32, 64, 128, 128) x width.
  mbv2_s      MobileNetV2-style with fewer, wider stages: stem conv, then 1 + 2 + 2 inverted residuals (1x1
              expand x4, depthwise 3x3, 1x1 project; ReLU6) at (48, 96, 192) x width channels, a 1x1 head to 384.
              Fewer MACs than resnet_s at the same width, more ops, and depthwise convs, which int8 CPU kernels
              run at a fraction of a dense conv's efficiency: slower per MAC at these sizes.

Measured at 32x32x3, 10 classes, against a ResNet-9-style teacher of 1.9 M parameters and 114 M MACs (docs/distill.md
has the table): resnet_s_100 (0.61 M parameters, 50 M MACs) 2.6x faster in .tflite int8 (LiteRT + XNNPACK) and
2.9x in OpenVINO int8; MobileNetV2 0.5 and MobileNetV3-small 1.0 were 0.5-0.6x, i.e. slower than the teacher.

The stride schedule follows the input: halve until the final map is at most 4 px, taking the stage 3, stage 2,
stem and stage 1 strides in that order (16 px: stages 2 and 3; 28-32 px: also the stem; 64 px: all four), and
above 64 px a max pool after the stem as well.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .mobilenet import ConvBNAct, InvertedResidual, _init_weights, make_divisible

FINAL_MAP = 4  # px: stop halving once the feature map is this small


def strides(size: int) -> tuple[int, bool, list[int]]:
    """(stem stride, max pool after the stem, the three stages' strides) for a `size`-px input.

    16 -> (1, False, [1, 2, 2]), 28/32 -> (2, False, [1, 2, 2]), 64 -> (2, False, [2, 2, 2]), 224 -> (2, True, [2]*3).
    """
    halvings = min(5, max(0, math.ceil(math.log2(size / FINAL_MAP))))
    # slot order in which halvings are taken: stage 3, stage 2, stem, stage 1
    stem = 2 if halvings >= 3 else 1
    stages = [2 if halvings >= 4 else 1, 2 if halvings >= 2 else 1, 2 if halvings >= 1 else 1]
    return stem, halvings >= 5, stages


class BasicBlock(nn.Module):
    """ReLU(x + BN(conv(ReLU(BN(conv(x)))))): the ResNet basic block at one width and resolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(ch, ch, 3, act=nn.ReLU)
        self.conv2 = ConvBNAct(ch, ch, 3, act=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class ResNetS(nn.Module):
    """stem 3x3 conv -> 3 x [3x3 conv, `blocks[i]` basic blocks] -> global average pool -> linear."""

    BASE = (32, 64, 128, 128)  # stem, stage 1, 2, 3
    BLOCKS = (1, 1, 0)

    def __init__(self, in_channels: int, num_classes: int, width: float, input_size: int) -> None:
        super().__init__()
        stem_stride, pool, stage_strides = strides(input_size)
        widths = [make_divisible(w * width) for w in self.BASE]
        layers: list[nn.Module] = [ConvBNAct(in_channels, widths[0], 3, stem_stride, act=nn.ReLU)]
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        for cin, cout, stride, blocks in zip(widths[:-1], widths[1:], stage_strides, self.BLOCKS):
            layers.append(ConvBNAct(cin, cout, 3, stride, act=nn.ReLU))  # (N, cout, H/s, W/s)
            layers += [BasicBlock(cout) for _ in range(blocks)]
        self.features = nn.Sequential(*layers)  # -> (N, 128 * width, ~4, ~4) for 28-64 px inputs
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class MobileNetV2S(nn.Module):
    """stem 3x3 conv -> 3 stages of inverted residuals (expansion 4, ReLU6; the first of a stage strided) -> 1x1
    head -> global average pool -> linear."""

    STEM, HEAD = 32, 384  # the head is not narrowed below 384: it is what the classifier sees
    STAGES = ((48, 1), (96, 2), (192, 2))  # (channels, blocks)
    EXPANSION = 4

    def __init__(self, in_channels: int, num_classes: int, width: float, input_size: int) -> None:
        super().__init__()
        stem_stride, pool, stage_strides = strides(input_size)
        cin = make_divisible(self.STEM * width)
        layers: list[nn.Module] = [ConvBNAct(in_channels, cin, 3, stem_stride)]
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        for (channels, n), stride in zip(self.STAGES, stage_strides):
            cout = make_divisible(channels * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cin * self.EXPANSION, cout, stride if i == 0 else 1))
                cin = cout
        head = make_divisible(self.HEAD * max(1.0, width))
        layers.append(ConvBNAct(cin, head))  # (N, head, h, w)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
