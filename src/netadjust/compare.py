"""Did the search pay off? Train the original widths, the searched widths and a uniformly
scaled network of the searched cost from scratch with one recipe, for several seeds, and
compare their test accuracy: the experiment the paper's tables are made of. With
``baselines`` also the widths pruning methods give at that cost (counterparts.py: Network
Slimming, DepGraph; pruned.py: Torch-Pruning's L1 magnitude).

Every trained network is kept in ``RUN_DIR/compare/`` (``<name>-seed<k>.json`` and
``.safetensors``), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

from .adjust import closest_scaling, within_budget
from .config import BUDGET_TOLERANCE, UNITS, DataConfig, ModelSpec, Recipe, Widths
from .cost import measure, model_cost
from .counterparts import METHODS, counterpart, scorable_parts
from .data import prepare_data
from .errors import UserError
from .export import save_weights
from .latency import LATENCY_TOLERANCE, latency_model, timed_precision, timing_threads
from .pruned import check_prunable, pruned_baseline, wide_network
from .retrain import train_on_full
from .rundir import Run, read_run
from .settings import as_settings, configured
from .spaces import build, width_grid
from .speed import side_by_side, slower
from .store import check_writable, user_path, write_json
from .train import resolve_device
from .wording import plural

NETWORKS = ("original", "searched", "uniform")
BASELINES = ("pruned", "slimming", "depgraph")  # networks trained only when asked
PRUNING_KEYS = (
    "importance", "method", "strength", "wide_widths", "pruning_ratio", "removed_share",
    "pruned_widths", "seconds",
)  # fmt: skip
MATCHED = ("widths", "seed", "recipe", "dataset", "data_sizes")  # a kept result must agree on these


def budget_measure(run: Run, spec: ModelSpec) -> tuple[Callable[[Widths], int], float]:
    """The run's budget measure of any widths and its tolerance. A latency run's is the
    time on this device, timed beside the original network, with the run's layer table
    (which must be this device's) for the estimate."""
    if run.budget != "latency":
        return (lambda widths: measure(spec, widths, run.budget)), BUDGET_TOLERANCE
    config = run.config
    table = dataclasses.replace(config.latency, table=run.final.latency_table)
    model = latency_model(
        spec, table, resolve_device(config.device), config.recipe.precision, config.recipe.channels_last
    )
    model.calibrate(run.final.original_widths)  # refuses a device too noisy to time
    return model.nanoseconds, LATENCY_TOLERANCE


def candidate_widths(run: Run, spec: ModelSpec, cost: Callable[[Widths], int]) -> dict[str, Widths]:
    """The three networks: the uniform one is the original scaled by one factor to the
    searched network's ``cost`` in the run's budget measure (the original itself when
    those are equal)."""
    original, searched = run.final.original_widths, run.final.widths
    grid = width_grid(spec, run.config.rule.round_to)  # the uniform network on the same grid
    uniform = closest_scaling(original, cost, cost(searched), min_width=1, round_to=grid)
    return {"original": original, "searched": searched, "uniform": uniform}


def compare_run(
    run_dir: str | Path,
    *,
    seeds: int,
    first_seed: int = 0,
    recipe_overrides: dict | None = None,
    data_overrides: dict | None = None,
    device: str | None = None,
    force: bool = False,
    baselines: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> dict:
    """Train the three networks (and each of ``baselines``': the pruning counterparts) for
    ``seeds`` seeds; write and return ``compare.json``."""
    run_dir = user_path(run_dir)
    run = read_run(run_dir)
    if run.final is None:
        raise UserError(f"{run_dir} holds no finished search (no final.json); finish it with --resume first")
    if seeds < 1:
        raise UserError(f"--seeds is {seeds}; give at least 1")
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise UserError(f"--baseline {unknown[0]!r} is not one of {', '.join(BASELINES)}")
    baselines = tuple(name for name in BASELINES if name in baselines)  # table order, once each
    spec, config = run.final.model, run.config
    recipe = configured(Recipe, {**as_settings(config.recipe), **(recipe_overrides or {})})
    recipe.validate()
    run_data = {key: getattr(config.data, key) for key in ("dataset", "data_dir", "image_size")}
    data_config = configured(DataConfig, {**run_data, **(data_overrides or {})})
    data_config.validate()
    torch_device = resolve_device(device or config.device)
    cost, tolerance = budget_measure(run, spec)
    networks = candidate_widths(run, spec, cost)
    grid = width_grid(spec, config.rule.round_to)
    for name in baselines:  # refused here, before anything is written, where it cannot prune
        if name == "pruned":
            check_prunable(spec, networks["original"], grid)
        else:
            scorable_parts(METHODS[name], *wide_network(spec, networks["original"], grid))
    budget, uniform_cost = cost(networks["searched"]), cost(networks["uniform"])
    if not within_budget(uniform_cost, budget, tolerance):
        log(
            f"warning: no single scale factor brings the original widths within "
            f"{tolerance:.0%} of the searched network's {budget:,} {UNITS[run.budget]} (closest: "
            f"{uniform_cost:,}); the network is too narrow"
        )
    folder = run_dir / "compare"
    check_writable(folder)
    data = prepare_data(data_config, first_seed, torch_device, hold_out=False)
    expected = {
        "recipe": dataclasses.asdict(recipe),
        "dataset": data.info.name,
        "data_sizes": {"train": len(data.train), "test": len(data.test)},
    }
    seed_list = list(range(first_seed, first_seed + seeds))
    names = NETWORKS + baselines
    # the uniform network may be the original or the searched one itself: their results serve
    same_as = next((name for name in ("original", "searched") if networks["uniform"] == networks[name]), None)
    plan = [(name, seed) for name in NETWORKS for seed in seed_list]
    if same_as:
        plan = [(name, seed) for name, seed in plan if name != "uniform"]
    kept = _kept_results(folder, plan, networks, expected, force)  # stale ones refused before training
    made = {}  # each counterpart's record: its wide training, pruning and widths
    for name in baselines:
        record_path = folder / f"{name}.json"
        if name == "pruned":
            made[name] = pruned_baseline(run, cost, tolerance, data, first_seed, record_path, log)
        else:
            made[name] = counterpart(METHODS[name], run, cost, tolerance, data, first_seed, record_path, log)
        networks[name] = made[name]["widths"]
        plan += [(name, seed) for seed in seed_list]
        kept |= _kept_results(folder, plan[-len(seed_list) :], networks, expected, force)
    log(
        f"compare: {plural(len(plan), 'training')} ({', '.join(sorted({name for name, _ in plan}))}; "
        f"{seed_range(seed_list)}) of {plural(recipe.epochs, 'epoch')} "
        f"on {len(data.train)} images"
        f"{f' (the uniform network is the {same_as})' if same_as else ''}; results in {folder}"
    )
    results: dict[tuple[str, int], dict] = {}
    for name, seed in plan:
        if (name, seed) in kept:
            results[name, seed] = kept[name, seed]
            log(f"{name} seed {seed}: kept from {folder}")
            continue
        model, result = train_on_full(
            spec, networks[name], data, recipe, seed, torch_device, label=f"{name} seed {seed}"
        )
        save_weights(model, spec, networks[name], folder / f"{name}-seed{seed}.safetensors")
        write_json(folder / f"{name}-seed{seed}.json", result)
        results[name, seed] = result
        log(
            f"{name} seed {seed}: test top-1 {100 * result['test']['top1']:.2f}% "
            f"top-5 {100 * result['test']['top5']:.2f}%"
        )

    source = {name: name for name in names} | {"uniform": same_as or "uniform"}
    summary = {
        name: _summarise(networks[name], [results[source[name], seed] for seed in seed_list], spec)
        for name in names
    }
    for name, record in made.items():  # how each counterpart was made, without its inputs
        summary[name]["pruning"] = {key: record[key] for key in PRUNING_KEYS if key in record}
    if same_as:
        summary["uniform"]["same_as"] = same_as
    measured = {name: build(spec, networks[name]).to(torch_device) for name in names if source[name] == name}
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    latency_precision = timed_precision(run.config.latency, recipe.precision)
    latency_threads = timing_threads(run.config.latency, torch_device)
    speeds = side_by_side(measured, shape, spec.num_classes, recipe, latency_precision, latency_threads)
    for name in names:
        speed = speeds[source[name]]
        summary[name] |= {
            "train_images_per_s": speed["train_images_per_s"],
            "latency_ms": speed["latency_ms"],
        }
        summary[name]["speed_spread"] = speed["spread"]
    comparison = {
        **summary,
        "difference": {
            "searched_minus_original": _difference(summary["searched"], summary["original"]),
            "searched_minus_uniform": _difference(summary["searched"], summary["uniform"]),
            **{
                f"searched_minus_{name}": _difference(summary["searched"], summary[name])
                for name in baselines
            },
        },
        "seeds": seed_list,
        "recipe": expected["recipe"],
        "dataset": data.info.name,
        "data_sizes": expected["data_sizes"],
        "device": str(torch_device),
        "latency_precision": latency_precision,
        "latency_threads": latency_threads,
    }
    write_json(run_dir / "compare.json", comparison)
    log(comparison_table(comparison))
    if slower(speeds["searched"], speeds["original"]):
        pair = {name: measured[name] for name in ("original", "searched")}
        flipped = dataclasses.replace(recipe, channels_last=not recipe.channels_last)
        other = side_by_side(pair, shape, spec.num_classes, flipped, latency_precision, latency_threads)
        log(
            f"warning: at equal {run.budget} the searched network is slower than the original beyond "
            "the noise "
            f"(training {speeds['searched']['train_images_per_s']:,.0f} against "
            f"{speeds['original']['train_images_per_s']:,.0f} images/s, one image "
            f"{speeds['searched']['latency_ms']:.2f} against {speeds['original']['latency_ms']:.2f} ms on "
            f"{torch_device}); {slowness_advice(networks['searched'], recipe, speeds, other)}"
        )
    log(f"wrote {run_dir / 'compare.json'} and the trained networks in {folder}")
    return comparison


def seed_range(seeds: list[int]) -> str:
    """``seed 0`` or ``seeds 0-4``."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"


def slowness_advice(searched: Widths, recipe: Recipe, speeds: dict, flipped: dict) -> str:
    """What was measured about a searched network slower than the original: its training
    rate in the other memory format (``flipped``, timed side by side with the original), and
    how many of its widths lie off the grid of 8 that fast kernels use."""
    formats = ("channels-last", "contiguous") if recipe.channels_last else ("contiguous", "channels-last")
    flag = "--no-channels-last" if recipe.channels_last else "--channels-last"
    now, then = speeds["searched"]["train_images_per_s"], flipped["searched"]["train_images_per_s"]
    advice = []
    if then > now * (1 + max(0.05, speeds["searched"]["spread"] + flipped["searched"]["spread"])):
        advice.append(
            f"in {formats[1]} memory format it trains at {then:,.0f} images/s against {now:,.0f} in "
            f"{formats[0]} (the original: {flipped['original']['train_images_per_s']:,.0f} against "
            f"{speeds['original']['train_images_per_s']:,.0f}): train it with {flag}"
        )
    off_grid = sum(width % 8 != 0 for width in searched.values())
    if off_grid:
        advice.append(
            f"{off_grid} of its {len(searched)} widths are not multiples of 8 and may miss the fast "
            "kernels: search with --round-to 8 or 16"
        )
    return "; ".join(advice) or (
        f"the memory format does not explain it ({formats[1]}: {then:,.0f} images/s) and every width is a "
        "multiple of 8: its MACs sit in layers that run slower per MAC on this device"
    )


def _kept_results(
    folder: Path, plan: list[tuple[str, int]], networks: dict, expected: dict, force: bool
) -> dict[tuple[str, int], dict]:
    """Results of an earlier comparison that this one can reuse; one trained with other
    settings is refused (it would be overwritten) unless ``force``."""
    kept, stale = {}, []
    for name, seed in plan:
        path = folder / f"{name}-seed{seed}.json"
        if not path.exists():
            continue
        try:
            result = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            result = {}
        wanted = {**expected, "widths": networks[name], "seed": seed}
        if (
            all(result.get(key) == wanted[key] for key in MATCHED)
            and (folder / f"{name}-seed{seed}.safetensors").exists()
        ):
            kept[name, seed] = result
        else:
            stale.append(path.name)
    if stale and not force:
        raise UserError(
            f"{folder} holds results trained with other settings ({', '.join(stale[:3])}); "
            "pass --force to retrain and replace them"
        )
    return kept


def _summarise(widths: Widths, results: list[dict], spec: ModelSpec) -> dict:
    cost = model_cost(spec, widths)
    top1 = [result["test"]["top1"] for result in results]
    top5 = [result["test"]["top5"] for result in results]
    spread = lambda values: statistics.stdev(values) if len(values) > 1 else None  # noqa: E731 (one seed: undefined)
    return {
        "top1_mean": statistics.fmean(top1),
        "top1_std": spread(top1),
        "top1": top1,
        "top5_mean": statistics.fmean(top5),
        "top5_std": spread(top5),
        "top5": top5,
        "macs": cost.macs,
        "params": cost.params,
        "widths": widths,
        "seconds": [result["seconds"] for result in results],
    }


def _difference(a: dict, b: dict) -> dict:
    """Mean of the per-seed differences a - b (the same seed trains both) and, from two
    seeds on, its standard error."""
    result = {}
    for key in ("top1", "top5"):
        paired = [x - y for x, y in zip(a[key], b[key], strict=True)]
        result[key] = statistics.fmean(paired)
        result[f"{key}_se"] = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else None
    return result


def mean_spread(mean: float, spread: float | None) -> str:
    """``mean ± spread`` in %, or the mean alone where one seed leaves the spread undefined."""
    return f"{100 * mean:.2f} ± {100 * spread:.2f}" if spread is not None else f"{100 * mean:.2f}"


NOISY_SPEED = 0.2  # speed figures whose rounds spread by more are marked: the machine's noise


def speed_cells(row: dict) -> str:
    """Training images/s and latency with the spread of their rounds, a ``*`` where that
    spread makes them noise; blank for a comparison made before they were measured."""
    if "train_images_per_s" not in row:
        return f"{'':>12} {'':>11} {'':>7}"
    spread = row.get("speed_spread", 0.0)
    mark = "*" if spread > NOISY_SPEED else " "
    return f"{row['train_images_per_s']:>12,.0f} {row['latency_ms']:>11.2f} {f'{spread:.0%}':>6}{mark}"


def trained_networks(comparison: dict) -> list[str]:
    """The networks a comparison trained, in table order."""
    return [name for name in (*NETWORKS, *BASELINES) if name in comparison]


def width_ratio_range(widths: Widths, original: Widths) -> tuple[float, float]:
    """The least and the most of each width over the original's."""
    ratios = [widths[name] / original[name] for name in original]
    return min(ratios), max(ratios)


def noisy_speeds(comparison: dict) -> bool:
    """Whether any network's speed rounds spread beyond ``NOISY_SPEED`` (a busy machine)."""
    return any(
        comparison[name].get("speed_spread", 0.0) > NOISY_SPEED for name in trained_networks(comparison)
    )


def comparison_table(comparison: dict) -> str:
    """The comparison as a plain-text table (mean ± sample std over seeds, in %)."""
    n = len(comparison["seeds"])
    lines = [
        f"{'network':<10} {'top-1 (%)':>16} {'top-5 (%)':>16} {'MACs':>14} {'params':>11} "
        f"{'train img/s':>12} {'latency ms':>11} {'spread':>7}   ({n} seed" + ("s)" if n > 1 else ")")
    ]
    for name in trained_networks(comparison):
        row = comparison[name]
        note = f"  (= {row['same_as']})" if row.get("same_as") else ""
        lines.append(
            f"{name:<10} {mean_spread(row['top1_mean'], row['top1_std']):>16} "
            f"{mean_spread(row['top5_mean'], row['top5_std']):>16} "
            f"{row['macs']:>14,} {row['params']:>11,} {speed_cells(row)}{note}"
        )
    for key, difference in comparison["difference"].items():
        label = f"searched − {key.removeprefix('searched_minus_')}"
        se = difference.get("top1_se")
        lines.append(
            f"{label}: top-1 {100 * difference['top1']:+.2f} points"
            + (f" (paired standard error {100 * se:.2f})" if se is not None else "")
            + f", top-5 {100 * difference['top5']:+.2f}"
        )
    ratios = [
        f"{name} {low:.2f}–{high:.2f}"
        for name in trained_networks(comparison)
        if name != "original"
        for low, high in [width_ratio_range(comparison[name]["widths"], comparison["original"]["widths"])]
    ]
    lines.append("widths over the original's (least–most): " + "; ".join(ratios))
    if "latency_precision" in comparison:
        threads = comparison.get("latency_threads", 0)
        lines.append(
            f"latency: one image in eval mode, timed in {comparison['latency_precision']}"
            + (f" on {plural(threads, 'thread')} (--latency-threads)" if threads else "")
            + "; training on torch's threads"
        )
    if noisy_speeds(comparison):
        lines.append(
            f"* speed rounds spread by more than {NOISY_SPEED:.0%}: the machine was busy, these speeds "
            "are its noise, not the networks' difference; measure again on an idle machine"
        )
    if n < 5:
        lines.append(
            f"with {n} seed{'s' if n > 1 else ''} "
            + ("no spread can be measured" if n == 1 else "the spread is itself uncertain")
            + "; a difference worth quoting needs --seeds 5 or more, read as the mean of the "
            "paired differences and its standard error"
        )
    return "\n".join(lines)
