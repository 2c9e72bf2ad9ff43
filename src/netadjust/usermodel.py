"""A user's model served to the search: built from its factory, its plan discovered and
checked, and rebuilt at the widths asked for with their drop sites.

Torch-Pruning treats operations it does not know as element-wise (a zero-padded shortcut, a
channel shuffle). So every plan is checked before use: a width whose change alone stops the
model from running is held at its size; then, rebuilt at two seeded random width sets, the
model must run, give the same output shape, and be found to have exactly those widths;
anything else is refused. The checks read only shapes, so they run on the meta device, and
on real tensors where that fails.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import torch
from torch import nn

from .anymodel import Plan, discover, holding, refuse_unsupported
from .config import ModelSpec, Widths
from .dependency import require_torch_pruning
from .errors import UserError
from .factories import check_runs, first_line, instantiate
from .resize import rebuild


@functools.lru_cache(maxsize=8)
def user_plan(spec: ModelSpec) -> tuple[nn.Module, Plan]:
    """The user's model of ``spec`` (at its own widths, on the CPU) and its checked plan."""
    require_torch_pruning()  # before the user's code is imported
    with torch.device("cpu"):
        model = instantiate(spec.model, spec.num_classes, spec.in_channels, spec.model_args)
        refuse_unsupported(model)  # by name, before the model is run
        shape = check_runs(model, spec.model, spec.in_channels, spec.image_size)
        example = torch.randn(
            2, spec.in_channels, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
        )
        return model, checked_plan(model, example, shape)


def user_model(spec: ModelSpec, widths: Widths) -> nn.Module:
    """The user's model rebuilt at ``widths``, with the drop sites of its widths."""
    model, plan = user_plan(spec)
    rebuilt = rebuild(model, plan, widths)
    rebuilt.drop_sites = {
        group.name: group.sites if len(group.sites) > 1 else group.sites[0] for group in plan.groups
    }
    return rebuilt


def random_widths(plan: Plan, seed: int) -> Widths:
    """Seeded widths between half and twice each group's, on each width's multiple."""
    rng = random.Random(seed)
    widths = {}
    for group in plan.groups:
        multiple = plan.multiples.get(group.name, 1)
        widths[group.name] = multiple * max(1, round(group.width * rng.uniform(0.5, 2.0) / multiple))
    return widths


def checked_plan(model: nn.Module, example: torch.Tensor, shape: torch.Size | None = None) -> Plan:
    """``discover``, then the check that makes its plan safe to use (see the module's text);
    a width that the model cannot run without (a split by a count fixed when it was built)
    is held at its size. ``shape``: the model's output shape on ``example``, where known."""
    plan = discover(model, example)
    if not plan.groups:
        raise UserError(
            "no searchable widths found in this model (no convolution or linear layer feeds another)"
        )
    shape = shape or run(model, example).shape
    try:
        check_at(model, plan, 0, example, shape)
    except DoesNotRun as failure:
        plan = holding(plan, breaking_widths(model, plan, example, failure))
        check_at(model, plan, 0, example, shape)
    check_at(model, plan, 1, example, shape)
    return plan


class DoesNotRun(UserError):
    """The model rebuilt at a plan's widths fails to run."""


def check_at(model: nn.Module, plan: Plan, seed: int, example: torch.Tensor, shape: torch.Size) -> None:
    """Refuse the plan unless ``model`` rebuilt at its seeded random widths runs, gives
    ``shape`` and is found again with those widths: on the meta device first (shapes only,
    no memory, no arithmetic: a 644M-parameter RegNet's checks took 23 s on the CPU); where
    that fails (also where meta tensors cannot run the model: a value read, an operation
    without a meta kernel) the check on real tensors decides."""
    widths = random_widths(plan, seed)
    meta_first(lambda inputs: check_widths(model, plan, widths, inputs, shape), example)


def meta_first(check: Callable[[torch.Tensor], None], example: torch.Tensor) -> None:
    """``check`` on the meta device; where it fails there, on ``example`` itself, whose
    outcome stands."""
    try:
        with torch.device("meta"):
            check(example.to("meta"))
        return
    except Exception:  # any failure on meta tensors is decided on real ones
        pass
    check(example)


def check_widths(
    model: nn.Module, plan: Plan, widths: Widths, example: torch.Tensor, shape: torch.Size
) -> None:
    rebuilt = rebuild(model, plan, widths, initialise=False)
    try:
        output = run(rebuilt, example)
    except (RuntimeError, ValueError) as error:
        raise DoesNotRun(
            f"the model does not run at other widths ({first_line(error)}); refusing it"
        ) from None
    if output.shape != shape:
        raise UserError(f"at other widths the model's output is {tuple(output.shape)}, not {tuple(shape)}")
    again = discover(rebuilt, example).widths
    if any(again.get(name) != width for name, width in widths.items()):
        differing = [name for name in widths if again.get(name) != widths[name]][:3]
        raise UserError(
            f"the model rebuilt at other widths is not found again as built (widths {differing}): "
            "some operation ties channels in a way netadjust cannot follow; refusing it"
        )


def run(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(example)


def breaking_widths(
    model: nn.Module, plan: Plan, example: torch.Tensor, failure: DoesNotRun
) -> dict[str, str]:
    """Each width whose change alone stops the model from running (its code splits or slices
    channels by a count fixed when it was built), with why: those are held at their size.
    Where there is none, ``failure`` (the model at random widths) stands."""
    reasons = {}
    for group in plan.groups:
        step = plan.multiples.get(group.name, 1)
        for changed in (max(step, group.width // 2 // step * step), 2 * group.width):  # narrower, wider
            error = run_error(model, plan, {**plan.widths, group.name: changed}, example)
            if error:
                reasons[group.name] = f"the model does not run when it changes ({first_line(error)})"
                break
    if not reasons:
        raise failure
    return reasons


def run_error(model: nn.Module, plan: Plan, widths: Widths, example: torch.Tensor) -> Exception | None:
    """Why ``model`` rebuilt at ``widths`` does not run, else None (``meta_first``)."""
    try:
        meta_first(lambda inputs: run(rebuild(model, plan, widths, initialise=False), inputs), example)
    except (RuntimeError, ValueError) as error:
        return error
    return None
