"""``--inherit``: an iteration starts from the previous iteration's trained weights carried
into its new widths, and trains briefly, instead of training from scratch (the paper's).

Where each width's channels sit in the network is read from the shapes alone: every
state entry's dimension whose size moves with a width, found by building the network (on
the meta device) with that width one step wider. A dimension that moves with several
widths additively is their concatenation, in the widths' order after the channels no
width owns (a DenseNet's inputs, a flatten's channel-major features); one that does not
(a residual stream zero-padded to its widest addend) is index-aligned: entry p stays p.

A width's channels are chosen freely only where that is free: reversing them must leave
the network's output unchanged (checked on a random batch), which fails where they are
index-aligned with others (the addends of a zero-padded residual stream), and the width
must size no group norm or grouped convolution (reversing keeps their groups whole, but
choosing or splitting channels would mix them; and any new width moves every group's
boundary, so such a carried network does not compute what it did). Where it is
free, a shrunk width keeps its most important channels, by the batch-norm scale |gamma| of
its drop site (Liu et al. 2017, network slimming: after the norm a channel's size is gamma;
free, no data pass), or the L1 norm of the site's weights where no norm is; and a grown width splits old
channels (Chen et al. 2016, Net2Net: copies of random old channels, every reader's weights
for a channel shared among its copies in random shares summing to one), so the network
computes what it did and the new channels carry something from the start. Elsewhere a
shrunk width keeps its first channels and a grown one gets fresh channels read with zero
weights (the output then moves only where a new channel is added into an existing stream
channel).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from .channel_drop import site_modules
from .errors import UserError
from .rundir import CHECKPOINT, load_checkpoint
from .spaces import ModelSpec, Widths, build, width_grid
from .wording import plural

Key = tuple[str, int]  # (state entry, dimension)


@dataclass(frozen=True)
class Layout:
    """The channels along one dimension: ``fixed`` entries no width owns, then per width of
    ``segments`` (name, entries per channel) its channels in order; ``segments`` None:
    index-aligned."""

    fixed: int
    segments: tuple[tuple[str, int], ...] | None


def _shapes(spec: ModelSpec, widths: Widths) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {name: tuple(tensor.shape) for name, tensor in build(spec, widths).state_dict().items()}


def layouts(spec: ModelSpec, widths: Widths) -> dict[Key, Layout]:
    """How every dimension that moves with a width holds the widths' channels at ``widths``
    (a network of N widths is built N + 2 times: an iteration's new widths are kept for the
    next, where they are the old)."""
    return _layouts(spec, tuple(widths.items()))


@functools.lru_cache(maxsize=2)
def _layouts(spec: ModelSpec, items: tuple[tuple[str, int], ...]) -> dict[Key, Layout]:
    widths = dict(items)
    steps = width_grid(spec, 1)
    base = _shapes(spec, widths)
    moved: dict[Key, dict[str, int]] = {}
    for name in widths:
        grown = _shapes(spec, {**widths, name: widths[name] + steps[name]})
        for entry, shape in base.items():
            for dim, (before, after) in enumerate(zip(shape, grown[entry], strict=True)):
                if after != before:
                    moved.setdefault((entry, dim), {})[name] = after - before
    together = _shapes(spec, {name: width + steps[name] for name, width in widths.items()})
    result = {}
    for (entry, dim), changes in moved.items():
        size = base[entry][dim]
        per_channel = {name: change // steps[name] for name, change in changes.items()}
        owned = sum(per * widths[name] for name, per in per_channel.items())
        additive = together[entry][dim] - size == sum(changes.values())
        exact = all(change % steps[name] == 0 for name, change in changes.items())
        if additive and exact and 0 <= owned <= size:
            result[(entry, dim)] = Layout(size - owned, tuple(per_channel.items()))
        else:
            result[(entry, dim)] = Layout(0, None)
    return result


def part(layout: Layout | None, name: str, widths: Widths) -> tuple[int, int] | None:
    """Where width ``name``'s channels start along a dimension, and entries per channel."""
    if layout is None or layout.segments is None:
        return None
    offset = layout.fixed
    for other, per in layout.segments:
        if other == name:
            return offset, per
        offset += per * widths[other]
    return None


def source_index(
    old: Layout | None, new: Layout | None, sizes: tuple[int, int], widths: tuple[Widths, Widths], kept: dict
) -> torch.Tensor | None:
    """For each entry of the new dimension, the old entry it takes (-1: a new channel's);
    None where the dimension is unchanged and no kept channel moves."""
    old_size, new_size = sizes
    if old is not None and new is not None and old.segments is not None and old == new:
        old_widths, new_widths = widths
        parts, offset = [torch.arange(old.fixed)], old.fixed
        for name, per in old.segments:
            channels = torch.full((new_widths[name],), -1)
            source = kept[name]
            channels[: len(source)] = source
            entries = channels[:, None] * per + torch.arange(per)
            parts.append(torch.where(channels[:, None] >= 0, offset + entries, -1).flatten())
            offset += per * old_widths[name]
        return torch.cat(parts)
    if old_size == new_size and (old is None or old.segments is None):
        return None
    aligned = torch.arange(new_size)
    return torch.where(aligned < old_size, aligned, -1)


