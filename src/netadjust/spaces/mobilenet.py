"""MobileNetV2 (Sandler et al. 2018) and MnasNet-B1 (Tan et al. 2019), ImageNet and
small-input forms.

Both are a stem conv, seven stages of inverted-residual blocks (1x1 expansion conv,
depthwise kxk conv, 1x1 projection conv, each with batch norm; ReLU6 in MobileNetV2, ReLU
in MnasNet), a 1x1 conv to 1280 channels, global pool, dropout 0.2 and a linear classifier.
Inside a stage every block after the first adds its input to its output.

Searchable widths:
- ``stage{s}.block{b}.expand``: the expansion width of a block (the expansion conv's
  output and the depthwise conv, one width). Dropped after the depthwise conv's batch
  norm, which removes the channel from the projection's input. A block with expansion
  ratio 1 has no expansion conv; its depthwise conv works on the stage's input width.
- ``stage{s}.out``: the output width of a stage, shared by all its blocks because
  residual additions tie them. Dropped at every block output of the stage (one shared
  ``ChannelTap``), so the channel leaves the whole residual stream of the stage.
The stem (32 channels) and the last conv (1280, kept for width multipliers below 1 as in
MobileNetV2) are not searched. The small-input form (for 32x32 or 28x28 data) has a
stride-1 stem and a stride-1 second stage, so 32x32 inputs end at 4x4.
MnasNet here is MnasNet-B1 (no squeeze-and-excitation), the variant torchvision ships.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import nn

from .registry import ChannelTap, ModelSpec, SearchSpace, StagedModel, Widths, register
from .resnet_cifar import scaled

STEM, LAST = 32, 1280


@dataclass(frozen=True)
class Stage:
    expansion: int  # expansion ratio of the blocks' hidden width over their input width
    width: int  # output width of every block
    blocks: int
    stride: int  # of the first block
    kernel: int  # of the depthwise convs


MOBILENET_V2 = (
    Stage(1, 16, 1, 1, 3),
    Stage(6, 24, 2, 2, 3),
    Stage(6, 32, 3, 2, 3),
    Stage(6, 64, 4, 2, 3),
    Stage(6, 96, 3, 1, 3),
    Stage(6, 160, 3, 2, 3),
    Stage(6, 320, 1, 1, 3),
)
MNASNET_B1 = (
    Stage(1, 16, 1, 1, 3),
    Stage(3, 24, 3, 2, 3),
    Stage(3, 40, 3, 2, 5),
    Stage(6, 80, 3, 2, 5),
    Stage(6, 96, 2, 1, 3),
    Stage(6, 192, 4, 2, 5),
    Stage(6, 320, 1, 1, 3),
)


def conv_bn(in_width: int, out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_width, out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(out)]


class InvertedResidual(nn.Module):
    """(expand 1x1 -> BN -> act ->) depthwise kxk -> BN -> act -> project 1x1 -> BN
    (+ input), then the stage's channel tap."""

    def __init__(self, in_width, hidden, out, stage: Stage, first: bool, act: type[nn.Module], tap):
        super().__init__()
        self.expand = nn.Sequential(*conv_bn(in_width, hidden), act()) if stage.expansion > 1 else None
        stride = stage.stride if first else 1
        depthwise = conv_bn(hidden, hidden, stage.kernel, stride, groups=hidden)
        self.depthwise = nn.Sequential(*depthwise, act())
        self.project = nn.Sequential(*conv_bn(hidden, out))
        self.residual = not first
        self.tap = tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return self.tap(x + h if self.residual else h)


class MobileNet(StagedModel):
    def __init__(self, spec: ModelSpec, widths: Widths, stages: tuple[Stage, ...], act, small: bool):
        super().__init__()
        stem = scaled(STEM, spec.width_mult)
        self.stem = nn.Sequential(*conv_bn(spec.in_channels, stem, 3, 1 if small else 2), act())
        self.drop_sites: dict[str, str] = {}
        stream = stem
        for s, stage in enumerate(stages, start=1):
            out = widths[f"stage{s}.out"]
            tap = ChannelTap()
            blocks = OrderedDict()
            if small and s == 2:
                stage = replace(stage, stride=1)
            for b in range(stage.blocks):
                expand = f"stage{s}.block{b}.expand"
                hidden = widths[expand] if stage.expansion > 1 else stream
                if stage.expansion > 1:
                    self.drop_sites[expand] = f"stage{s}.block{b}.depthwise.1"
                if b == 0:
                    self.drop_sites[f"stage{s}.out"] = f"stage{s}.block0.tap"
                blocks[f"block{b}"] = InvertedResidual(stream, hidden, out, stage, b == 0, act, tap)
                stream = out
            setattr(self, f"stage{s}", nn.Sequential(blocks))
        self.stages = len(stages)
        last = max(LAST, scaled(LAST, spec.width_mult))
        self.head = nn.Sequential(
            *conv_bn(stream, last),
            act(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(last, spec.num_classes),
        )


def make_space(name: str, title: str, stages: tuple[Stage, ...], act, small: bool) -> SearchSpace:
    def base_widths(spec: ModelSpec) -> Widths:
        result, stream = {}, scaled(STEM, spec.width_mult)
        for s, stage in enumerate(stages, start=1):
            for b in range(stage.blocks):
                if stage.expansion > 1:
                    result[f"stage{s}.block{b}.expand"] = stage.expansion * stream
                if b == 0:  # forward order: the stage's width first appears at its first block's output
                    result[f"stage{s}.out"] = stream = scaled(stage.width, spec.width_mult)
        return result

    expanding = sum(stage.blocks for stage in stages if stage.expansion > 1)
    form = "small-input form (stride-1 stem and second stage)" if small else "ImageNet form"
    return SearchSpace(
        name=name + ("-small" if small else ""),
        description=f"{title}, {form}, {expanding + len(stages)} searchable widths",
        base_widths=base_widths,
        build=lambda spec, widths: MobileNet(spec, widths, stages, act, small),
    )


for _small in (False, True):
    register(make_space("mobilenetv2", "MobileNetV2", MOBILENET_V2, nn.ReLU6, _small))
    register(make_space("mnasnet", "MnasNet-B1", MNASNET_B1, nn.ReLU, _small))
