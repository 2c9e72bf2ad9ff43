"""Plots and a Markdown summary of a run directory: what the search changed, why (FUR), and
what it cost and gained. Written into ``RUN_DIR/report/``; works on unfinished runs too."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

from .compare import NOISY_SPEED, mean_spread, noisy_speeds, trained_networks, width_ratio_range
from .config import BUDGET_TOLERANCE
from .errors import UserError
from .export import build_call
from .latency import LATENCY_TOLERANCE
from .outcome import outcome_lines
from .rundir import IterationRecord, Run, read_run
from .spaces import network_name
from .store import user_path, write_text, write_through_path
from .wording import plural


def fur_method(fur: dict, last: IterationRecord) -> str:
    """The FUR method as run, with its options (settings of older runs lack them)."""
    if last.fur_method == "second-order":
        return f"second-order ({fur.get('curvature', 'exact')} curvature)"
    return last.fur_method + (" with the control variate" if fur.get("control_variate") else "")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "netadjust report needs matplotlib; install it with pip install 'netadjust[report]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def searched_widths(run: Run) -> tuple[dict[str, int], str]:
    """The result so far and how to call it: final.json, or the last iteration's output."""
    if run.final is not None:
        return run.final.widths, "searched"
    return run.history[-1].next_widths, f"after iteration {len(run.history)} (unfinished)"


def stages(names: list[str]) -> list[tuple[str, int, int]]:
    """(label, first index, last index) of each run of names sharing their first component."""
    result, start = [], 0
    for label, members in groupby(names, key=lambda name: name.split(".")[0]):
        count = len(list(members))
        result.append((label, start, start + count - 1))
        start += count
    return result


def short_name(name: str) -> str:
    """``stage2.block0.conv1`` -> ``s2.b0.c1``: tick labels that fit."""
    return ".".join(part[0] + "".join(ch for ch in part if ch.isdigit()) for part in name.split("."))


def _mark_stages(axes, names: list[str]) -> None:
    parts = stages(names)
    for label, first, last in parts:
        if first > 0:
            axes.axvline(first - 0.5, color="0.6", linestyle="--", linewidth=0.8)
        axes.text(
            (first + last) / 2, 1.01, label, transform=axes.get_xaxis_transform(), ha="center", va="bottom"
        )
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels([short_name(name) for name in names], rotation=90, fontsize=7)
    axes.set_xlim(-0.6, len(names) - 0.4)


def plot_widths(run: Run, path: Path) -> None:
    plt = _pyplot()
    original = run.config.initial_widths
    names = list(original)
    searched, label = searched_widths(run)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.28 * len(names) + 2), 4.2))
    x = range(len(names))
    earlier = run.history[1:]
    shades = plt.get_cmap("Blues")
    for index, record in enumerate(earlier):  # later iterations darker
        shade = shades(0.3 + 0.45 * (index + 1) / len(earlier))
        axes.plot(x, [record.widths[n] for n in names], color=shade, linewidth=1.1)
    axes.step(x, [original[n] for n in names], where="mid", color="0.35", linewidth=1.6, label="original")
    axes.plot(
        x, [searched[n] for n in names], "o-", color="tab:blue", markersize=3.5, linewidth=1.6, label=label
    )
    if earlier:
        axes.plot([], [], color=shades(0.55), label=f"iterations 2–{len(run.history)} (lighter: earlier)")
    _mark_stages(axes, names)
    axes.set_ylabel("channels")
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    title = network_name(run.config.model)
    axes.set_title(f"{title}: widths per layer, forward order", pad=18)
    _save(figure, path)


def plot_allocation(run: Run, comparison: dict, path: Path) -> None:
    """Each width's channels over the original's, for the searched network and every other
    network the comparison trained (log scale): who moved capacity where."""
    plt = _pyplot()
    original = run.final.original_widths
    names = list(original)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.28 * len(names) + 2), 4.2))
    x = range(len(names))
    axes.axhline(1.0, color="0.35", linewidth=1.4, label="original")
    for name in trained_networks(comparison):
        if name == "original" or comparison[name].get("same_as"):
            continue
        widths = comparison[name]["widths"]
        style = {"searched": ("o-", "tab:blue"), "uniform": ("--", "0.6")}.get(name, (".-", None))
        axes.plot(
            x, [widths[n] / original[n] for n in names], style[0], color=style[1], markersize=3.5,
            linewidth=1.4, label=name,
        )  # fmt: skip
    _mark_stages(axes, names)
    axes.set_yscale("log")
    axes.set_ylabel("channels / original's")
    axes.grid(axis="y", alpha=0.3, which="both")
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title(f"{network_name(run.config.model)}: each width over the original's, at equal cost", pad=18)
    _save(figure, path)


