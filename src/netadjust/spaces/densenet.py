"""DenseNet-40 for CIFAR (Huang et al. 2017, growth rate 12, no bottleneck, no compression).

A 3x3 stem conv (in_channels -> 16), three dense blocks of 12 layers, each layer
batch norm - relu - 3x3 conv adding ``growth`` channels that are concatenated to its
input; between blocks a transition (batch norm - relu - 1x1 conv keeping the channel
count - 2x2 average pool); then batch norm - relu - global pool - linear. Every layer's
growth is a searchable width (``block{b}.layer{l}``, 36 in all); since later layers read
every earlier output, the cost counts each width wherever it is read. Its channels are
dropped at the layer's conv output, before the concatenation (no batch norm follows it
directly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ChainedModel, ModelSpec, SearchSpace, Widths, register
from .resnet_cifar import scaled

BLOCKS, LAYERS, GROWTH, STEM = 3, 12, 12, 16


class DenseLayer(nn.Module):
    def __init__(self, in_width: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_width)
        self.conv = nn.Conv2d(in_width, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class Transition(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ceil_mode keeps odd sizes (e.g. 28 -> 14 -> 7 -> 4) whole
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseHead(nn.Module):
    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1), 1))


class DenseNet(ChainedModel):
    """Stem, dense layers and transitions, head; ``chain()`` lists them in order."""

    def __init__(self, spec: ModelSpec, widths: Widths):
        super().__init__()
        width = scaled(STEM, spec.width_mult)
        self.stem = nn.Conv2d(spec.in_channels, width, 3, 1, 1, bias=False)
        self.drop_sites: dict[str, str] = {}
        modules = []
        for block in range(1, BLOCKS + 1):
            for layer in range(LAYERS):
                name = f"block{block}.layer{layer}"
                modules.append(DenseLayer(width, widths[name]))
                self.drop_sites[name] = f"body.{len(modules) - 1}.conv"
                width += widths[name]
            if block < BLOCKS:
                modules.append(Transition(width))
        self.body = nn.Sequential(*modules)
        self.head = DenseHead(width, spec.num_classes)

    def chain(self) -> list[nn.Module]:
        return [self.stem, *self.body, self.head]


def base_widths(spec: ModelSpec) -> Widths:
    growth = scaled(GROWTH, spec.width_mult)
    return {f"block{b}.layer{l}": growth for b in range(1, BLOCKS + 1) for l in range(LAYERS)}  # noqa: E741


register(
    SearchSpace(
        name="densenet40",
        description="DenseNet-40 (k=12) for CIFAR, each layer's growth searchable: 36 widths",
        base_widths=base_widths,
        build=lambda spec, widths: DenseNet(spec, widths),
    )
)
