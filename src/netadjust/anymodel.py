"""The widths of a user's own ``nn.Module``: its coupled channels found by Torch-Pruning's
dependency graph (the optional extra ``netadjust[models]``), and where each width's
channels are dropped. ``resize.py`` rebuilds the model at other widths; ``usermodel.py``
checks a plan and serves it to the search.

A *group* is a set of channels that must keep one width: a layer's outputs and every input
that reads them, through residual additions, depthwise convolutions, gates and flattening.
Each layer's size is then a sum over the groups it touches: a width times how many of the
layer's channels one channel of the group occupies (1, or a linear layer's block of
inputs after a flatten), plus what no group owns (the image's channels, the classes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .channel_drop import INPUT, LAST
from .config import Widths
from .dependency import (
    DISCOVERY_CHECKS,
    DISCOVERY_INDICES,
    DISCOVERY_SECONDS,
    DiscoveryTooLong,
    indexed_groups,
    require_torch_pruning,
)
from .errors import UserError
from .factories import first_line

RESIZABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
# layers on the channel dimension that netadjust cannot resize: refused by name
UNSUPPORTED = (
    nn.MultiheadAttention, nn.RNNBase, nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d,
    nn.InstanceNorm2d, nn.BatchNorm1d, nn.Embedding,
)  # fmt: skip


@dataclass(frozen=True)
class Group:
    """Channels that share one width: named after the first layer (in module order) whose
    output they are; ``members`` maps (layer, "in"/"out") to channels per group channel, and
    (parameter, "param") for a per-channel parameter of no layer (a layer scale)."""

    name: str
    width: int
    members: dict[tuple[str, str], int] = field(hash=False)
    sites: tuple[str, ...] = ()  # where its channels are dropped (``drop_sites``)


@dataclass(frozen=True)
class Plan:
    groups: tuple[Group, ...]
    fixed: dict[tuple[str, str], int]  # channels of each layer side that no group owns
    multiples: dict[str, int] = field(default_factory=dict)  # per width: what its channels divide by
    # per-channel parameters of no layer: the dimension that holds the channels, the value they start at
    parameters: dict[str, tuple[int, float]] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # widths kept at their size, and why

    @property
    def widths(self) -> Widths:
        return {group.name: group.width for group in self.groups}


def required_multiples(modules: dict[str, nn.Module], groups: list[Group]) -> dict[str, int]:
    """Per width, the least common multiple of the groups of every grouped convolution and
    group norm it sizes (a depthwise convolution divides whatever its width)."""
    multiples = {}
    for group in groups:
        multiple = 1
        for name, side in group.members:
            module = modules.get(name) if side != "param" else None
            if isinstance(module, nn.Conv2d) and not is_depthwise(module):
                multiple = math.lcm(multiple, module.groups)
            elif isinstance(module, nn.GroupNorm):
                multiple = math.lcm(multiple, module.num_groups)
        multiples[group.name] = multiple
    return multiples


def sides(module: nn.Module) -> dict[str, int]:
    """The channel counts of a resizable layer: its inputs ("in") and outputs ("out")."""
    if isinstance(module, nn.Conv2d):
        return {"in": module.in_channels, "out": module.out_channels}
    if isinstance(module, nn.Linear):
        return {"in": module.in_features, "out": module.out_features}
    if isinstance(module, nn.BatchNorm2d):
        return {"out": module.num_features}
    if isinstance(module, nn.LayerNorm):
        return {"out": module.normalized_shape[0]}
    return {"out": module.num_channels}  # GroupNorm


def refuse_unsupported(model: nn.Module) -> None:
    """One line naming what netadjust cannot resize: a layer type, a layer norm over more
    than the channels, or a parameter of no resizable layer that is not one vector of
    channels (a layer scale is; ``discover`` checks that a width sizes it)."""
    for name, module in model.named_modules():
        if isinstance(module, UNSUPPORTED):
            raise UserError(
                f"{shown(name)} is a {type(module).__name__}, which netadjust cannot resize; "
                "refusing this model"
            )
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
            raise UserError(
                f"{shown(name)} is a {type(module).__name__} over {len(module.normalized_shape)} "
                "dimensions, which netadjust cannot resize (only over the channels); refusing this model"
            )
        if not isinstance(module, RESIZABLE):
            for parameter_name, parameter in module.named_parameters(recurse=False):
                if parameter.numel() > 1 and channel_dimension(parameter) is None:
                    raise UserError(
                        f"{shown(name)}.{parameter_name} is a parameter of shape "
                        f"{tuple(parameter.shape)} that no resizable layer owns; netadjust cannot resize it: "
                        "refusing this model"
                    )


def channel_dimension(parameter: torch.Tensor) -> int | None:
    """The one dimension of a parameter longer than 1 (a vector of channels), else None."""
    longer = [dim for dim, size in enumerate(parameter.shape) if size > 1]
    return longer[0] if len(longer) == 1 else None


def traced(model: nn.Module, example: torch.Tensor, types: tuple[type, ...]) -> tuple[dict, dict, object]:
    """One pass of ``model`` on ``example``: each layer of ``types``'s output, how many times
    it was called, and the model's output; ``outputs[(module, "in")]`` is its input."""
    outputs, calls = {}, {}

    def seen(module, inputs, output) -> None:
        outputs[module] = output
        if inputs and isinstance(inputs[0], torch.Tensor):
            outputs[(module, "in")] = inputs[0]
        calls[module] = calls.get(module, 0) + 1

    handles = [module.register_forward_hook(seen) for module in model.modules() if isinstance(module, types)]
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, calls, output


