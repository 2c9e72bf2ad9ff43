"""CIFAR-style ResNets (depth 6n+2) and their plain counterparts without shortcuts.

Three stages of n basic blocks, two 3x3 convs per block, each conv's output width
searchable. Shortcuts are parameter-free: 2x2 average pooling where the block strides,
zero channels where widths differ. In "max" padding mode the residual stream stays as
wide as the widest block output so far; in "local" mode the shortcut is sliced or padded
to the block's own output width. The stem conv (in_channels -> 16 * width_mult) is not
searched.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .registry import ModelSpec, SearchSpace, StagedModel, Widths, register, register_family

STAGE_WIDTHS = (16, 32, 64)
PADDING_MODES = ("max", "local")


def scaled(width: int, width_mult: float) -> int:
    return max(1, int(round(width * width_mult)))


def checked_padding(spec: ModelSpec) -> str:
    """The spec's shortcut padding mode, refused unless it is one we build."""
    if spec.padding not in PADDING_MODES:
        raise UserError(f"unknown padding {spec.padding!r}; choose 'max' or 'local'")
    return spec.padding


# layer name -> (width that sets its input channels, width that sets its output channels);
# None where a fixed width (the stem's, the classes) does
Sources = dict[str, tuple[str | None, str | None]]


def pad_channels(x: torch.Tensor, width: int) -> torch.Tensor:
    """Append zero channels to ``x`` (N, C, H, W) up to ``width``."""
    extra = width - x.shape[1]
    return x if extra == 0 else F.pad(x, (0, 0, 0, 0, 0, extra))


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn, plus an optional parameter-free shortcut, then relu."""

    def __init__(self, in_width: int, mid: int, out: int, stride: int, shortcut: str | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.stride = stride
        self.shortcut = shortcut  # None (plain net), "max" or "local"
        if shortcut == "max":
            self.out_width = max(in_width, out)
        else:
            self.out_width = out

    def channel_sources(self, prefix: str, stream: str | None) -> Sources:
        """Which width sets each layer's channels; ``stream`` is the width that owns the
        residual stream entering the block (None: the unsearched stem)."""
        conv1, conv2 = f"{prefix}.conv1", f"{prefix}.conv2"
        return {
            conv1: (stream, conv1),
            f"{prefix}.bn1": (None, conv1),
            conv2: (conv1, conv2),
            f"{prefix}.bn2": (None, conv2),
        }

    def stream_owner(self, prefix: str, stream: str | None, ties: str) -> str | None:
        """The width that owns the stream after the block, by the reference's rule: in
        "max" mode the block's output takes it only when wider than the stream, so a tie
        leaves it with the earlier owner (``ties="earlier"``, the reference's CIFAR code),
        or when at least as wide (``ties="later"``, its ImageNet code); in the other modes
        the block's output always does."""
        in_width, out = self.conv1.in_channels, self.conv2.out_channels
        if self.shortcut == "max" and not (out > in_width or (ties == "later" and out == in_width)):
            return stream
        return f"{prefix}.conv2"

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """``cache``, when given, receives each conv's output for ``resume``."""
        conv1 = self.conv1(self.branch_input(x))
        conv2 = self.conv2(F.relu(self.bn1(conv1), inplace=True))
        if cache is not None:
            cache.update(conv1=conv1, conv2=conv2)
        return self.merge(x, self.bn2(conv2))

    def branch_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the residual branch reads: the block's input (a PyramidNet block normalises it)."""
        return x

    def resume(self, site: str, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """The block's output recomputed from drop site ``site`` ("bn1" or "bn2") on, the
        convs before it taken from ``cache``: the site's module runs again, so its hooks fire."""
        conv2 = (
            self.conv2(F.relu(self.bn1(cache["conv1"]), inplace=True)) if site == "bn1" else cache["conv2"]
        )
        return self.merge(x, self.bn2(conv2))

    def merge(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add the shortcut of input ``x`` to the residual branch ``y``, then relu."""
        if self.shortcut is None:
            return F.relu(y, inplace=True)
        return F.relu(self.add_shortcut(x, y), inplace=True)

    def add_shortcut(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` plus the parameter-free shortcut of ``x``: pooled where the block strides,
        zero-padded (or, in "local" mode, sliced) to the block's output width."""
        skip = x
        if self.stride > 1:
            # ceil_mode keeps the shortcut's size equal to the strided conv's on odd inputs
            skip = F.avg_pool2d(skip, self.stride, ceil_mode=True)
        if self.shortcut == "local" and skip.shape[1] > y.shape[1]:
            skip = skip[:, : y.shape[1]]
        if y.shape[1] == self.out_width:  # in place: saves a tensor the size of the block's output
            return y.add_(pad_channels(skip, self.out_width))
        return pad_channels(skip, self.out_width) + pad_channels(y, self.out_width)


class Stem(nn.Module):
    """The unsearched first conv and its batch norm, without a ReLU: the reference's CIFAR
    stem (a PyramidNet's first block normalises its input anyway)."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Head(nn.Module):
    """Global average pool and the linear classifier."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def channel_sources(self, prefix: str, stream: str | None) -> Sources:
        return {f"{prefix}.fc": (stream, None)}


def add_stages(
    model: nn.Module, widths: Widths, stream: int, blocks: list[int], make_block, ties: str = "earlier"
) -> tuple[int, str | None]:
    """Give ``model`` the Sequentials ``stage1``, ``stage2``... of ``blocks[s - 1]`` blocks
    each, ``make_block(stage, index, stream, mid, out)``, their ``drop_sites`` and
    ``channel_sources``; return the width of the residual stream after the last block and
    the width that owns it (``ties``: see ``BasicBlock.stream_owner``)."""
    model.drop_sites, model.channel_sources = {}, {}
    owner = None  # the stem's width, not searched
    for stage, count in enumerate(blocks, start=1):
        layers = OrderedDict()
        for index in range(count):
            prefix = f"stage{stage}.block{index}"
            block = make_block(stage, index, stream, widths[f"{prefix}.conv1"], widths[f"{prefix}.conv2"])
            layers[f"block{index}"] = block
            model.drop_sites[f"{prefix}.conv1"] = f"{prefix}.bn1"
            model.drop_sites[f"{prefix}.conv2"] = f"{prefix}.bn2"
            model.channel_sources.update(block.channel_sources(prefix, owner))
            owner = block.stream_owner(prefix, owner, ties)
            stream = block.out_width
        setattr(model, f"stage{stage}", nn.Sequential(layers))
    model.stages = len(blocks)
    return stream, owner


class CifarResNet(StagedModel):
    """Stem, three stages of blocks, head.

    ``chain()`` lists the stem, every block and the head in order: the model is their
    composition, which lets FUR estimation restart the forward pass at any block.
    """

    def __init__(self, spec: ModelSpec, widths: Widths, blocks_per_stage: int, shortcut: str | None):
        super().__init__()
        stem = scaled(16, spec.width_mult)
        self.stem = Stem(spec.in_channels, stem)

        def make_block(stage: int, index: int, stream: int, mid: int, out: int) -> BasicBlock:
            return BasicBlock(stream, mid, out, 2 if stage > 1 and index == 0 else 1, shortcut)

        stream, owner = add_stages(self, widths, stem, [blocks_per_stage] * 3, make_block)
        self.head = Head(stream, spec.num_classes)
        self.channel_sources.update(self.head.channel_sources("head", owner))


def _base_widths(blocks_per_stage: int):
    def widths(spec: ModelSpec) -> Widths:
        result = {}
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            for index in range(blocks_per_stage):
                for conv in ("conv1", "conv2"):
                    result[f"stage{stage}.block{index}.{conv}"] = scaled(width, spec.width_mult)
        return result

    return widths


def _builder(blocks_per_stage: int, residual: bool):
    def build(spec: ModelSpec, widths: Widths) -> nn.Module:
        shortcut = checked_padding(spec) if residual else None
        return CifarResNet(spec, widths, blocks_per_stage, shortcut)

    return build


def blocks_per_stage(name: str, depth: int) -> int:
    """n of a three-stage network of depth 6n+2; another depth is refused."""
    if depth < 8 or (depth - 2) % 6:
        raise UserError(
            f"space {name!r}: depth {depth} is not of the form 6n+2 with n >= 1; "
            "use e.g. 20, 32, 44, 56 or 110"
        )
    return (depth - 2) // 6


def make_space(name: str, depth: int, residual: bool) -> SearchSpace:
    n = blocks_per_stage(name, depth)
    kind = "ResNet" if residual else "plain net (no shortcuts)"
    return SearchSpace(
        name=name,
        description=f"CIFAR-style {kind}, depth {depth} = 6*{n}+2, {6 * n} searchable widths",
        base_widths=_base_widths(n),
        build=_builder(n, residual),
    )


for _depth in (20, 32, 44, 56, 110):
    register(make_space(f"resnet{_depth}", _depth, residual=True))
register(make_space("plain20", 20, residual=False))
register_family("resnet", lambda depth: make_space(f"resnet{depth}", depth, residual=True))
register_family("plain", lambda depth: make_space(f"plain{depth}", depth, residual=False))
