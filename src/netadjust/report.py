"""Plots and a Markdown summary of a run directory: what the search changed, why (FUR), and
what it cost and gained. Written into ``RUN_DIR/report/``; works on unfinished runs too.
The figures are drawn by ``figures.py``."""

from __future__ import annotations

import json
from pathlib import Path

from .compare import NOISY_SPEED, mean_spread, noisy_speeds, trained_networks, width_ratio_range
from .config import BUDGET_TOLERANCE
from .cuts import cut_warning, starving_cuts
from .errors import UserError
from .export import build_call
from .figures import plot_allocation, plot_fur, plot_progress, plot_widths, searched_widths, short_name
from .latency import LATENCY_TOLERANCE
from .outcome import outcome_lines
from .rundir import IterationRecord, Run, read_run
from .spaces import network_name, width_grid
from .store import user_path, write_text
from .wording import plural


def fur_method(fur: dict, last: IterationRecord) -> str:
    """The FUR method as run, with its options (settings of older runs lack them)."""
    if last.fur_method == "second-order":
        return f"second-order ({fur.get('curvature', 'exact')} curvature)"
    return last.fur_method + (" with the control variate" if fur.get("control_variate") else "")


def budget_line(run: Run) -> str:
    if run.budget != "latency":
        return f"- budget: {run.budget} held within {BUDGET_TOLERANCE:.0%} of the original network's"
    timing, final = run.config.latency, run.final
    line = (
        f"- budget: the original network's time per {timing.mode} pass of {timing.batch} "
        f"(device {run.settings['provenance']['device_name'] or run.settings['provenance']['device']}), "
        f"held within {LATENCY_TOLERANCE:.0%} by timing candidates beside it"
    )
    if final is not None and final.latency is not None:
        line += (
            f"; timed again at the end: original {1e3 * final.original_latency:.3f} ms, searched "
            f"{1e3 * final.latency:.3f} ms ({final.latency / final.original_latency - 1:+.1%}; "
            f"the layer table estimated {1e3 * final.latency_estimate:.3f} ms)"
        )
    return line


