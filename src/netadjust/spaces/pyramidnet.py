"""PyramidNets for CIFAR (Han et al. 2017), additive, basic blocks, depth 6n+2.

Instead of doubling at each stage, the width grows a little at every block: block k of
N = 3n gets ``floor(16 + alpha * k / N)`` channels (alpha = 48 here, so the last block is
as wide as ResNet-20's). Blocks are BN - conv - BN - ReLU - conv - BN with no ReLU after
the addition; shortcuts are parameter-free (2x2 average pooling where the block strides,
zero channels where widths differ, "max" or "local" as in the CIFAR ResNets). Both convs
of each block are searchable. The stem (conv and BN, in_channels -> 16) is not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, SearchSpace, StagedModel, Widths, register, register_family
from .resnet_cifar import (
    BasicBlock,
    Head,
    Sources,
    Stem,
    add_stages,
    blocks_per_stage,
    checked_padding,
    scaled,
)

ALPHA = 48  # total widening over the network
STEM = 16


class PyramidBlock(BasicBlock):
    """A basic block with a batch norm on its input and no ReLU after the addition."""

    def __init__(self, in_width: int, mid: int, out: int, stride: int, shortcut: str):
        super().__init__(in_width, mid, out, stride, shortcut)
        self.bn_in = nn.BatchNorm2d(in_width)

    def branch_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_in(x)

    def channel_sources(self, prefix: str, stream: str | None) -> Sources:
        return {**super().channel_sources(prefix, stream), f"{prefix}.bn_in": (None, stream)}

    def merge(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.add_shortcut(x, y)


class PreActHead(Head):
    """Batch norm and ReLU on the last block's sum, then pool and classify."""

    def __init__(self, width: int, num_classes: int):
        super().__init__(width, num_classes)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.relu(self.bn(x)))

    def channel_sources(self, prefix: str, stream: str | None) -> Sources:
        return {**super().channel_sources(prefix, stream), f"{prefix}.bn": (None, stream)}


class PyramidNet(StagedModel):
    def __init__(self, spec: ModelSpec, widths: Widths, blocks_per_stage: int):
        super().__init__()
        stem = scaled(STEM, spec.width_mult)
        self.stem = Stem(spec.in_channels, stem)

        def make_block(stage: int, index: int, stream: int, mid: int, out: int) -> PyramidBlock:
            return PyramidBlock(stream, mid, out, 2 if stage > 1 and index == 0 else 1, spec.padding)

        stream, owner = add_stages(self, widths, stem, [blocks_per_stage] * 3, make_block)
        self.head = PreActHead(stream, spec.num_classes)
        self.channel_sources.update(self.head.channel_sources("head", owner))


def pyramid_widths(blocks: int, width_mult: float) -> list[int]:
    """The additive rule: block k (1-based) of ``blocks`` is floor(16 + alpha * k / blocks) wide."""
    return [scaled(STEM + ALPHA * k // blocks, width_mult) for k in range(1, blocks + 1)]


def make_space(depth: int) -> SearchSpace:
    n = blocks_per_stage(f"pyramidnet{depth}", depth)

    def base_widths(spec: ModelSpec) -> Widths:
        grown = iter(pyramid_widths(3 * n, spec.width_mult))
        result = {}
        for stage in range(1, 4):
            for index in range(n):
                width = next(grown)
                result[f"stage{stage}.block{index}.conv1"] = width
                result[f"stage{stage}.block{index}.conv2"] = width
        return result

    def build(spec: ModelSpec, widths: Widths) -> nn.Module:
        checked_padding(spec)
        return PyramidNet(spec, widths, n)

    return SearchSpace(
        name=f"pyramidnet{depth}",
        description=f"additive PyramidNet (alpha {ALPHA}), depth {depth}, {6 * n} searchable widths",
        base_widths=base_widths,
        build=build,
    )


register(make_space(20))
register_family("pyramidnet", make_space)
