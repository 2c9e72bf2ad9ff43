"""Registry of built-in search spaces.

A search space turns a widths mapping ``{width name: channels}`` (forward order) into a plain
``nn.Module``. Every built model carries ``drop_sites``: width name -> qualified name of the
module after whose output that width's channels can be dropped (its batch norm, or a
``ChannelTap`` where several blocks share the width).

Optional, for sensitivities that follow the reference's FLOPs expression exactly:
``channel_sources`` maps each layer to the widths that set its input and output channels
(see ``cost.sensitivities``); without it, the traced count is differentiated numerically.

Optional, for the fast FUR path: ``chain()`` returns modules whose composition is the model
(stem, blocks, head); a block may also offer ``forward(x, cache)`` and
``resume(site, x, cache)`` to restart its computation at one of its drop sites.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelSpec, Widths
from ..errors import UserError
from ..wording import plural


def network_name(spec: ModelSpec) -> str:
    """The space with its width multiplier, as logs and plots name it: ``resnet20 ×0.5``;
    a user's model by its reference."""
    if spec.model is not None:
        return spec.model
    return spec.space if spec.width_mult == 1 else f"{spec.space} ×{spec.width_mult:g}"


@dataclass(frozen=True)
class SearchSpace:
    """A family member: its base widths and its builder."""

    name: str
    description: str
    base_widths: Callable[[ModelSpec], Widths]
    build: Callable[[ModelSpec, Widths], nn.Module]


_REGISTRY: dict[str, SearchSpace] = {}
_FAMILIES: dict[str, Callable[[int], SearchSpace]] = {}  # name prefix -> space of a given depth


class ChainedModel(nn.Module):
    """A model that is the composition of ``chain()``: subclasses list their modules once."""

    def chain(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.chain():
            x = module(x)
        return x


class StagedModel(ChainedModel):
    """A model of ``stem``, Sequentials ``stage1`` .. ``stage{self.stages}`` and ``head``;
    its chain is the stem, every block of every stage, and the head."""

    def chain(self) -> list[nn.Module]:
        blocks = [block for stage in range(1, self.stages + 1) for block in getattr(self, f"stage{stage}")]
        return [self.stem, *blocks, self.head]


class ChannelTap(nn.Identity):
    """A drop site for a width that residual additions tie across several blocks: one
    instance, called at each of those blocks' outputs, so one keyed FUR mask removes the
    channel from the whole residual stream (the training regulariser, drawing masks from a
    generator, draws a fresh one at each call)."""


def register(space: SearchSpace) -> SearchSpace:
    """Add a space; a duplicate name is a programming error, refused loudly."""
    if space.name in _REGISTRY:
        raise ValueError(f"search space {space.name!r} is already registered")
    _REGISTRY[space.name] = space
    return space


def register_family(prefix: str, make: Callable[[int], SearchSpace]) -> None:
    """Spaces named ``prefix`` + depth, made on first use; ``make`` refuses bad depths."""
    if prefix in _FAMILIES:
        raise ValueError(f"space family {prefix!r} is already registered")
    _FAMILIES[prefix] = make


def get_space(name: str) -> SearchSpace:
    """Look a space up by name; an unknown name is answered with the known ones."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    if match and match.group(1) in _FAMILIES:
        return register(_FAMILIES[match.group(1)](int(match.group(2))))
    raise UserError(f"unknown space {name!r}; choose one of: {', '.join(space_names())}")


def space_names() -> list[str]:
    return sorted(_REGISTRY)


def space_of(spec: ModelSpec) -> SearchSpace:
    """The space ``spec`` names, or the one made of the user's model ``spec.model``."""
    if spec.model is not None:
        from ..usermodel import user_model, user_plan

        return SearchSpace(spec.model, "your model", lambda spec: user_plan(spec)[1].widths, user_model)
    return get_space(spec.space)


def base_widths(spec: ModelSpec) -> Widths:
    return space_of(spec).base_widths(spec)


def width_multiples(spec: ModelSpec) -> dict[str, int]:
    """Per width, the number its channels must divide by: the groups of the grouped
    convolutions and group norms it sizes in a user's model; 1 in the built-in spaces."""
    if spec.model is not None:
        from ..usermodel import user_plan

        return dict(user_plan(spec)[1].multiples)
    return dict.fromkeys(base_widths(spec), 1)


def width_grid(spec: ModelSpec, round_to: int) -> dict[str, int]:
    """Per width, the step its channels move on: ``--round-to`` combined with its multiple."""
    return {name: math.lcm(round_to, multiple) for name, multiple in width_multiples(spec).items()}


def check_widths(spec: ModelSpec, widths: Widths) -> Widths:
    """Validate a widths mapping against the space; return it in forward order."""
    expected = base_widths(spec)
    what = f"your model {spec.model}" if spec.model else f"space {spec.space!r}"
    listing = (
        f"netadjust inspect --model {spec.model}" if spec.model else f"netadjust cost {spec.space} --json"
    )
    unknown = [name for name in widths if name not in expected]
    if unknown:
        closest = difflib.get_close_matches(unknown[0], list(expected), n=1)
        guess = (
            f"did you mean {closest[0]!r} for {unknown[0]!r}?"
            if closest
            else f"its widths are {list(expected)[:3]}..."
        )
        raise UserError(
            f"widths name unknown layers {unknown[:5]} for {what}; {guess} (every width: `{listing}`)"
        )
    missing = [name for name in expected if name not in widths]
    if missing:
        raise UserError(
            f"widths miss {plural(len(missing), 'layer')} of {what}, e.g. {missing[:3]}; "
            "give a width for every layer"
        )
    for name, value in widths.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"width {name!r} is {value!r}; widths must be positive integers")
    return {name: widths[name] for name in expected}


def build(spec: ModelSpec, widths: Widths | None = None) -> nn.Module:
    """Build the model of ``spec`` at ``widths`` (the space's base widths when None)."""
    space = space_of(spec)
    widths = space.base_widths(spec) if widths is None else check_widths(spec, widths)
    return space.build(spec, widths)