def reading_weights(model: nn.Module) -> set[str]:
    """The state entries whose dimension 1 reads channels: the weights of convs and linears."""
    return {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    }


@torch.no_grad()
def carried(
    parent: dict[str, torch.Tensor],
    model: nn.Module,
    widths: tuple[Widths, Widths],
    kept: dict[str, torch.Tensor],
    maps: tuple[dict[Key, Layout], dict[Key, Layout]],
    generator: torch.Generator | None = None,
) -> None:
    """Copy ``parent`` (a state at ``widths[0]``) into ``model`` (at ``widths[1]``, freshly
    initialised): width ``w``'s new channel j is old channel ``kept[w][j]``, channels beyond
    ``kept`` are new; a new channel read by a conv or linear is read with zero weights, and
    an old channel that ``kept`` lists several times (a split) is read by each copy with a
    random share of its old weights (``generator``), the shares summing to one."""
    readers = reading_weights(model)
    for entry, fresh in model.state_dict().items():
        old = parent.get(entry)
        if old is None or old.dim() != fresh.dim():
            continue
        sources = [
            source_index(
                maps[0].get((entry, dim)), maps[1].get((entry, dim)), (old.shape[dim], size), widths, kept
            )
            for dim, size in enumerate(fresh.shape)
        ]
        if all(source is None for source in sources):
            fresh.copy_(old)
            continue
        sources = [
            torch.arange(size) if s is None else s for s, size in zip(sources, fresh.shape, strict=True)
        ]
        known = [torch.nonzero(source >= 0).flatten() for source in sources]
        gathered = old.to(fresh.device)
        for dim, (source, where) in enumerate(zip(sources, known, strict=True)):
            gathered = gathered.index_select(dim, source[where].to(fresh.device))
        fresh[torch.meshgrid(*[where.to(fresh.device) for where in known], indexing="ij")] = gathered
        if entry in readers and len(known[1]) < fresh.shape[1]:
            new_inputs = torch.nonzero(sources[1] < 0).flatten().to(fresh.device)
            fresh.index_fill_(1, new_inputs, 0.0)
        if entry in readers and len(sources[1][known[1]].unique()) < len(known[1]):
            fresh.mul_(split_shares(sources[1], generator).to(fresh).view(1, -1, *[1] * (fresh.dim() - 2)))


def split_shares(source: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per entry of a reading dimension, its share of the old weights it copies: 1 for an
    entry copied once, random positive shares summing to one among copies of the same (so
    that the copies, whose inputs are equal, differ in their gradients and drift apart)."""
    shares = torch.ones(len(source))
    for old in source[source >= 0].unique():
        copies = torch.nonzero(source == old).flatten()
        if len(copies) > 1:
            draws = 0.5 + torch.rand(len(copies), generator=generator)
            shares[copies] = draws / draws.sum()
    return shares


def channel_importance(
    model: nn.Module, name: str, widths: Widths, maps: dict[Key, Layout]
) -> torch.Tensor | None:
    """Per channel of width ``name``: |gamma| of its drop site's norms, else the L1 norm of
    the site layers' weights for it (the width's own part where the site reads a
    concatenation); None where the site has neither."""
    scores, names = [], {module: qualified for qualified, module in model.named_modules()}
    for module, on_input, _ in site_modules(model, name, model.drop_sites[name]):
        weight, entry = getattr(module, "weight", None), f"{names[module]}.weight"
        if weight is None or (on_input and getattr(module, "groups", 1) > 1):
            continue
        dim = 1 if on_input and isinstance(module, nn.Conv2d | nn.Linear) else 0
        per_entry = weight.detach().float().abs()
        if per_entry.dim() > 1:  # a layer's weights: summed over all but the channels
            per_entry = per_entry.transpose(0, dim).flatten(1).sum(1)
        where = part(maps.get((entry, dim)), name, widths)
        if where is not None:
            offset, per = where
            scores.append(per_entry[offset : offset + per * widths[name]].view(widths[name], per).sum(1))
    return torch.stack(scores).sum(0) if scores else None


def reversed_channels(parent: dict, name: str, widths: Widths, maps: dict[Key, Layout]) -> dict:
    """The entries of ``parent`` that hold width ``name``'s channels, with them reversed."""
    changed, width = {}, widths[name]
    for (entry, dim), layout in maps.items():
        where = part(layout, name, widths)
        if where is not None:
            offset, per = where
            tensor = changed.get(entry, parent[entry])
            index = torch.arange(tensor.shape[dim])
            reverse = torch.arange(width - 1, -1, -1)[:, None] * per + torch.arange(per)
            index[offset : offset + per * width] = offset + reverse.flatten()
            changed[entry] = tensor.index_select(dim, index)
    return changed


