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

from .spaces import ModelSpec, Widths, build, width_multiples


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


def measure(spec: ModelSpec, widths: Widths, name: str) -> int:
    """The budget measure ``name`` ("macs" or "params") of ``widths``."""
    return getattr(model_cost(spec, widths), name)


def sensitivities(spec: ModelSpec, widths: Widths, budget: str = "macs") -> dict[str, float]:
    """``f_i = c_i * dF/dc_i``: the MACs (or parameters) that width i's channels take part in.

    Where the model lists its ``channel_sources`` (the ResNets and PyramidNet), this is the
    derivative of the reference's symbolic FLOPs expression: every conv, linear layer and
    batch norm costs the product of the widths that set its input and output channels, so
    each such layer adds its whole cost to each width among its sources. The residual
    stream belongs to the width the model names as its owner (a block output that ties
    the stream does not take it over in the CIFAR expression), which a difference of the
    traced count cannot tell: there F has a kink, and neither one-sided difference matches
    the reference everywhere. A user's model is traced once too: its plan says which layer
    sides each width sizes (``resize.width_shares``). Elsewhere F has no kink and is at
    most quadratic in each single width, so a central difference (at width 1 the one-sided
    three-point one) of the traced count is exact.
    """
    key = tuple(widths.items())
    shares = _user_shares(spec, key) if spec.model is not None else _source_shares(spec, key)
    if shares is not None:
        return {name: float(shares[budget].get(name, 0)) for name in widths}

    def cost_at(name: str, value: int) -> int:
        return measure(spec, {**widths, name: value}, budget)

    result, steps = {}, width_multiples(spec)  # a grouped layer's width moves by its multiple
    for name, c in widths.items():
        h = steps.get(name, 1)
        if c > h:
            derivative = (cost_at(name, c + h) - cost_at(name, c - h)) / (2 * h)
        else:
            derivative = (-3 * cost_at(name, c) + 4 * cost_at(name, c + h) - cost_at(name, c + 2 * h)) / (
                2 * h
            )
        result[name] = c * derivative
    return result


@lru_cache(maxsize=1024)
def _user_shares(spec: ModelSpec, widths_key: tuple[tuple[str, int], ...]) -> dict[str, dict]:
    from .resize import width_shares
    from .usermodel import user_plan

    _, plan = user_plan(spec)
    with torch.device("meta"):
        model = build(spec, dict(widths_key))
    return width_shares(model, plan, dict(widths_key), (spec.in_channels, spec.image_size, spec.image_size))


@lru_cache(maxsize=1024)
def _source_shares(spec: ModelSpec, widths_key: tuple[tuple[str, int], ...]) -> dict[str, dict] | None:
    """Per measure and width, the summed cost of the layers whose channels it sets (twice
    for a layer it sets both sides of); None for a model without ``channel_sources``."""
    with torch.device("meta"):
        model = build(spec, dict(widths_key)).eval()
    sources = getattr(model, "channel_sources", None)
    if sources is None:
        return None
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros((1, spec.in_channels, spec.image_size, spec.image_size), device="meta"))
    flops = counter.get_flop_counts()
    shares: dict[str, dict[str, int]] = {"macs": {}, "params": {}}

    def add(measure_name: str, widths: tuple[str | None, ...], amount: int) -> None:
        for width in widths:
            if width is not None:
                shares[measure_name][width] = shares[measure_name].get(width, 0) + amount

    for layer, (source_in, source_out) in sources.items():
        module = model.get_submodule(layer)
        add(
            "macs",
            (source_in, source_out),
            sum(flops.get(f"{type(model).__name__}.{layer}", {}).values()) // 2,
        )
        for parameter in module.parameters(recurse=False):
            # weights (out, in, ...) scale with both sides; biases and batch-norm affine with the output
            add(
                "params", (source_in, source_out) if parameter.dim() > 1 else (source_out,), parameter.numel()
            )
    return shares
