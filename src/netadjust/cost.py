"""Cost of a network: multiply-accumulates (MACs) and parameters, by tracing the real model.

Convention: one MAC is one multiply-add of a convolution or a linear layer, for one forward
pass of one image; biases, batch norm, pooling, activations and additions are not counted.
Counts come from ``torch.utils.flop_counter`` (which counts 2 FLOPs per MAC) on a model
built on the meta device, so no architecture has a hand-written formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .spaces import ModelSpec, Widths, build


@dataclass(frozen=True)
class Cost:
    macs: int  # multiply-accumulates of one forward pass of one image
    params: int  # trainable parameters


def count(model: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """MACs of one forward pass of ``model`` on one input of ``input_shape`` (C, H, W)."""
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros((1, *input_shape), device=device))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Cost(macs=counter.get_total_flops() // 2, params=params)


def model_cost(spec: ModelSpec, widths: Widths | None = None) -> Cost:
    """Cost of the space's model at ``widths``, traced on the meta device (no memory used)."""
    key = None if widths is None else tuple(widths.items())
    return _cached_cost(spec, key)


@lru_cache(maxsize=4096)
def _cached_cost(spec: ModelSpec, widths_key: tuple[tuple[str, int], ...] | None) -> Cost:
    with torch.device("meta"):
        model = build(spec, None if widths_key is None else dict(widths_key))
    return count(model.eval(), (spec.in_channels, spec.image_size, spec.image_size))


MEASURES = ("macs", "params")  # what a budget can hold constant


def measure(spec: ModelSpec, widths: Widths, name: str) -> int:
    """The budget measure ``name`` ("macs" or "params") of ``widths``."""
    return getattr(model_cost(spec, widths), name)


def sensitivities(spec: ModelSpec, widths: Widths, budget: str = "macs") -> dict[str, float]:
    """``f_i = c_i * dF/dc_i``: the MACs (or parameters) that width i's channels take part in.

    Both are at most quadratic in each single width, so a central difference (or, at width
    1, the one-sided three-point difference) of the traced count is exact.
    """

    def macs_at(name: str, value: int) -> int:
        return measure(spec, {**widths, name: value}, budget)

    result = {}
    for name, c in widths.items():
        if c > 1:
            derivative = (macs_at(name, c + 1) - macs_at(name, c - 1)) / 2
        else:
            derivative = (-3 * macs_at(name, c) + 4 * macs_at(name, c + 1) - macs_at(name, c + 2)) / 2
        result[name] = c * derivative
    return result