def same_output(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to the rounding of a reordered sum."""
    return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())))


@dataclass(frozen=True)
class Inheritance:
    """What was carried: the shrunk widths that kept their most important channels and
    those that kept their first; the grown widths whose new channels split old ones and
    those whose new channels are fresh (read with zero weights)."""

    by_importance: tuple[str, ...]
    first_channels: tuple[str, ...]
    split: tuple[str, ...]
    fresh: tuple[str, ...]


@torch.no_grad()
def inherit(
    parent: dict[str, torch.Tensor],
    parent_widths: Widths,
    model: nn.Module,
    spec: ModelSpec,
    widths: Widths,
    seed: int = 0,
) -> Inheritance:
    """Carry ``parent`` (trained weights at ``parent_widths``) into ``model`` (built at
    ``widths``, freshly initialised) in place. Where a width's channels can be chosen freely
    (reversing them leaves the output as it was), shrinking keeps its largest-|gamma|
    channels and growing splits old channels (Net2Net: a copy of a random old channel, the
    readers' weights for it shared among the copies), so the network computes what it did;
    elsewhere shrinking keeps the first channels and growing adds fresh ones read with zero
    weights. ``seed`` draws the channels split and the shares."""
    old_model = build(spec, parent_widths).eval()
    old_model.load_state_dict(parent)
    old_maps = layouts(spec, parent_widths)
    probe = copy.deepcopy(old_model)
    example = torch.randn(
        4, spec.in_channels, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
    )
    expected = old_model(example)
    generator = torch.Generator().manual_seed(seed)

    grouped = {name for name, step in width_grid(spec, 1).items() if step > 1}

    def free(name: str) -> bool:
        if name in grouped:  # a group norm's or grouped convolution's groups: reversing keeps
            return False  # them whole, but choosing or splitting channels would mix them
        probe.load_state_dict({**parent, **reversed_channels(parent, name, parent_widths, old_maps)})
        return same_output(probe(example), expected)

    kept = {name: torch.arange(width) for name, width in parent_widths.items()}
    chosen: dict[str, list[str]] = {"by_importance": [], "first_channels": [], "split": [], "fresh": []}
    for name, width in widths.items():
        old_width = parent_widths[name]
        if width > old_width:
            splits = free(name)
            if splits:
                extra = torch.cat(
                    [torch.randperm(old_width, generator=generator) for _ in range(width // old_width)]
                )
                kept[name] = torch.cat([kept[name], extra[: width - old_width]])
            chosen["split" if splits else "fresh"].append(name)
        elif width < old_width:
            scores = channel_importance(old_model, name, parent_widths, old_maps)
            if scores is not None and free(name):
                kept[name] = scores.topk(width).indices.sort().values
                chosen["by_importance"].append(name)
            else:
                kept[name] = kept[name][:width]
                chosen["first_channels"].append(name)
    maps = (old_maps, layouts(spec, widths))
    carried(parent, model, (parent_widths, widths), kept, maps, generator)
    return Inheritance(**{kind: tuple(names) for kind, names in chosen.items()})


def inherit_weights(
    search, iteration: int, parent: Widths, model, widths: Widths, label: str, seed: int
) -> str:
    """Carry the previous iteration's trained weights, read back from its checkpoint (so a
    resumed search starts from the very same tensors), into ``model`` at ``widths``; says
    how many widths each kind of carry moved. ``search``: the running ``search.Search``."""
    trained = search.processes.agree(lambda: load_checkpoint(search.out, iteration - 1, parent))
    if trained is None:
        raise UserError(
            f"{label}: --inherit needs the previous iteration's trained weights, but "
            f"{search.out / CHECKPOINT} no longer holds them; start again with --force"
        )
    carried = inherit(trained["model"], parent, model, search.spec, widths, seed=seed)
    kinds = (
        (carried.by_importance, "shrunk, the largest-|gamma| channels kept"),
        (carried.first_channels, "shrunk, the first channels kept (index-aligned with others)"),
        (carried.split, "grown by splitting channels"),
        (carried.fresh, "grown with fresh channels read with zero weights"),
    )
    moved = "; ".join(f"{plural(len(names), 'width')} {what}" for names, what in kinds if names)
    return moved or "the same widths"