def output_layer(model: nn.Module, outputs: dict, output) -> nn.Module:
    """The conv or linear layer whose output the model returns (of ``traced``'s), else the
    model's last one."""
    returning = [m for m, o in outputs.items() if o is output and isinstance(m, nn.Linear | nn.Conv2d)]
    return (returning or [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)])[-1]


def discover(model: nn.Module, example: torch.Tensor) -> Plan:
    """The groups of ``model`` (its output layer's outputs excluded) traced on ``example``."""
    tp = require_torch_pruning()
    model = model.eval()
    refuse_unsupported(model)
    names = {module: name for name, module in model.named_modules()}
    order = {name: index for index, name in enumerate(names.values())}
    outputs, calls, output = traced(model, example, RESIZABLE)
    shared = [module for module, count in calls.items() if count > 1]
    if shared:  # a layer called more than once per pass ties its channels to themselves
        raise UserError(
            f"{shown(names[shared[0]])} is called {calls[shared[0]]} times in one pass; refusing this model"
        )
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise UserError("the model must return one tensor of logits (N, classes); refusing it")
    output_layers = [output_layer(model, outputs, output)]  # the classes: kept
    try:
        with (
            indexed_groups(tp, DISCOVERY_CHECKS, DISCOVERY_SECONDS, DISCOVERY_INDICES),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", "Unwrapped parameters")  # layer scales: sized below
            warnings.filterwarnings("ignore", "Maximum recursive depth")  # its shape guess: we refuse instead
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
            found_groups = list(
                graph.get_all_groups(ignored_layers=output_layers, root_module_types=[nn.Conv2d, nn.Linear])
            )
    except DiscoveryTooLong as limit:
        raise UserError(
            f"Torch-Pruning's dependency graph was still growing its groups after {limit} "
            "(index sets that keep multiplying: channel slices, a zero-padded residual, reshaped "
            "windows); refusing this model"
        ) from None
    except Exception as error:  # the graph's own failure on an operation it cannot follow
        raise UserError(
            f"Torch-Pruning's dependency graph fails on this model ({type(error).__name__}: "
            f"{first_line(error)}): some operation (a channel split or shuffle?) ties channels in a way "
            "netadjust cannot follow; refusing it"
        ) from None
    loose = {  # per-channel parameters of no layer (layer scales)
        parameter: name
        for name, parameter in model.named_parameters()
        if not isinstance(model.get_submodule(name.rpartition(".")[0]), RESIZABLE) and parameter.numel() > 1
    }
    last = channels_last_sides(outputs, names)
    groups, owned, modules, held = [], {}, dict(model.named_modules()), {}
    for found in found_groups:
        members: dict[tuple[str, str], int] = {}
        root_width, uneven = len(found[0][1]), None
        for dependency, indices in found:
            module = dependency.target.module
            if module in loose:
                key = (loose[module], "param")
            elif isinstance(module, RESIZABLE) and module in names:
                key = (names[module], "out" if graph.is_out_channel_pruning_fn(dependency.handler) else "in")
            else:
                continue
            size = sides(module).get(key[1]) if key[1] != "param" else module.shape[channel_dimension(module)]
            uneven_here = len(indices) % root_width or len(indices) > size  # a slice or split, or misread
            if uneven_here and uneven is None:
                uneven = (
                    f"{shown(key[0])} takes {len(indices)} channels of a {root_width}-channel width "
                    "(a slice or split)"
                )
            members[key] = max(members.get(key, 0), len(indices) // root_width)
        producers = sorted((key[0] for key in members if key[1] == "out"), key=order.get)
        if not producers:
            continue
        if uneven:  # its channels stay as they are: counted with the channels no width owns
            held[width_name(producers[0], modules[producers[0]])] = uneven
            continue
        sites = drop_sites(modules, members, producers, root_width, last)
        name = width_name(producers[0], modules[producers[0]])
        groups.append((order[producers[0]], Group(name, root_width, members, sites)))
        for key, per_channel in members.items():
            owned[key] = owned.get(key, 0) + per_channel * root_width
    groups = [group for _, group in sorted(groups, key=lambda pair: pair[0])]  # by first producer
    fixed = {}
    for module, name in names.items():
        if isinstance(module, RESIZABLE):
            for side, size in sides(module).items():
                if side == "in" and is_depthwise(module):
                    continue
                if size - owned.get((name, side), 0) < 0:
                    raise UserError(
                        f"{shown(name)}: its {side}put channels are claimed twice; refusing this model"
                    )
                fixed[(name, side)] = size - owned.get((name, side), 0)
    parameters = {}
    for parameter, name in loose.items():
        dim, sized = channel_dimension(parameter), owned.get((name, "param"), 0)
        if sized == 0:
            continue  # along channels no width owns (the classes); checked at other widths below
        if sized != parameter.shape[dim]:
            raise UserError(
                f"{shown(name)} is a parameter of shape {tuple(parameter.shape)} that no width sizes; "
                "netadjust cannot resize it: refusing this model"
            )
        parameters[name] = (dim, float(parameter.detach().double().mean()))
    return Plan(tuple(groups), fixed, required_multiples(modules, groups), parameters, held)


def holding(plan: Plan, reasons: dict[str, str]) -> Plan:
    """``plan`` with the widths ``reasons`` names held at their size: their channels count
    with those no width owns."""
    fixed, kept = dict(plan.fixed), []
    for group in plan.groups:
        if group.name not in reasons:
            kept.append(group)
            continue
        for key, per_channel in group.members.items():
            fixed[key] = fixed.get(key, 0) + per_channel * group.width
    multiples = {name: multiple for name, multiple in plan.multiples.items() if name not in reasons}
    return Plan(tuple(kept), fixed, multiples, plan.parameters, {**plan.held, **reasons})


def channels_last_sides(outputs: dict, names: dict) -> set[tuple[str, str]]:
    """The (layer, "in"/"out") whose traced tensor holds its channels in its last dimension
    (a linear layer on a channels-last map, a layer norm over the channels of one), where
    that is not also dimension 1. Where both have the channels' size, a linear layer and a
    plain layer norm read the last one; a layer norm class named ...2d, dimension 1."""
    found = set()
    for key, tensor in outputs.items():
        module, side = key if isinstance(key, tuple) else (key, "out")
        size = sides(module).get(side)
        if not isinstance(tensor, torch.Tensor) or tensor.dim() <= 2 or size is None:
            continue
        first, last = tensor.shape[1] == size, tensor.shape[-1] == size
        if first and last:  # ambiguous at this input: by what the layer reads
            plain_norm = isinstance(module, nn.LayerNorm) and not type(module).__name__.lower().endswith("2d")
            last = isinstance(module, nn.Linear) or plain_norm
        if last:
            found.add((names[module], side))
    return found


KINDS = (
    (nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm2d, "bn"), (nn.GroupNorm, "gn"),
    (nn.LayerNorm, "ln"),
)  # fmt: skip


def width_name(layer: str, module: nn.Module) -> str:
    """A width's name: its first producer's qualified name, led by the layer's kind where
    that name is bare positions (``conv0``, ``conv3.1`` in an ``nn.Sequential``), which
    would read like counts in a log line."""
    if not is_position(layer):
        return layer
    return next(kind for cls, kind in KINDS if isinstance(module, cls)) + layer


def shown(name: str) -> str:
    """A module's qualified name in a sentence: ``layer 4`` where it is a bare position."""
    return f"layer {name}" if is_position(name) else name


def is_position(name: str) -> bool:
    """Whether a qualified module name is only positions in containers (``3``, ``0.1``)."""
    return all(part.isdigit() for part in name.split("."))


def drop_sites(
    modules: dict[str, nn.Module], members: dict, producers: list[str], width: int, last: set = frozenset()
) -> tuple[str, ...]:
    """Where a width's channels are dropped so that they are gone wherever they are read:
    after each of its norm layers (one mask for all: every addend of a residual sum); without
    one, on the input of each layer that reads them (``name:input``), when each reads them
    alone (no concatenation, no flatten); else after the layers that produce them. A layer
    whose output holds other channels too (a norm over a concatenation, as in DenseNet) is
    no site: a mask of this width's channels does not fit it. A site whose tensor holds its
    channels last (``last``: a channels-last layer norm or linear layer) is marked so."""

    def site(name: str, side: str) -> str:
        return name + (INPUT if side == "in" else "") + (LAST if (name, side) in last else "")

    whole = [name for name in producers if sides(modules[name])["out"] == width]
    norms = tuple(site(name, "out") for name in whole if isinstance(modules[name], NORMS))
    if norms:
        return norms
    readers = [name for (name, side), per_channel in members.items() if side == "in"]
    if readers and all(members[(r, "in")] == 1 and sides(modules[r])["in"] == width for r in readers):
        return tuple(site(name, "in") for name in readers)
    if not whole:
        raise UserError(
            f"{shown(producers[0])}: no layer outputs exactly the channels of this width, so they cannot "
            "be dropped alone; refusing this model"
        )
    return tuple(site(name, "out") for name in whole)


def is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels == module.out_channels
