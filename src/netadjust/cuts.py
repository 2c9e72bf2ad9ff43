"""Where a search starved the whole network: a width that everything the network sees passes
through (with all its channels zeroed, the output no longer depends on the input), cut to
the floor, carrying fewer numbers per image than there are classes. FUR ranks such a width
low while it is wide, and the initial-width step can take it to the floor in two moves.
torchvision's MobileNetV2 x0.5 searched with the defaults ended with its last 1x1
convolution at the floor, 2 channels on a 1x1 map, and its network trained to 61.94% where
the others reached 88-89%; another search left a cut of 6 numbers above the floor, and that
network trained to 88.88% (docs/results.md)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .adjust import Grid, lowest_width, step_of
from .channel_drop import on_site, site_modules
from .config import ModelSpec, Widths
from .spaces.registry import build

IMAGES = 16  # random images, told apart by every network that sees them


def starving_cuts(spec: ModelSpec, widths: Widths, min_width: int, grid: Grid = 1) -> dict[str, int]:
    """The widths at the floor that are cuts carrying fewer numbers per image (channels x
    positions at the width's drop site) than ``spec.num_classes``, with that count."""
    at_floor = [
        name for name, width in widths.items() if width <= lowest_width(min_width, step_of(grid, name))
    ]
    if not at_floor:
        return {}
    model = build(spec, widths).eval().double()
    for module in model.modules():  # batch statistics: no channel of an untrained network is dead
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    generator = torch.Generator().manual_seed(0)
    shape = (IMAGES, spec.in_channels, spec.image_size, spec.image_size)
    images = torch.randn(shape, generator=generator, dtype=torch.float64)
    numbers = _numbers_per_image(model, images, at_floor)
    narrow = [name for name in at_floor if numbers[name] < spec.num_classes]
    spread = _spread(model, images) if narrow else 0.0
    return {name: numbers[name] for name in narrow if _spread(model, images, name) <= 1e-9 * spread}


def _numbers_per_image(model: nn.Module, images: torch.Tensor, names: list[str]) -> dict[str, int]:
    """Per width, how many numbers per image its drop site passes on (the fewest of its modules')."""
    numbers: dict[str, int] = {}

    def counted(name: str):
        def count(tensor: torch.Tensor) -> torch.Tensor:
            per_image = math.prod(tensor.shape[1:])
            numbers[name] = min(numbers.get(name, per_image), per_image)
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
    return numbers


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


def cut_warning(original: Widths, widths: Widths, cuts: dict[str, int], num_classes: int) -> str:
    """One line naming the starving cuts and what to do."""
    named = ", ".join(
        f"{name} ({original[name]} -> {widths[name]} channels, {cuts[name]} numbers per image)"
        for name in cuts
    )
    return (
        f"warning: the search cut to the floor a layer everything the network sees passes through, "
        f"narrower than its {num_classes} classes: {named}. Such a network may not train "
        "(torchvision's MobileNetV2 x0.5 cut this way reached 61.94% where its other searches' "
        "networks reached 88-89%; docs/results.md); search again with --step current or a larger "
        "--min-width, and check any network with compare before using it."
    )
