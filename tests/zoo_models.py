"""The conformance zoo (issue 13, item 5): small image CNNs, one a common architecture pattern, for 3x32x32 CIFAR-10.

Each model is randomly initialised (a fixed seed); its BatchNorm running statistics are set by forward passes in
train mode over the repository's real CIFAR-10 calibration JPEGs (data/cifar10/calib; momentum None: the cumulative
average, not an exponential one); then only its output layer(s) are fitted for a few Adam steps on those images and
their labels (a probe on the fixed random features), so its outputs mean something: classifier logits with real
margins, a segmenter whose pixel classes follow the image. It is saved in eval mode as a torch.export
ExportedProgram (.pt2) with a dynamic batch dimension, the format edgekit loads.

    from tests.zoo_models import ZOO, build
    path = build("unet", tmp_dir)              # -> tmp_dir/unet.pt2

tests/test_zoo.py runs a fast subset through edgekit; `python benchmarks/zoo.py` runs all of them.
Keep each model small (<= ~0.5 M parameters): the whole zoo is quantized, compiled for every target and benched
in minutes on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parent.parent
CALIB_DIR = REPO / "data" / "cifar10" / "calib"  # 320 training JPEGs, 32 per class
TEST_DIR = REPO / "data" / "cifar10" / "test"  # 2,000 test JPEGs, 200 per class
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
MEAN_ARG, STD_ARG = ",".join(map(str, MEAN)), ",".join(map(str, STD))  # edgekit.ModelInputs(mean=..., std=...)
NUM_CLASSES = 10
SEG_CLASSES = 4
ANCHORS, GRID = 2, 8  # detector: 2 anchors on an 8x8 grid -> 128 boxes


# ---------------------------------------------------------------------------------------------------- building blocks

def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1,
            act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """features -> global average pool -> flatten -> Linear: the head most zoo classifiers share."""

    def __init__(self, features: nn.Module, channels: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, a residual add (1x1 conv-BN projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear project, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers = [conv_bn(cin, mid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(mid, mid, 3, stride, groups=mid, act=nn.ReLU6), conv_bn(mid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 reduce -> act -> 1x1 expand -> gate (hard-sigmoid: MobileNetV3, sigmoid:
    EfficientNet) -> channel-wise multiply."""

    def __init__(self, channels: int, squeeze: int, act: Callable[[], nn.Module],
                 gate: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.act = nn.Conv2d(channels, squeeze, 1), act()
        self.expand, self.gate = nn.Conv2d(squeeze, channels, 1), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """MobileNetV3 bneck / EfficientNet MBConv: expand -> depthwise -> SE -> project, residual when shapes match."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, act, se_act, se_gate) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1, act=act),
            conv_bn(mid, mid, k, stride, groups=mid, act=act),
            SqueezeExcite(mid, max(8, mid // 4), se_act, se_gate),
            conv_bn(mid, cout, 1, act=None),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet (v1) unit: grouped 1x1 conv -> channel shuffle -> 3x3 depthwise -> grouped 1x1 conv; a residual add
    (stride 1) or a concat with a 3x3 average-pooled shortcut (stride 2)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int = 4) -> None:
        super().__init__()
        self.groups, self.stride = groups, stride
        branch_out = cout - cin if stride == 2 else cout
        mid = cout // 4
        self.reduce = conv_bn(cin, mid, 1, groups=groups)
        self.dw = conv_bn(mid, mid, 3, stride, groups=mid, act=None)
        self.expand = conv_bn(mid, branch_out, 1, groups=groups, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.dw(channel_shuffle(self.reduce(x), self.groups)))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return F.relu(x + y)


class ChannelsLastLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's stem and downsampling norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm (channels last) -> Linear 4x -> GELU -> Linear -> layer scale -> residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pw2(self.act(self.pw1(y)))
        return x + y.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------------- the zoo

def plain() -> nn.Module:
    return Classifier(nn.Sequential(conv_bn(3, 16), conv_bn(16, 32, stride=2), conv_bn(32, 32),
                                    conv_bn(32, 64, stride=2), conv_bn(64, 64)), 64)


def resnet() -> nn.Module:
    return Classifier(nn.Sequential(conv_bn(3, 16), BasicBlock(16, 16), BasicBlock(16, 32, 2), BasicBlock(32, 32),
                                    BasicBlock(32, 64, 2)), 64)


def mobilenetv2() -> nn.Module:
    features = nn.Sequential(
        conv_bn(3, 16, act=nn.ReLU6),
        InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 2, 4), InvertedResidual(24, 24, 1, 4),
        InvertedResidual(24, 32, 2, 4), InvertedResidual(32, 32, 1, 4), InvertedResidual(32, 48, 1, 4),
        conv_bn(48, 160, 1, act=nn.ReLU6),
    )
    return Classifier(features, 160)


def mobilenetv3() -> nn.Module:
    hs, relu, hsig = nn.Hardswish, nn.ReLU, nn.Hardsigmoid
    features = nn.Sequential(
        conv_bn(3, 16, act=hs),
        MBConv(16, 16, 3, 1, 1, relu, relu, hsig), MBConv(16, 24, 3, 2, 3, relu, relu, hsig),
        MBConv(24, 24, 5, 1, 3, hs, relu, hsig), MBConv(24, 40, 5, 2, 3, hs, relu, hsig),
        MBConv(40, 40, 5, 1, 3, hs, relu, hsig), conv_bn(40, 160, 1, act=hs),
    )
    return Classifier(features, 160)


def efficientnet() -> nn.Module:
    silu, sig = nn.SiLU, nn.Sigmoid
    features = nn.Sequential(
        conv_bn(3, 16, act=silu),
        MBConv(16, 16, 3, 1, 1, silu, silu, sig), MBConv(16, 24, 3, 2, 4, silu, silu, sig),
        MBConv(24, 24, 3, 1, 4, silu, silu, sig), MBConv(24, 40, 5, 2, 4, silu, silu, sig),
        MBConv(40, 40, 5, 1, 4, silu, silu, sig), conv_bn(40, 160, 1, act=silu),
    )
    return Classifier(features, 160)


def shufflenet() -> nn.Module:
    features = nn.Sequential(conv_bn(3, 24), ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1), ShuffleUnit(48, 96, 2),
                             ShuffleUnit(96, 96, 1), ShuffleUnit(96, 96, 1))
    return Classifier(features, 96)


class Dilated(nn.Module):
    """Dilated 3x3 convs (rates 2, 4) keeping 16x16 resolution, then an ASPP-style sum of rates 1/2/4 branches."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16), conv_bn(16, 32, stride=2))
        self.body = nn.Sequential(conv_bn(32, 32, dilation=2), conv_bn(32, 32, dilation=4))
        self.aspp = nn.ModuleList([conv_bn(32, 48, dilation=d) for d in (1, 2, 4)])
        self.head = Classifier(nn.Identity(), 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        return self.head(sum(branch(x) for branch in self.aspp))


def dilated() -> nn.Module:
    return Dilated()


class UNet(nn.Module):
    """Two-level U-Net segmenter: max-pool down, ConvTranspose 2x2/2 up, skip concat; (N, 4, 32, 32) class scores."""

    def __init__(self, classes: int = SEG_CLASSES) -> None:
        super().__init__()
        self.enc1, self.enc2, self.mid = conv_bn(3, 16), conv_bn(16, 32), conv_bn(32, 64)  # one conv a level: CI-fast
        self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, 2), conv_bn(64, 32)
        self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, 2), conv_bn(32, 16)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.out(d1)