def markdown(run: Run) -> str:
    """The summary: settings, widths table, cost and accuracy, time, FUR stability, and the
    comparison when ``netadjust compare`` has run."""
    settings, config, history = run.settings, run.config, run.history
    original, spec, recipe, rule = config.initial_widths, config.model, config.recipe, config.rule
    searched, label = searched_widths(run)
    fur = settings["fur"]  # as recorded: runs before the control variate lack it (and ran without)
    last = history[-1]
    final_macs = run.final.macs if run.final else last.next_macs
    final_params = run.final.params if run.final else last.next_params
    lines = [
        f"# Network Adjustment: {network_name(spec)} on {config.data.dataset}",
        "",
        f"Run directory `{run.path}`; {len(history)} of {plural(config.iterations, 'iteration')} done"
        + ("" if run.final else " (unfinished)")
        + ".",
        "",
        "## Settings",
        "",
        f"- network: {spec.space}, width multiplier {spec.width_mult}, padding {spec.padding}, "
        f"{spec.in_channels}×{spec.image_size}×{spec.image_size} input, {spec.num_classes} classes",
        f"- data: {settings['data_sizes']['train']} training / {settings['data_sizes']['val']} validation "
        f"(FUR) / {settings['data_sizes']['test']} test images",
        f"- training per iteration: {plural(recipe.epochs, 'epoch')}, batch {recipe.batch_size}, "
        f"lr {recipe.lr} cosine to {recipe.lr_min}, weight decay {recipe.weight_decay}, "
        f"precision {recipe.precision}",
        f"- FUR: base drop rate {fur['base_rate']}, {fur['repeats']} repeats, method {fur_method(fur, last)}",
        budget_line(run),
        f"- adjustment: k0 {rule.k0} (decay {rule.k_decay}), rate {rule.rate} "
        f"(rank decay {rule.rate_decay}), minimum width {rule.min_width}",
        f"- seed {config.seed}, device {settings['provenance']['device']}, "
        f"netadjust {settings['provenance']['netadjust']}, torch {settings['provenance']['torch']}",
        "",
        "## Widths",
        "",
        "![widths](widths.png)",
        "",
        f"| width | original | {label} | change |",
        "|---|---:|---:|---:|",
    ]
    for name, before in original.items():
        after = searched[name]
        lines.append(
            f"| `{name}` | {before} | {after} | {after - before:+d} |"
            if after != before
            else f"| `{name}` | {before} | {after} | |"
        )
    lines += [
        "",
        f"MACs {history[0].macs:,} → {final_macs:,} ({final_macs / history[0].macs - 1:+.2%}); "
        + (
            f"params {history[0].params:,} → {final_params:,}."
            if final_params
            else "params of the next widths: not recorded by the netadjust that ran this search."
        ),
        "",
    ]
    if run.final is not None:
        lines += [
            f"Rebuild it in Python: `{build_call(spec, str(run.path / 'final.json'))}`.",
        ]
    lines += [
        "",
        "## Iterations",
        "",
        "![progress](progress.png)",
        "",
        "| iteration | MACs | params | val top-1 | test top-1 | FUR split-half Spearman | grown | shrunk "
        "| train s | FUR s |",
        "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in history:
        lines.append(
            f"| {r.iteration + 1} | {r.macs:,} | {r.params:,} | {100 * r.val['top1']:.2f} | "
            f"{100 * r.test['top1']:.2f} | {r.fur_stability['spearman']:.2f} | "
            f"{', '.join(short_name(n) for n in r.grown) or '–'} | "
            f"{', '.join(short_name(n) for n in r.shrunk) or '–'} | "
            f"{r.seconds['train']:.0f} | {r.seconds['fur']:.0f} |"
        )
    totals = {phase: sum(r.seconds[phase] for r in history) for phase in ("train", "fur", "adjust")}
    lines += [
        "",
        f"Time: training {totals['train']:.0f} s, FUR {totals['fur']:.0f} s, adjust and rescale "
        f"{totals['adjust']:.1f} s in all. The accuracies above are of each iteration's network trained "
        "for the search (on the training split minus the validation split); the fair test is "
        "`netadjust compare`.",
        "",
        "## FUR",
        "",
        "![fur](fur.png)",
        "",
    ]
    lines += (
        ["## Did it pay off?", ""]
        + [f"- {line}" for line in outcome_lines(history, str(run.path), inherited=bool(run.config.inherit))]
        + [f"- {line}" for line in _cut_lines(run)]
        + [""]
    )
    lines += _comparison_section(run.path)
    return "\n".join(lines) + "\n"


def _cut_lines(run: Run) -> list[str]:
    """The warning on a starved whole network, for a finished search."""
    final = run.final
    if final is None:
        return []
    grid = width_grid(final.model, run.config.rule.round_to)
    cuts = starving_cuts(final.model, final.widths, run.config.rule.min_width, grid)
    return [cut_warning(final.original_widths, final.widths, cuts, final.model.num_classes)] if cuts else []


def _comparison_section(run_dir: Path) -> list[str]:
    path = run_dir / "compare.json"
    if not path.exists():
        return [
            "## Comparison",
            "",
            f"Not run yet: `netadjust compare {run_dir} --seeds 5` trains the original, searched and "
            "uniformly scaled networks from scratch and compares their test accuracy.",
        ]
    comparison = json.loads(path.read_text())
    n = len(comparison["seeds"])
    lines = [
        "## Comparison",
        "",
        f"Each network trained from scratch on {comparison['data_sizes']['train']} images for "
        f"{plural(comparison['recipe']['epochs'], 'epoch')}, {plural(n, 'seed')}; test top-1 / top-5 on "
        f"{comparison['data_sizes']['test']} images, mean ± sample standard deviation. Speed: "
        f"training images/s and one image's latency"
        + (f" in {comparison['latency_precision']}" if "latency_precision" in comparison else "")
        + f" on {comparison.get('device', 'the device')}, the "
        "networks timed in turns in one process (median of 5 rounds).",
        "",
        "| network | top-1 (%) | top-5 (%) | MACs | params | train img/s | latency ms | speed spread |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in trained_networks(comparison):
        row = comparison[name]
        same = f" (= {row['same_as']})" if row.get("same_as") else ""
        lines.append(
            f"| {name}{same} | {mean_spread(row['top1_mean'], row['top1_std'])} | "
            f"{mean_spread(row['top5_mean'], row['top5_std'])} | "
            f"{row['macs']:,} | {row['params']:,} | "
            + (
                f"{row['train_images_per_s']:,.0f} | {row['latency_ms']:.2f} | "
                f"±{row.get('speed_spread', 0.0):.0%}{'*' * (row.get('speed_spread', 0.0) > NOISY_SPEED)} |"
                if "train_images_per_s" in row
                else "| | |"
            )
        )
    if noisy_speeds(comparison):
        lines += [
            "",
            f"\\* the speed rounds spread by more than {NOISY_SPEED:.0%}: the machine's noise, "
            "not a difference.",
        ]
    lines.append("")
    for key, difference in comparison["difference"].items():
        other = key.removeprefix("searched_minus_")
        lines.append(
            f"- Searched − {other}: {100 * difference['top1']:+.2f} points top-1"
            + (
                f" (paired standard error {100 * difference['top1_se']:.2f})"
                if difference.get("top1_se")
                else ""
            )
            + f", {100 * difference['top5']:+.2f} top-5."
        )
    counterparts = [name for name in trained_networks(comparison) if "pruning" in comparison[name]]
    if counterparts:
        lines += ["", "The pruning counterparts, each from the original at 2× its widths trained for the "
                  "search's epochs per iteration, pruned to the searched network's cost, then rescaled "
                  "onto it in this space (figure: `allocation.png`):", ""]  # fmt: skip
    for name in counterparts:
        pruning = comparison[name]["pruning"]
        how = pruning.get("method") or f"pruned by {pruning['importance']}"
        removed = pruning.get("removed_share", pruning.get("pruning_ratio"))
        took = (
            f"; its wide training and pruning took {pruning['seconds']:.0f} s" if "seconds" in pruning else ""
        )
        lines.append(f"- {name}: {how}; {removed:.1%} of the wide network's channels removed{took}.")
    ratios = {
        name: width_ratio_range(comparison[name]["widths"], comparison["original"]["widths"])
        for name in trained_networks(comparison)
        if name != "original"
    }
    lines += ["", "Widths over the original's (least – most): " + "; ".join(
        f"{name} {low:.2f}–{high:.2f}" for name, (low, high) in ratios.items()) + "."]  # fmt: skip
    return lines


def write_report(run_dir: str | Path) -> list[Path]:
    """Render the figures and ``report.md`` into ``RUN_DIR/report/``; return their paths."""
    run = read_run(run_dir)
    if not run.history:
        raise UserError(f"{run_dir} has no completed iteration yet; report on it after the first one")
    folder = user_path(run_dir) / "report"
    folder.mkdir(exist_ok=True)
    paths = [folder / "widths.png", folder / "fur.png", folder / "progress.png", folder / "report.md"]
    plot_widths(run, paths[0])
    plot_fur(run, paths[1])
    plot_progress(run, paths[2])
    write_text(paths[3], markdown(run))
    comparison = run.path / "compare.json"
    if run.final is not None and comparison.exists():
        paths.append(folder / "allocation.png")
        plot_allocation(run, json.loads(comparison.read_text()), paths[-1])
    return paths
