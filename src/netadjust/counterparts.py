"""The pruning counterparts that choose widths (``compare --baseline slimming depgraph``):
the run's original network at twice its widths, trained with its method's sparsity
regulariser for the search's epochs per iteration, then pruned globally by one threshold
on a per-channel score, with no per-layer normalisation, so the method decides how many
channels each width keeps. The threshold is bisected until the kept widths cost no more
than the searched network; the search's own rescale then puts them on that cost and the
width grid, as for the L1 peer (``pruned.py``). Threshold and rescale hold the search's floor
of cuts (``cuts``): a layer everything the network sees passes through keeps enough channels
for the classes (DepGraph on torchvision's MobileNetV3-Small, without it, left its last 1x1
convolution and the classifier's hidden layer one channel each and its network trained to
82% and 79% in two seeds).

- **Network Slimming** (Liu et al., ICCV 2017): an L1 penalty ``strength * sum |gamma|``
  on the scale of every norm layer; a channel's score is |gamma| at its width's norm layers
  (their mean where a residual stream has several). Strength 1e-4: the paper's value for
  VGG on CIFAR and its code's default (the paper used 1e-5 for ResNets and DenseNets). It
  prunes only channels behind a norm layer, as the paper does: a width with none (a
  squeeze-and-excitation block's reduction) is held at the wide network's width, and only
  the rescale onto the budget changes it.
- **DepGraph's group sparsity** (Fang et al., CVPR 2023, Torch-Pruning's
  ``GroupNormPruner``): every parameter of a channel's group (the producing layers' rows,
  the norm scales and shifts, the reading layers' columns; Torch-Pruning leaves biases and
  shifts out) is decayed by ``strength * g_c``, where
  ``g_c = alpha ** ((max - I_c) / (max - min))`` grows from 1 for the width's most
  important channel to ``alpha = 16`` for its least (``I_c``: the group's squared L2
  norm); strength 1e-4, Torch-Pruning's default. A channel's score is its group's L2 norm.

Which entries hold a width's channels is read from the shapes (``inherit.layouts``), so
every space and model works: a width is scored by the parameters it sizes alone (in the
CIFAR ResNets, whose zero-padded streams align channels index by index across widths, by
each block's own layers); a width with no such parameter is refused in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .adjust import rescale
from .config import ModelSpec, Widths
from .errors import UserError
from .inherit import layouts, part
from .pruned import WIDER, kept_record, made_from
from .spaces import build, network_name, width_grid
from .store import write_json
from .train import evaluate, train_network
from .wording import plural


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    strength: float


SLIMMING = Method(
    "slimming",
    "Network Slimming (Liu et al. 2017): L1 on every norm scale, strength 1e-4 (the paper's for VGG, "
    "its code's default); pruned by one global threshold on |gamma|",
    1e-4,
)
DEPGRAPH = Method(
    "depgraph",
    "DepGraph group sparsity (Fang et al. 2023; Torch-Pruning's GroupNormPruner: strength 1e-4, its "
    "default, alpha 16); pruned by one global threshold on each channel's group L2 norm",
    1e-4,
)
METHODS = {method.name: method for method in (SLIMMING, DEPGRAPH)}
ALPHA = 16.0  # DepGraph: the least important channel of a width decays this many times faster

Part = tuple[str, int, int, int]  # (parameter name, dimension, first entry, entries per channel)


def channel_parts(model: nn.Module, spec: ModelSpec, widths: Widths, what: str) -> dict[str, list[Part]]:
    """Per width, where its channels lie in the model's parameters; refused in one line for
    a width none can be found for (channels index-aligned with other widths')."""
    parameters = dict(model.named_parameters())
    found: dict[str, list[Part]] = {name: [] for name in widths}
    for (entry, dim), layout in layouts(spec, widths).items():
        if entry not in parameters:
            continue  # running statistics
        for name in widths:
            where = part(layout, name, widths)
            if where is not None:
                found[name].append((entry, dim, *where))
    missing = [name for name, parts in found.items() if not parts]
    if missing:
        raise UserError(
            f"--baseline: {what}'s width {missing[0]} sizes no parameter of its own (its channels are "
            "aligned index by index with others'), so its channels cannot be scored; this network cannot "
            "be pruned here"
        )
    return found


def channel_slices(model: nn.Module, parts: list[Part], width: int) -> list[torch.Tensor]:
    """The width's channels in each of its parameters, as (channels, everything else)."""
    parameters = dict(model.named_parameters())
    slices = []
    for entry, dim, first, per in parts:
        tensor = parameters[entry].movedim(dim, 0)[first : first + per * width]
        slices.append(tensor.reshape(width, -1))
    return slices


def norm_scales(model: nn.Module) -> set[str]:
    """The scale parameters (gamma) of the model's norm layers."""
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    return {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, norms) and getattr(module, "weight", None) is not None
    }