def unet() -> nn.Module:
    return UNet()


class UpsampleFPN(nn.Module):
    """Feature-pyramid style top-down path: nn.Upsample (nearest) and F.interpolate (bilinear) 2x, added to lateral
    1x1 convs, then a classifier head: ONNX Resize in both modes."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv_bn(3, 16)  # 32x32
        self.c2 = conv_bn(16, 32, stride=2)  # 16x16
        self.c3 = conv_bn(32, 64, stride=2)  # 8x8
        self.lat2, self.lat1 = nn.Conv2d(32, 32, 1), nn.Conv2d(16, 32, 1)
        self.top = nn.Conv2d(64, 32, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.smooth = conv_bn(32, 32, stride=2)
        self.head = Classifier(nn.Identity(), 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.c1(x)
        f2 = self.c2(f1)
        f3 = self.c3(f2)
        p2 = self.lat2(f2) + self.up(self.top(f3))
        p1 = self.lat1(f1) + F.interpolate(p2, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(self.smooth(p1))


def upsample() -> nn.Module:
    return UpsampleFPN()


class Pooling(nn.Module):
    """MaxPool 2x2, AvgPool 2x2, a 3x3/1 max pool, and global average + global max pooling concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.b1, self.b2, self.b3 = conv_bn(3, 16), conv_bn(16, 32), conv_bn(32, 64)
        self.fc = nn.Linear(128, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.b1(x), 2)  # 16x16
        x = F.avg_pool2d(self.b2(x), 2)  # 8x8
        x = F.max_pool2d(self.b3(x), 3, 1, 1)
        pooled = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)
        return self.fc(torch.flatten(pooled, 1))


