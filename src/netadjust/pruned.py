"""The pruning peer (``compare --baseline pruned``): the widths a magnitude-pruning tool
would give at the searched network's cost, so the search is compared with what a user would
otherwise do.

The run's original network at twice its widths (a built-in space's unsearched stem doubled
with them) is trained with the run's recipe for the search's epochs per iteration, then
pruned globally by Torch-Pruning's ``MetaPruner`` with its L1 magnitude importance (each
coupled group's scores averaged over its layers and divided by their mean, Torch-Pruning's
defaults; the classifier's outputs kept), the pruning ratio bisected until the kept widths
cost no more than the searched network in the run's space and budget measure; the search's
own rescale then puts them on that cost and the width grid. The pruner only chooses
channels: its plan is read and never applied, so blocks that keep their built shapes still
prune. A width must be one group of Torch-Pruning's graph whose channels the space couples
the same way (checked; the CIFAR ResNets' zero-padded stride shortcuts are not: refused).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .adjust import Floor, rescale, scale_widths
from .anymodel import output_layer, sides, traced
from .config import ModelSpec, Widths
from .cuts import least_widths
from .dependency import require_torch_pruning
from .errors import UserError
from .rundir import Run
from .spaces import build, network_name, width_grid
from .store import write_json
from .train import evaluate, train_network
from .wording import plural

WIDER = 2  # the pruned network starts at this multiple of the run's original widths
IMPORTANCE = "L1 magnitude (Torch-Pruning MagnitudeImportance(p=1)), global"
CARRIERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.GroupNorm)


@dataclasses.dataclass
class PruningPlan:
    """A trained network's widths as Torch-Pruning's groups: which layer's outputs carry
    each width, and the layers the pruner must leave (the classifier, unsearched groups)."""

    model: nn.Module
    example: torch.Tensor
    carriers: dict[str, nn.Module]  # width name -> the layer whose outputs are its channels
    ignored: list[nn.Module]

    def removed(self, ratio: float) -> dict[str, list[int]]:
        """Per width, the channels the global pruner removes at ``ratio`` of all channels."""
        tp = require_torch_pruning()
        pruner = tp.pruner.MetaPruner(
            self.model,
            self.example,
            importance=tp.importance.MagnitudeImportance(p=1),
            global_pruning=True,
            pruning_ratio=ratio,
            ignored_layers=self.ignored,
        )
        by_module: dict[nn.Module, list[int]] = {}
        for group in pruner.step(interactive=True):  # the plan only: group.prune() is never called
            for dependency, indices in group:
                if pruner.DG.is_out_channel_pruning_fn(dependency.handler):
                    by_module[dependency.target.module] = sorted(int(i) for i in indices)
        return {name: by_module.get(module, []) for name, module in self.carriers.items()}

    def widths(self, ratio: float) -> Widths:
        """The widths left at ``ratio`` (at least one channel each)."""
        return {
            name: max(1, sides(self.carriers[name])["out"] - len(channels))
            for name, channels in self.removed(ratio).items()
        }


def pruning_plan(model: nn.Module, widths: Widths, example: torch.Tensor, what: str) -> PruningPlan:
    """The plan of ``model`` built at ``widths``; refused in one line where Torch-Pruning's
    graph does not couple the widths' channels as the model does."""
    tp = require_torch_pruning()
    model = model.eval()
    modules, sites = dict(model.named_modules()), getattr(model, "drop_sites", {})
    carriers = {}
    for name in widths:
        site = sites.get(name)
        site = site[0] if isinstance(site, tuple) else site
        found = [m for m in (modules.get(name), modules.get(site or "")) if isinstance(m, CARRIERS)]
        if not found:
            raise UserError(
                f"--baseline pruned: {what}'s width {name} has no layer of its own whose outputs are its "
                "channels (a shared tap); this space cannot be pruned here"
            )
        carriers[name] = found[0]
    outputs, _, result = traced(model, example, (nn.Conv2d, nn.Linear))
    output = output_layer(model, outputs, result)
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        groups = list(graph.get_all_groups(ignored_layers=[output], root_module_types=[nn.Conv2d, nn.Linear]))
    except Exception as error:  # a graph Torch-Pruning cannot trace: named in one line, refused
        raise UserError(f"--baseline pruned: Torch-Pruning cannot trace {what}: {error}") from None
    group_of, ignored = {}, [output]
    for index, group in enumerate(groups):
        produced = [
            dependency.target.module
            for dependency, _ in group
            if graph.is_out_channel_pruning_fn(dependency.handler)
        ]
        named = [name for name, carrier in carriers.items() if carrier in produced]
        for name in named:
            if name in group_of or widths[name] != len(group[0][1]):
                raise UserError(
                    f"--baseline pruned: Torch-Pruning's graph puts {what}'s width {name} ({widths[name]} "
                    f"channels) in a group of {len(group[0][1])} (it reads zero-padded shortcuts as "
                    "identities); this space cannot be pruned here (ResNet-18/34, plain nets, DenseNet "
                    "and --model can)"
                )
            group_of[name] = index
        if not named:  # channels the space does not search (a stem): the pruner leaves them
            ignored.append(group[0].dep.target.module)
    missing = [name for name in widths if name not in group_of]
    if missing:
        raise UserError(
            f"--baseline pruned: Torch-Pruning's graph has no group for {what}'s width {missing[0]}"
        )
    return PruningPlan(model, example, carriers, ignored)