def plot_fur(run: Run, path: Path) -> None:
    """Heat map, one row per iteration: FUR scaled by the row's largest magnitude (scales
    differ between iterations), grown layers marked ▲, shrunk ▼."""
    plt = _pyplot()
    names = list(run.config.initial_widths)
    rows = []
    for record in run.history:
        values = [record.fur[n] for n in names]
        peak = max(abs(v) for v in values) or 1.0
        rows.append([v / peak for v in values])
    figure, axes = plt.subplots(figsize=(max(6.0, 0.28 * len(names) + 2.5), max(3.0, 1.6 + 0.45 * len(rows))))
    image = axes.imshow(rows, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    for row, record in enumerate(run.history):
        for name in record.grown:
            axes.text(names.index(name), row, "▲", ha="center", va="center", fontsize=7)
        for name in record.shrunk:
            axes.text(names.index(name), row, "▼", ha="center", va="center", fontsize=7)
    _mark_stages(axes, names)
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([f"iter {r.iteration + 1}" for r in run.history], fontsize=8)
    bar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    # on two lines, so that the label fits beside the bar (one line was cut at the figure's edge)
    bar.set_label("FUR / max |FUR|\n(blue, < 0: the loss fell when dropped: noise)", fontsize=7)
    axes.set_title("FLOPs utilisation ratio per layer (▲ grown, ▼ shrunk)", pad=18)
    _save(figure, path)


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


def plot_progress(run: Run, path: Path) -> None:
    _save(progress_figure(run), path)


def progress_figure(run: Run):
    """Validation/test top-1, MACs and parameters per iteration, on one shared x-axis."""
    plt = _pyplot()
    iterations = [r.iteration + 1 for r in run.history]
    held = run.budget
    figure, (accuracy, macs, params) = plt.subplots(1, 3, figsize=(11, 3.4), sharex=True)
    accuracy.plot(iterations, [100 * r.val["top1"] for r in run.history], "o-", label="validation")
    accuracy.plot(iterations, [100 * r.test["top1"] for r in run.history], "s--", label="test")
    accuracy.set_ylabel("top-1 (%)")
    accuracy.legend(fontsize=8)
    for axes, key, scale, label, colour in (
        (macs, "macs", 1e6, "MMACs", "tab:blue"),
        (params, "params", 1e3, "parameters (thousands)", "tab:green"),
    ):
        axes.plot(iterations, [getattr(r, key) / scale for r in run.history], "o-", color=colour)
        result = getattr(run.history[-1], f"next_{key}")  # next_params: runs of netadjust >= 0.1.0 only
        if result is not None:
            axes.plot(
                [iterations[-1] + 1],
                [result / scale],
                "o",
                color=colour,
                fillstyle="none",
                label="searched (not trained)",
            )
        if key == held:
            budget = getattr(run.history[0], key) / scale
            span = [iterations[0], iterations[-1] + 1]
            axes.axhline(budget, color="0.5", linestyle=":", label="budget")
            band = (1 - BUDGET_TOLERANCE) * budget, (1 + BUDGET_TOLERANCE) * budget
            axes.fill_between(span, *band, color="0.85", label=f"±{BUDGET_TOLERANCE:.0%}")
        axes.set_ylabel(label)
        if axes.get_legend_handles_labels()[0]:  # empty when not the budget and no result recorded
            axes.legend(fontsize=8)
    for axes in (accuracy, macs, params):  # one x-axis for all three: the iterations, then the result
        axes.set_xticks(iterations + [iterations[-1] + 1])
        # an unfinished run's last point is the next iteration's widths, not the search's result
        axes.set_xticklabels([str(i) for i in iterations] + ["final" if run.final is not None else "next"])
        axes.set_xlim(iterations[0] - 0.5, iterations[-1] + 1.5)
        axes.set_xlabel("iteration")
        axes.grid(alpha=0.3)
    figure.suptitle("search progress: each iteration's network, trained for the search")
    return figure


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    write_through_path(
        path, lambda temporary: figure.savefig(temporary, dpi=130, format="png", bbox_inches="tight")
    )
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)


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
        + [
            f"- {line}"
            for line in outcome_lines(history, str(run.path), inherited=run.config.inherit is not None)
        ]
        + [""]
    )
    lines += _comparison_section(run.path)
    return "\n".join(lines) + "\n"


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
        lines.append(f"- {name}: {how}; {removed:.1%} of the wide network's channels removed.")
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