def unscaled(model: nn.Module, parts: dict[str, list[Part]]) -> list[str]:
    """The widths that pass through no norm layer: Network Slimming has no scale for them."""
    scales = norm_scales(model)
    return [name for name, found in parts.items() if not any(p[0] in scales for p in found)]


def slimming_scores(model: nn.Module, parts: dict[str, list[Part]], widths: Widths) -> dict:
    """Per width behind a norm layer, each channel's |gamma| (the mean over its norm layers)."""
    scales, scores = norm_scales(model), {}
    for name, width in widths.items():
        own = [p for p in parts[name] if p[0] in scales]
        if not own:
            continue  # held (``unscaled``)
        gammas = channel_slices(model, own, width)
        scores[name] = torch.stack([gamma.detach().abs().mean(1) for gamma in gammas]).mean(0)
    return scores


def group_norms(model: nn.Module, parts: dict[str, list[Part]], widths: Widths) -> dict:
    """Per width, each channel's group L2 norm: all its parameters, wherever they lie."""
    return {
        name: sum(s.detach().pow(2).sum(1) for s in channel_slices(model, parts[name], width)).sqrt()
        for name, width in widths.items()
    }


def slimming_penalty(strength: float) -> Callable[[nn.Module], torch.Tensor]:
    """``strength`` times the summed |gamma| of the model's norm layers (the training loss's)."""

    def penalty(model: nn.Module) -> torch.Tensor:
        scales = norm_scales(model)
        return strength * sum(p.abs().sum() for name, p in model.named_parameters() if name in scales)

    return penalty


def depgraph_penalty(
    parts: dict[str, list[Part]], widths: Widths, strength: float
) -> Callable[[nn.Module], torch.Tensor]:
    """Half the weighted squared group norms, whose gradient is DepGraph's decay: each
    channel's parameters times ``strength * g_c`` (``g_c`` held constant in the step)."""

    def penalty(model: nn.Module) -> torch.Tensor:
        total = 0.0
        for name, width in widths.items():
            squares = sum(s.pow(2).sum(1) for s in channel_slices(model, parts[name], width))
            importance = squares.detach()
            spread = (importance.max() - importance.min()).clamp_min(1e-12)
            decay = ALPHA ** ((importance.max() - importance) / spread)
            total = total + 0.5 * strength * (decay * squares).sum()
        return total

    return penalty


def thresholded(
    scores: dict[str, torch.Tensor], threshold: float, held: Widths, cut_floors: Widths
) -> Widths:
    """The widths one global threshold keeps: channels scoring above it (at least one, or a
    cut's floor); the ``held`` widths, which have no scores, as they are."""
    return held | {
        name: max(cut_floors.get(name, 1), int((score > threshold).sum())) for name, score in scores.items()
    }