def pooling() -> nn.Module:
    return Pooling()


def flatten_linear() -> nn.Module:
    """LeNet/VGG style: conv + max pool twice, nn.Flatten of the 8x8 map, Linear -> ReLU -> Linear."""
    return nn.Sequential(conv_bn(3, 16), nn.MaxPool2d(2), conv_bn(16, 16), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Sequential(nn.Linear(16 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES)))


class ConvNeXt(nn.Module):
    """ConvNeXt-style: 2x2/2 patchify stem + LayerNorm, two stages of blocks, LayerNorm + 2x2/2 conv downsampling,
    global average pool, LayerNorm, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 2, 2), ChannelsLastLayerNorm(32))
        self.stage1 = nn.Sequential(ConvNeXtBlock(32), ConvNeXtBlock(32))
        self.down = nn.Sequential(ChannelsLastLayerNorm(32), nn.Conv2d(32, 64, 2, 2))
        self.stage2 = nn.Sequential(ConvNeXtBlock(64), ConvNeXtBlock(64))
        self.norm, self.fc = nn.LayerNorm(64, eps=1e-6), nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(self.norm(x.mean((2, 3))))


def convnext() -> nn.Module:
    return ConvNeXt()


class SoftmaxClassifier(nn.Module):
    """A classifier whose graph ends in Softmax: it outputs probabilities, not logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = plain()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.net(x))


def softmax() -> nn.Module:
    return SoftmaxClassifier()


class DetectorHead(nn.Module):
    """SSD-style single-scale detector: a backbone to an 8x8 grid, a box head and a class head (3x3 convs),
    reshaped to (boxes (N, A, 4), scores (N, A, K)) with A = 8 * 8 * 2 anchors, K = 10 classes: a tuple output."""

    def __init__(self, anchors: int = ANCHORS, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.anchors, self.classes = anchors, classes
        self.backbone = nn.Sequential(conv_bn(3, 16), conv_bn(16, 32, stride=2), conv_bn(32, 32),
                                      conv_bn(32, 64, stride=2), conv_bn(64, 64))
        self.box = nn.Conv2d(64, anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(64, anchors * classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        n = f.shape[0]
        boxes = self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        scores = self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.classes)
        return boxes, scores


def detector() -> nn.Module:
    return DetectorHead()


class DictOutput(nn.Module):
    """A ResNet-style backbone returning {"logits": (N, 10), "embedding": (N, 32)}: a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
        self.fc, self.proj = nn.Linear(64, NUM_CLASSES), nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return {"logits": self.fc(feat), "embedding": self.proj(feat)}


def dict_output() -> nn.Module:
    return DictOutput()


class InceptionBlock(nn.Module):
    """Parallel 1x1, 3x3, double-3x3 and 3x3-max-pool + 1x1 branches, concatenated on channels."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.b1 = conv_bn(cin, width, 1)
        self.b3 = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width))
        self.b5 = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width), conv_bn(width, width))
        self.bp = conv_bn(cin, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(F.max_pool2d(x, 3, 1, 1))], 1)


