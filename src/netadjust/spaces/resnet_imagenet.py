"""ResNet-18 and ResNet-34 in the ImageNet form (He et al. 2016), and a small-input form.

Four stages of basic blocks (2-2-2-2 or 3-4-6-3) at base widths 64/128/256/512, each
block's two 3x3 convs searchable. The first block of stages 2-4 strides and carries a 1x1
stride-2 projection (conv + batch norm) to its output width; inside a stage the
shortcuts are parameter-free, zero-padded as in the CIFAR ResNets ("max" or "local").
ImageNet form: 7x7 stride-2 stem and 3x3 stride-2 max-pool. Small-input form
(``-small``, for 32x32 or 28x28 data): a 3x3 stride-1 stem and no max-pool. The stem
(in_channels -> 64 * width_mult) is not searched.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, SearchSpace, StagedModel, Widths, register
from .resnet_cifar import BasicBlock, Head, Sources, add_stages, checked_padding, scaled

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class ProjectedBlock(BasicBlock):
    """A basic block whose shortcut is a strided 1x1 conv and batch norm to its output width."""

    def __init__(self, in_width: int, mid: int, out: int, stride: int):
        super().__init__(in_width, mid, out, stride, shortcut="projection")
        self.out_width = out
        self.project = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_width, out, 1, stride, bias=False),
                bn=nn.BatchNorm2d(out),
            )
        )

    def merge(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.relu(self.project(x) + y, inplace=True)

    def channel_sources(self, prefix: str, stream: str | None) -> Sources:
        conv2 = f"{prefix}.conv2"
        projection = {f"{prefix}.project.conv": (stream, conv2), f"{prefix}.project.bn": (None, conv2)}
        return {**super().channel_sources(prefix, stream), **projection}


class ImageNetStem(nn.Module):
    """7x7 stride-2 conv, batch norm, relu, 3x3 stride-2 max-pool; or, for small inputs,
    a 3x3 stride-1 conv, batch norm and relu."""

    def __init__(self, in_channels: int, width: int, small: bool):
        super().__init__()
        self.small = small
        if small:
            self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        else:
            self.conv = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        return x if self.small else F.max_pool2d(x, 3, 2, 1)


class ImageNetResNet(StagedModel):
    """Stem, four stages, head; ``chain()`` as in ``CifarResNet``."""

    def __init__(self, spec: ModelSpec, widths: Widths, blocks: tuple[int, ...], small: bool):
        super().__init__()
        stem = scaled(64, spec.width_mult)
        self.stem = ImageNetStem(spec.in_channels, stem, small)

        def make_block(stage: int, index: int, stream: int, mid: int, out: int) -> BasicBlock:
            if stage > 1 and index == 0:
                return ProjectedBlock(stream, mid, out, stride=2)
            return BasicBlock(stream, mid, out, 1, spec.padding)

        # the reference's ImageNet FLOPs expression hands the stream to a block output that
        # ties it (>=), its CIFAR one does not (>)
        stream, owner = add_stages(self, widths, stem, list(blocks), make_block, ties="later")
        self.head = Head(stream, spec.num_classes)
        self.channel_sources.update(self.head.channel_sources("head", owner))


def make_space(depth: int, small: bool) -> SearchSpace:
    blocks = BLOCKS[depth]

    def base_widths(spec: ModelSpec) -> Widths:
        return {
            f"stage{stage}.block{index}.{conv}": scaled(width, spec.width_mult)
            for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, blocks, strict=True), start=1)
            for index in range(count)
            for conv in ("conv1", "conv2")
        }

    def build(spec: ModelSpec, widths: Widths) -> nn.Module:
        checked_padding(spec)
        return ImageNetResNet(spec, widths, blocks, small)

    form = "small-input form (3x3 stem, no max-pool)" if small else "ImageNet form (7x7 stem, max-pool)"
    return SearchSpace(
        name=f"resnet{depth}" + ("-small" if small else ""),
        description=f"ResNet-{depth}, {form}, {2 * sum(blocks)} searchable widths",
        base_widths=base_widths,
        build=build,
    )


for _depth in BLOCKS:
    register(make_space(_depth, small=False))
    register(make_space(_depth, small=True))