def thresholded_to_budget(
    scores: dict[str, torch.Tensor],
    cost: Callable[[Widths], float],
    budget: float,
    what: str,
    held: Widths | None = None,
    cut_floors: Widths | None = None,
) -> tuple[Widths, float]:
    """The widths of the lowest threshold (most channels kept) whose cost is within the
    budget, bisected over the scores themselves (the cost falls as the threshold rises),
    and the share of the scored channels removed; refused in one line where none is."""
    held, cut_floors = held or {}, cut_floors or {}
    candidates = torch.cat([score.flatten() for score in scores.values()]).unique().sort().values
    candidates = torch.cat([candidates.new_tensor([-1.0]), candidates])  # -1: keep everything
    if cost(thresholded(scores, float(candidates[-1]), held, cut_floors)) > budget:
        raise UserError(
            f"--baseline: even one channel per width of {what} (a cut's floor for a cut) costs more "
            f"than the searched network ({budget:,.0f}); no threshold reaches the budget"
        )
    if cost(thresholded(scores, float(candidates[0]), held, cut_floors)) <= budget:
        raise UserError(
            f"--baseline: {what} unpruned already costs no more than the searched network "
            f"({budget:,.0f}); there is nothing to prune"
        )
    low, high = 0, len(candidates) - 1  # cost(low) > budget >= cost(high)
    while high - low > 1:
        middle = (low + high) // 2
        if cost(thresholded(scores, float(candidates[middle]), held, cut_floors)) > budget:
            low = middle
        else:
            high = middle
    widths = thresholded(scores, float(candidates[high]), held, cut_floors)
    total = sum(len(score) for score in scores.values())
    return widths, 1 - sum(widths[name] for name in scores) / total


def counterpart(
    method: Method,
    run,
    cost: Callable[[Widths], float],
    tolerance: float,
    data,
    seed: int,
    path: Path,
    log: Callable[[str], None],
) -> dict:
    """``method``'s widths for a finished run: its original network widened, trained with
    the method's regulariser and the search's recipe, pruned to the ``cost`` of the
    searched widths and rescaled into the run's space; kept in ``path`` and reused while
    everything it was made from matches."""
    recipe, rule = run.config.recipe, run.config.rule
    wide_spec, wide, inputs, floor = made_from(run, data, seed)
    wanted = {"method": method.description, "strength": method.strength, **inputs}
    kept = kept_record(path, wanted, method.name, log)
    if kept is not None:
        return kept
    what = network_name(wide_spec)
    parts = scorable_parts(method, wide_spec, wide)
    log(
        f"{method.name}: training {what} at {WIDER}x the original widths for "
        f"{plural(recipe.epochs, 'epoch')} with its sparsity regulariser (strength "
        f"{method.strength:g}), then pruning it to the budget"
    )
    start, budget = time.perf_counter(), cost(run.final.widths)
    if method is SLIMMING:
        penalty = slimming_penalty(method.strength)
    else:
        penalty = depgraph_penalty(parts, wide, method.strength)
    model, _ = train_network(
        wide_spec, wide, data, recipe, seed=seed, label=f"{method.name}: wide", penalty=penalty
    )
    wide_test = evaluate(model, data.test, data.info)
    scores = slimming_scores(model, parts, wide) if method is SLIMMING else group_norms(model, parts, wide)
    held = {name: width for name, width in wide.items() if name not in scores}
    if held:
        log(f"{method.name}: {plural(len(held), 'width')} behind no norm layer held until the rescale")
    # the threshold keeps a cut's floor as the search does (``cuts``); the others one channel
    cut_floors = inputs.get("cut_floors", {})
    pruned, removed = thresholded_to_budget(scores, cost, budget, what, held, cut_floors)
    grid = width_grid(run.final.model, rule.round_to)
    widths = rescale(pruned, cost, budget, floor, tolerance, round_to=grid)
    record = {
        **wanted,
        "budget": budget,
        "wide_test": wide_test,
        "removed_share": removed,
        "held": sorted(held),
        "pruned_widths": pruned,
        "widths": widths,
        "seconds": time.perf_counter() - start,
    }
    write_json(path, record)
    log(
        f"{method.name}: {removed:.1%} of the wide network's scored channels removed (its test top-1 "
        f"{100 * wide_test['top1']:.2f}% before); rescaled onto the budget"
    )
    return record


def scorable_parts(method: Method, spec: ModelSpec, widths: Widths) -> dict[str, list[Part]]:
    """Where each width's channels lie (``channel_parts``); refused, before any training,
    where ``method`` can score no width."""
    with torch.device("meta"):
        model = build(spec, widths)
    parts = channel_parts(model, spec, widths, network_name(spec))
    if method is SLIMMING and len(unscaled(model, parts)) == len(widths):
        raise UserError(
            f"--baseline slimming: no width of {network_name(spec)} passes through a norm layer, so "
            "Network Slimming has no scale to prune by; use --baseline depgraph"
        )
    return parts