def inception() -> nn.Module:
    return Classifier(nn.Sequential(conv_bn(3, 32, stride=2), InceptionBlock(32, 16), nn.MaxPool2d(2),
                                    InceptionBlock(64, 24)), 96)


def activations() -> nn.Module:
    """Less common activations: LeakyReLU, PReLU (learned slopes), ELU, Tanh and a Sigmoid-gated (GLU-like) product."""

    class Gated(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.value, self.gate = conv_bn(c, c, act=None), conv_bn(c, c, act=None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))

    features = nn.Sequential(conv_bn(3, 16, act=lambda: nn.LeakyReLU(0.1)), conv_bn(16, 32, stride=2, act=None),
                             nn.PReLU(32), conv_bn(32, 64, stride=2, act=nn.ELU), Gated(64))
    return Classifier(features, 64)


class ArgmaxSegmenter(nn.Module):
    """The U-Net with the argmax taken inside the model: an int64 class map (N, 32, 32) out. A common export habit
    that leaves nothing real-valued to compare int8 with fp32 on; edgekit refuses it (exit 2, one line)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = UNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).argmax(1)


def argmax_seg() -> nn.Module:
    return ArgmaxSegmenter()


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    covers: str  # the ops / pattern it exercises, for ZOO.md
    output: str  # "logits", "probabilities", "dense", "detect", "dict": how its head is fitted and judged
    head: str  # the output module fitted on the real images (everything before it keeps its random init)


ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("plain", plain, "Conv, BatchNorm, ReLU, global avg pool, Linear", "logits", "fc"),
    ZooEntry("resnet", resnet, "residual add, 1x1 projection shortcut", "logits", "fc"),
    ZooEntry("mobilenetv2", mobilenetv2, "depthwise + pointwise, ReLU6, inverted residual", "logits", "fc"),
    ZooEntry("mobilenetv3", mobilenetv3, "squeeze-excitation (hard-sigmoid gate), hard-swish, 5x5 depthwise",
             "logits", "fc"),
    ZooEntry("efficientnet", efficientnet, "MBConv, SiLU, squeeze-excitation (sigmoid gate)", "logits", "fc"),
    ZooEntry("shufflenet", shufflenet, "grouped 1x1 conv, channel shuffle (reshape/transpose), concat shortcut",
             "logits", "fc"),
    ZooEntry("dilated", dilated, "dilated 3x3 conv (rates 2, 4), ASPP-style branch sum", "logits", "head.fc"),
    ZooEntry("unet", unet, "ConvTranspose 2x2/2, skip concat, max pool; dense (N, 4, 32, 32) output", "dense",
             "out"),
    ZooEntry("upsample", upsample, "Upsample nearest + interpolate bilinear (Resize), FPN adds", "logits",
             "head.fc"),
    ZooEntry("pooling", pooling, "MaxPool, AvgPool, 3x3/1 max pool, global avg + global max pool", "logits", "fc"),
    ZooEntry("flatten_linear", flatten_linear, "nn.Flatten of a feature map, Linear -> ReLU -> Linear (MLP head)",
             "logits", "5"),
    ZooEntry("convnext", convnext, "7x7 depthwise, LayerNorm (channels last), GELU, layer scale, patchify stem",
             "logits", "fc"),
    ZooEntry("softmax", softmax, "ends in Softmax (probabilities out)", "probabilities", "net.fc"),
    ZooEntry("detector", detector, "two outputs: boxes (N, 128, 4), scores (N, 128, 10); permute + reshape", "detect",
             "cls"),
    ZooEntry("dict_output", dict_output, "dict output {logits (N, 10), embedding (N, 32)}", "dict", "fc"),
    ZooEntry("inception", inception, "parallel branches + channel concat, 3x3/1 max pool branch", "logits", "fc"),
    ZooEntry("activations", activations, "LeakyReLU, PReLU, ELU, Tanh x Sigmoid gate", "logits", "fc"),
    ZooEntry("argmax_seg", argmax_seg, "argmax inside the model: int64 class map (N, 32, 32) out (expected refusal)",
             "dense", "net.out"),
]}


# ---------------------------------------------------------------------------------------------------- real images

def load_images(folder: Path = CALIB_DIR, per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x normalised (N, 3, 32, 32) float32, labels (N,)) from a folder of class sub-folders, in sorted order."""
    xs, ys = [], []
    for label, cls in enumerate(sorted(p for p in Path(folder).iterdir() if p.is_dir())):
        files = sorted(cls.glob("*.jpg"))[:per_class]
        for f in files:
            with Image.open(f) as img:
                xs.append(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
            ys.append(label)
    if not xs:
        raise FileNotFoundError(f"no class folders of .jpg images in {folder}")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x.contiguous(), torch.tensor(ys)


def pixel_classes(x: torch.Tensor) -> torch.Tensor:
    """The segmenter's per-pixel target, from the image itself: 0 dark (luminance < 0.3), else 1 + the dominant of
    R, G, B. Cheap, real, and learnable by a small conv net, so pixel agreement is measured on decided pixels."""
    rgb = x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    return torch.where(rgb.mean(1) < 0.3, torch.zeros_like(rgb[:, 0], dtype=torch.long), 1 + rgb.argmax(1))


def head_target(kind: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What a zoo model's head is fitted to (`kind` is ZooEntry.output): the class label, or for the segmenter the
    per-pixel classes of the image."""
    return pixel_classes(x) if kind == "dense" else y


def head_loss(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss of a zoo model's head output `out` against head_target()."""
    if kind in ("logits", "probabilities", "dict", "dense"):  # the head gives the logits (Softmax comes after it)
        return F.cross_entropy(out, target)
    if kind == "detect":  # every anchor scores the image's class; the box regressor stays as initialised
        scores = out.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        return F.cross_entropy(scores, target.repeat_interleave(len(scores) // len(target)))
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------------- build + save

FIT_STEPS, FIT_BATCH, LR = 200, 64, 1e-2


def make(name: str, images: tuple[torch.Tensor, torch.Tensor] | None = None, steps: int = FIT_STEPS,
         seed: int = 0) -> nn.Module:
    """The zoo model `name`, in eval mode: seeded random init; BatchNorm statistics set by forward passes (train
    mode, cumulative average) over the real calibration images; then only its output module (`ZooEntry.head`)
    fitted for `steps` Adam steps on those images and their labels: a probe on the fixed random features, so the
    outputs mean something (classifier logits with real margins) at the cost of a second, not minutes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only contend, badly so on a busy 2-core machine
    try:
        return _make(ZOO[name], images if images is not None else load_images(CALIB_DIR), steps, seed)
    finally:
        torch.set_num_threads(threads)


def _make(entry: ZooEntry, images: tuple[torch.Tensor, torch.Tensor], steps: int, seed: int) -> nn.Module:
    x, y = images
    torch.manual_seed(seed)
    model = entry.factory()
    set_bn_stats(model, x)  # leaves it in eval mode: the features before the head are fixed from here on
    head = model.get_submodule(entry.head)
    captured = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    with torch.no_grad():
        for start in range(0, len(x), 64):
            model(x[start:start + 64])
    hook.remove()
    features, target = torch.cat(captured), head_target(entry.output, x, y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (FIT_BATCH,), generator=gen)
        loss = head_loss(entry.output, head(features[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def set_bn_stats(model: nn.Module, x: torch.Tensor, batch: int = 64) -> None:
    """Reset every BatchNorm's running mean/var and recompute them as the plain average over batches of `x`
    (momentum None), in train mode without gradients; the weights are not touched."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch):
            model(x[start:start + batch])
    model.eval()


def save(model: nn.Module, path: Path) -> Path:
    """An ExportedProgram with a dynamic batch dimension (the file format edgekit's tests use)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = torch.zeros(2, 3, 32, 32)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return Path(path)


def build(name: str, out_dir: Path, images: tuple[torch.Tensor, torch.Tensor] | None = None,
          steps: int = FIT_STEPS) -> Path:
    """make(name) saved as out_dir/<name>.pt2; returns the path."""
    return save(make(name, images, steps), Path(out_dir) / f"{name}.pt2")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
