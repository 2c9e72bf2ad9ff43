"""Torch-Pruning's dependency graph as netadjust uses it: imported only when asked for (the
extra ``netadjust[models]``), and its groups found with an index and a limit on the checks."""

from __future__ import annotations

import contextlib
import time
import weakref

from .errors import UserError


def require_torch_pruning():
    """The Torch-Pruning module, or the one line that says how to install it."""
    try:
        import torch_pruning
    except ImportError:
        raise UserError(
            "--model needs the package torch-pruning; install it with pip install 'netadjust[models]'"
        ) from None
    return torch_pruning


# a dependency graph still growing its groups after this many checks is refused: the
# largest zoo CNNs searched need at most 8,019 (torchvision's DenseNet-201), timm's RexNet
# grew past 185,000 in 40 s; a count, not a time, so the verdict is the same on every machine
DISCOVERY_CHECKS = 50_000
# or after following this many channel indices: the zoo CNNs follow at most 1.4M (EfficientNet-V2-L),
# Swin-V2's reshaped windows 105M in 338 checks (two minutes)
DISCOVERY_INDICES = 10_000_000
DISCOVERY_SECONDS = 60.0  # and after this long, whatever the count


class DiscoveryTooLong(Exception):
    """The dependency graph did not finish within ``DISCOVERY_CHECKS`` checks,
    ``DISCOVERY_INDICES`` indices or ``DISCOVERY_SECONDS`` (its message says which)."""


@contextlib.contextmanager
def indexed_groups(
    tp,
    checks: int = DISCOVERY_CHECKS,
    seconds: float = DISCOVERY_SECONDS,
    indices: int = DISCOVERY_INDICES,
):
    """Torch-Pruning asks, for every dependency it follows, whether the growing group already
    holds that operation, by scanning the whole group and comparing index lists in order:
    quadratic in a group's size, and a reshape that returns its indices in another order
    (``list(set(...))``) sends it round a cycle again for every order it meets (ResNeSt's
    split attention: 7 s for one group). While finding groups, each group instead keeps the
    index *sets* it holds per (layer, handler): every index mapping acts on each index alone,
    so an index set already followed leads nowhere new, and the merged group, which joins
    each layer's index lists, holds the same channels (the plan reads only their counts).
    A search for groups that asks
    more than ``checks`` times (channel slices whose index sets keep multiplying: timm's
    RexNet ran for many minutes), about more than ``indices`` indices in all, or for longer
    than ``seconds``, stops.

    Torch-Pruning also recomputes every concatenation's and split's index mapping before each
    group it returns, in case the graph was pruned in between; nothing is pruned here, so the
    mapping the graph was built with is kept (DenseNet-201: 600 recomputations, 70 of 80 s)."""
    group_class = tp.dependency.group.Group
    add_dep, has_pruning_op = group_class.add_dep, group_class.has_pruning_op
    mappings = tp.dependency.index_mapping
    update_index_mapping = mappings.update_index_mapping
    asked, followed, deadline, mapped = 0, 0, time.monotonic() + seconds, weakref.WeakSet()

    def indexed_add_dep(self, dep, idxs):
        add_dep(self, dep, idxs)
        held = self.__dict__.setdefault("_index", {}).setdefault((dep.target, dep.handler), set())
        held.add(frozenset(idxs))

    def indexed_has_pruning_op(self, dep, idxs) -> bool:
        nonlocal asked, followed
        asked, followed = asked + 1, followed + len(idxs)
        if asked > checks:
            raise DiscoveryTooLong(f"{checks:,} checks")
        if followed > indices:
            raise DiscoveryTooLong(f"{indices:,} channel indices followed")
        if time.monotonic() > deadline:
            raise DiscoveryTooLong(f"{seconds:.0f} s")
        return frozenset(idxs) in self.__dict__.get("_index", {}).get((dep.target, dep.handler), ())

    def update_index_mapping_once(graph) -> None:
        if graph not in mapped:
            update_index_mapping(graph)
            mapped.add(graph)

    group_class.add_dep, group_class.has_pruning_op = indexed_add_dep, indexed_has_pruning_op
    mappings.update_index_mapping = update_index_mapping_once
    try:
        yield
    finally:
        group_class.add_dep, group_class.has_pruning_op = add_dep, has_pruning_op
        mappings.update_index_mapping = update_index_mapping