def pruned_to_budget(
    plan: PruningPlan, cost: Callable[[Widths], float], budget: float
) -> tuple[Widths, float]:
    """The widths at the least pruning ratio (bisected) whose cost is within the budget;
    refused in one line where no ratio below 1 reaches it (Torch-Pruning leaves any group
    it would empty, so ratio 1 is the unpruned network, never a fallback)."""
    low, high, best = 0.0, 1.0, None
    for _ in range(16):
        middle = (low + high) / 2
        widths = plan.widths(middle)
        if cost(widths) > budget:
            low = middle
        else:
            high, best = middle, widths
    if best is None:
        raise UserError(
            f"--baseline pruned: no pruning ratio brings the wide network within the searched network's "
            f"cost ({budget:,.0f}; at ratio {low:.4f}: {cost(plan.widths(low)):,.0f})"
        )
    return best, high


def wide_network(spec: ModelSpec, original: Widths, grid) -> tuple[ModelSpec, Widths]:
    """The network pruning starts from: the original widths times ``WIDER`` (on the grid); a
    built-in space's stem, set by the width multiplier, widened with them."""
    wide_spec = (
        spec if spec.model is not None else dataclasses.replace(spec, width_mult=WIDER * spec.width_mult)
    )
    return wide_spec, scale_widths(original, WIDER, 1, grid)


def check_prunable(spec: ModelSpec, original: Widths, grid) -> None:
    """Refuse, before any training, a network whose widths the pruner cannot read."""
    wide_spec, wide = wide_network(spec, original, grid)
    example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
    pruning_plan(build(wide_spec, wide), wide, example, network_name(wide_spec))


def made_from(run: Run, data, seed: int) -> tuple[ModelSpec, Widths, dict, Floor]:
    """What a pruning counterpart of ``run`` is made from: the wide network (its spec and
    widths), the record of its inputs that a kept result must match, and the least width of
    each width, the search's (``cuts.least_widths``): a counterpart that starved a layer
    everything passes through would lose to the floor, not to the search."""
    spec, grid = run.final.model, width_grid(run.final.model, run.config.rule.round_to)
    wide_spec, wide = wide_network(spec, run.final.original_widths, grid)
    floor, raised = least_widths(spec, run.final.original_widths, run.config.rule.min_width)
    wanted = {
        "wide_widths": wide,
        "wide_width_mult": wide_spec.width_mult,
        "seed": seed,
        "recipe": dataclasses.asdict(run.config.recipe),
        "dataset": data.info.name,
        "data_sizes": {"train": len(data.train), "test": len(data.test)},
        "target": run.final.widths,
        "measure": run.budget,
    }
    if raised:  # only then, so that the records of networks without a raised floor still match
        wanted["cut_floors"] = raised
    return wide_spec, wide, wanted, floor


def kept_record(path: Path, wanted: dict, name: str, log: Callable[[str], None]) -> dict | None:
    """The record in ``path`` where it was made from ``wanted``, else None."""
    if path.exists():
        kept = json.loads(path.read_text())
        if all(kept.get(key) == value for key, value in wanted.items()):
            log(f"{name}: kept from {path}")
            return kept
    return None


def pruned_baseline(
    run: Run,
    cost: Callable[[Widths], float],
    tolerance: float,
    data,
    seed: int,
    path: Path,
    log: Callable[[str], None],
) -> dict:
    """The pruning peer of a finished run: its original network widened, trained with the
    search's own recipe (its epochs per iteration), pruned to the ``cost`` of the searched
    widths and rescaled into the run's space; the record, kept in ``path`` and reused while
    everything it was made from matches (the searched widths, not their cost: a timed cost
    varies)."""
    spec, recipe, rule = run.final.model, run.config.recipe, run.config.rule
    grid = width_grid(spec, rule.round_to)
    wide_spec, wide, wanted, floor = made_from(run, data, seed)
    kept = kept_record(path, wanted, "pruned", log)
    if kept is not None:
        return kept
    example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size, device=data.train.device)
    what = network_name(wide_spec)
    log(
        f"pruned: training {what} at {WIDER}x the original widths for {plural(recipe.epochs, 'epoch')} "
        f"(the search's per iteration), then pruning it to the budget"
    )
    start, budget = time.perf_counter(), cost(run.final.widths)
    model, _ = train_network(wide_spec, wide, data, recipe, seed=seed, label="pruned: wide")
    wide_test = evaluate(model, data.test, data.info)
    plan = pruning_plan(model, wide, example, what)
    pruned, ratio = pruned_to_budget(plan, cost, budget)
    widths = rescale(pruned, cost, budget, floor, tolerance, round_to=grid)
    record = {
        **wanted,
        "budget": budget,
        "importance": IMPORTANCE,
        "wide_test": wide_test,
        "pruning_ratio": ratio,
        "pruned_widths": pruned,
        "widths": widths,
        "seconds": time.perf_counter() - start,
    }
    write_json(path, record)
    log(
        f"pruned: {ratio:.1%} of the wide network's channels removed (its test top-1 "
        f"{100 * wide_test['top1']:.2f}% before); rescaled onto the budget"
    )
    return record
