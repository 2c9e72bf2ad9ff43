"""A user's model rebuilt at other widths, in place: its resizable layers (and layer
scales) sized by a plan of ``anymodel.discover``, freshly initialised, since each
iteration trains from scratch (weights are not kept, nor any custom initialisation of the
user's); and each width's share of the rebuilt model's cost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .anymodel import RESIZABLE, Plan, is_depthwise, sides
from .config import Widths
from .errors import UserError


def rebuild(model: nn.Module, plan: Plan, widths: Widths, initialise: bool = True) -> nn.Module:
    """A copy of ``model`` with its resizable layers sized for ``widths``, freshly initialised;
    or, for the plan's checks, which read only shapes, filled with zeros (``initialise``
    off: a 644M-parameter RegNet drew 22 s of random numbers for five checks)."""
    unknown = sorted(set(widths) ^ set(plan.widths))
    if unknown:
        raise UserError(f"widths {unknown[:3]} do not match the model's; `netadjust inspect` lists them")
    off_grid = [name for name, width in widths.items() if width % plan.multiples.get(name, 1)]
    if off_grid:
        name = off_grid[0]
        raise UserError(
            f"width {name} is {widths[name]}, not a multiple of {plan.multiples[name]} (the groups of its "
            "grouped layers); `netadjust inspect` shows each width's multiple"
        )
    sizes = dict(plan.fixed)
    for group in plan.groups:
        for key, per_channel in group.members.items():
            sizes[key] = sizes.get(key, 0) + per_channel * widths[group.name]
    device = torch.empty(()).device  # the meta device when counting costs
    for replaced in (_replaced(model), {}):
        copied = copy.deepcopy(model, memo=dict(replaced))
        for name, module in list(copied.named_modules()):
            if isinstance(module, RESIZABLE):
                _resize(name, module, sizes.get((name, "in"), 0), sizes[(name, "out")], device, initialise)
        if not any(id(tensor) in replaced for tensor in [*copied.parameters(), *copied.buffers()]):
            break  # else a tensor tied to a resized one is still the original's: copied in full
    copied = copied.to(device)  # after resizing: no tensor of the original's is left to convert
    for name, (dim, value) in plan.parameters.items():  # layer scales: at the value they start at
        owner, _, attribute = name.rpartition(".")
        old = copied.get_parameter(name)
        shape = (*old.shape[:dim], sizes[(name, "param")], *old.shape[dim + 1 :])
        new = torch.full(shape, value, dtype=old.dtype, device=old.device)
        setattr(copied.get_submodule(owner), attribute, nn.Parameter(new, old.requires_grad))
    return copied


def _replaced(model: nn.Module) -> dict:
    """A ``deepcopy`` memo that copies no tensor ``_resize`` replaces (the copy starts with the
    original's, never written to, and gets new ones of the new sizes): copying the weights
    only to drop them was 6 s of the RegNet's checks."""
    memo = {}
    for module in model.modules():
        if isinstance(module, RESIZABLE):
            statistics = ("running_mean", "running_var") if isinstance(module, nn.BatchNorm2d) else ()
            for tensor_name in ("weight", "bias", *statistics):
                tensor = getattr(module, tensor_name, None)
                if isinstance(tensor, torch.Tensor):
                    memo[id(tensor)] = tensor
    return memo


def _resize(
    name: str, module: nn.Module, inputs: int, outputs: int, device: torch.device, initialise: bool
) -> None:
    """Resize ``module`` in place to ``inputs`` -> ``outputs`` channels: its class (a user's
    subclass with a fused activation or standardised weights) and its other attributes stay,
    its parameters and buffers are new and initialised by the class's own reset; a
    subclass's own tensor per output channel (a standardised convolution's gain) starts at
    the mean of its old values."""
    extra = {
        tensor_name: tensor
        for tensor_name, tensor in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]
        if tensor.dim() > 0 and tensor.shape[0] == sides(module)["out"]
    }
    if isinstance(module, nn.Linear):
        module.in_features, module.out_features = inputs, outputs
        shapes = {"weight": (outputs, inputs), "bias": (outputs,)}
    elif isinstance(module, nn.BatchNorm2d):
        module.num_features = outputs
        shapes = {tensor: (outputs,) for tensor in ("weight", "bias", "running_mean", "running_var")}
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (outputs,)
        shapes = {"weight": (outputs,), "bias": (outputs,)}
    elif isinstance(module, nn.GroupNorm):
        if outputs % module.num_groups:
            raise UserError(f"{name}: {outputs} channels do not divide into its {module.num_groups} groups")
        module.num_channels = outputs
        shapes = {"weight": (outputs,), "bias": (outputs,)}
    else:
        groups = outputs if is_depthwise(module) else module.groups
        inputs = outputs if is_depthwise(module) else inputs  # its inputs are its outputs' channels
        if inputs % groups or outputs % groups:
            raise UserError(f"{name}: {inputs} -> {outputs} channels do not divide into its {groups} groups")
        module.in_channels, module.out_channels, module.groups = inputs, outputs, groups
        shapes = {"weight": (outputs, inputs // groups, *module.kernel_size), "bias": (outputs,)}
    for tensor_name, shape in shapes.items():
        old = getattr(module, tensor_name, None)
        if old is None:
            continue
        new = (torch.empty if initialise else torch.zeros)(shape, dtype=old.dtype, device=device)
        setattr(
            module,
            tensor_name,
            nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new,
        )
    if initialise:
        module.reset_parameters()
    for tensor_name, old in extra.items():
        if tensor_name not in shapes:
            value = 0.0 if old.is_meta else float(old.detach().double().mean())
            new = torch.full((outputs, *old.shape[1:]), value, dtype=old.dtype, device=device)
            setattr(
                module,
                tensor_name,
                nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new,
            )


def width_shares(model: nn.Module, plan: Plan, widths: Widths, input_shape: tuple[int, ...]) -> dict:
    """Per measure ("macs", "params") and width, ``f_i = c_i dF/dc_i`` of ``model`` built at
    ``widths``, from one traced pass. A layer's MACs and its weight are proportional to its
    input and to its output channels (a depthwise convolution's to its outputs only), its
    biases and norm scales to its outputs; each side is a sum of widths times channels per
    width, so a width's share of a side takes that share of the layer's cost. Exact, as a
    central difference of the traced count is, without rebuilding the model twice per width."""
    counter = FlopCounterMode(display=False)
    device = next(model.parameters()).device
    with counter, torch.no_grad():
        model.eval()(torch.zeros((1, *input_shape), device=device))
    flops, prefix = counter.get_flop_counts(), type(model).__name__
    modules = dict(model.named_modules())
    shares: dict[str, dict[str, float]] = {"macs": {}, "params": {}}
    for group in plan.groups:
        macs = params = 0.0
        for (name, side), per_channel in group.members.items():
            if side == "param":  # a layer scale: one entry per channel
                params += per_channel * widths[group.name] * model.get_parameter(name).requires_grad
                continue
            module = modules[name]
            if side == "in" and is_depthwise(module):
                continue  # its inputs are its outputs' channels
            fraction = per_channel * widths[group.name] / sides(module)[side]
            macs += fraction * sum(flops.get(f"{prefix}.{name}", {}).values()) / 2
            params += fraction * sum(
                p.numel()
                for p in module.parameters(recurse=False)
                if p.requires_grad and (side == "out" or p.dim() > 1)
            )
        shares["macs"][group.name], shares["params"][group.name] = macs, params
    return shares
