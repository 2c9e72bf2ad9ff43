"""Torch-Pruning's dependency graph as netadjust uses it: imported only when asked for (the
extra ``netadjust[models]``), and its groups found with an index and a limit on the checks."""

from __future__ import annotations

import contextlib
import time

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
DISCOVERY_SECONDS = 60.0  # and after this long, where each check is slow (vision transformers' index lists)


class DiscoveryTooLong(Exception):
    """The dependency graph did not finish within ``DISCOVERY_CHECKS`` checks or
    ``DISCOVERY_SECONDS`` (its message says which)."""


@contextlib.contextmanager
def indexed_groups(tp, checks: int = DISCOVERY_CHECKS, seconds: float = DISCOVERY_SECONDS):
    """Torch-Pruning asks, for every dependency it follows, whether the growing group already
    holds that operation, by scanning the whole group and comparing index lists: quadratic in
    a group's size. While finding groups, each group also keeps a set of its index lists per
    (layer, handler), which gives the same answers sooner; and a search for groups that asks
    more than ``checks`` times (channel slices whose index sets keep multiplying: timm's
    RexNet ran for many minutes), or for longer than ``seconds``, stops."""
    group_class = tp.dependency.group.Group
    add_dep, has_pruning_op = group_class.add_dep, group_class.has_pruning_op
    asked, deadline = 0, time.monotonic() + seconds

    def indexed_add_dep(self, dep, idxs):
        add_dep(self, dep, idxs)
        self.__dict__.setdefault("_index", {}).setdefault((dep.target, dep.handler), set()).add(tuple(idxs))

    def indexed_has_pruning_op(self, dep, idxs) -> bool:
        nonlocal asked
        asked += 1
        if asked > checks:
            raise DiscoveryTooLong(f"{checks:,} checks")
        if time.monotonic() > deadline:
            raise DiscoveryTooLong(f"{seconds:.0f} s")
        return tuple(idxs) in self.__dict__.get("_index", {}).get((dep.target, dep.handler), ())

    group_class.add_dep, group_class.has_pruning_op = indexed_add_dep, indexed_has_pruning_op
    try:
        yield
    finally:
        group_class.add_dep, group_class.has_pruning_op = add_dep, has_pruning_op
