"""Layers everything the network sees passes through (cuts: with all their channels zeroed,
the output no longer depends on the input), and the least width each may take so that it
still carries as many numbers per image (channels x positions) as there are classes.

FUR ranks such a layer low while it is wide, and the initial-width step can take it to the
floor in two moves: torchvision's MobileNetV2 x0.5, searched with the defaults before this
floor existed, ended with its last 1x1 convolution at 2 channels on a 1x1 map, and its
network trained to 66.42% over 5 seeds where the others reached 88-90% (docs/results.md). The search
now holds each cut at ``ceil(classes / positions)`` channels, or its starting width if that
is less; ``netadjust report`` still names a cut left starving by a search made without it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .adjust import Floor, Grid, lowest_width, step_of
from .channel_drop import on_site, site_modules
from .config import ModelSpec, Widths
from .spaces.registry import build

IMAGES = 4  # random images, told apart by every network that sees them


def raised_floors(spec: ModelSpec, widths: Widths, min_width: int) -> dict[str, int]:
    """The cuts of the network at ``widths`` that ``min_width`` channels would leave carrying
    fewer numbers per image than ``spec.num_classes``, each with its least width: enough
    channels for the classes, at most its width in ``widths``."""
    model, images = _probe(spec, widths)
    positions = _positions(model, images, list(widths))
    short = [name for name in widths if min_width * positions[name] < spec.num_classes]
    return {
        name: max(min_width, min(widths[name], -(-spec.num_classes // positions[name])))
        for name in _cuts_among(model, images, short)
    }


def least_widths(spec: ModelSpec, widths: Widths, min_width: int) -> tuple[Floor, dict[str, int]]:
    """The least width each of ``widths`` may take (``min_width``, or a cut's raised floor;
    per width where any is raised) and the raised floors alone: what the search and the
    pruning counterparts hold alike."""
    raised = raised_floors(spec, widths, min_width)
    return ({name: raised.get(name, min_width) for name in widths} if raised else min_width), raised


def starving_cuts(spec: ModelSpec, widths: Widths, min_width: int, grid: Grid = 1) -> dict[str, int]:
    """The widths at the floor that are cuts carrying fewer numbers per image than
    ``spec.num_classes``, with that count (a search made before the floor of cuts)."""
    at_floor = [
        name for name, width in widths.items() if width <= lowest_width(min_width, step_of(grid, name))
    ]
    if not at_floor:
        return {}
    model, images = _probe(spec, widths)
    positions = _positions(model, images, at_floor)
    narrow = [name for name in at_floor if widths[name] * positions[name] < spec.num_classes]
    return {name: widths[name] * positions[name] for name in _cuts_among(model, images, narrow)}


def _cuts_among(model: nn.Module, images: torch.Tensor, names: list[str]) -> list[str]:
    """Those of ``names`` with every channel zeroed leave the images' scores alike; none where
    the network tells no images apart to begin with (or nothing is asked)."""
    spread = _spread(model, images) if names else 0.0
    return [name for name in names if _spread(model, images, name) <= 1e-6 * spread] if spread else []


def _probe(spec: ModelSpec, widths: Widths) -> tuple[nn.Module, torch.Tensor]:
    """The untrained network with batch norms on batch statistics (no channel of it is dead),
    and random images. After a cut every image is computed alike, to the last bit."""
    model = build(spec, widths).eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    generator = torch.Generator().manual_seed(0)
    shape = (IMAGES, spec.in_channels, spec.image_size, spec.image_size)
    return model, torch.randn(shape, generator=generator)


def _positions(model: nn.Module, images: torch.Tensor, names: list[str]) -> dict[str, int]:
    """Per width, the positions per channel at its drop site (the fewest of its modules')."""
    positions: dict[str, int] = {}

    def counted(name: str):
        def count(tensor: torch.Tensor) -> torch.Tensor:
            here = math.prod(tensor.shape[2:])
            positions[name] = min(positions.get(name, here), here)
            return tensor

        return count

    hooks = [
        on_site(module, on_input, counted(name), last)
        for name in names
        for module, on_input, last in site_modules(model, name, model.drop_sites[name])
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return positions


def _spread(model: nn.Module, images: torch.Tensor, zeroed: str | None = None) -> float:
    """How far the images' scores differ from their mean, with every channel of width ``zeroed``
    set to zero: none (to rounding) when everything the network sees passes through it."""
    sites = site_modules(model, zeroed, model.drop_sites[zeroed]) if zeroed else []
    hooks = [on_site(module, on_input, torch.zeros_like, last) for module, on_input, last in sites]
    try:
        with torch.no_grad():
            scores = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return (scores - scores.mean(0)).abs().max().item()


def floor_line(original: Widths, floors: dict[str, int], num_classes: int) -> str:
    """One line naming the cuts held above --min-width, for the search's log."""
    named = ", ".join(f"{name} at least {floors[name]} (of {original[name]})" for name in floors)
    return (
        f"widths everything the network sees passes through, held wide enough for its {num_classes} "
        f"classes (channels x positions): {named}"
    )


def cut_warning(original: Widths, widths: Widths, cuts: dict[str, int], num_classes: int) -> str:
    """One line naming the starving cuts of a search made without their floor, and what to do."""
    named = ", ".join(
        f"{name} ({original[name]} -> {widths[name]} channels, {cuts[name]} numbers per image)"
        for name in cuts
    )
    return (
        f"warning: the search cut to the floor a layer everything the network sees passes through, "
        f"narrower than its {num_classes} classes: {named}. Such a network may not train "
        "(torchvision's MobileNetV2 x0.5 cut this way reached 66.42% over 5 seeds where its other "
        "searches' networks reached 88-90%; docs/results.md); this version of netadjust holds such a layer "
        "wide enough for the classes: search again."
    )
