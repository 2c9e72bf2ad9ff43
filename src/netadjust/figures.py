"""The figures of a run directory's report: widths per layer, FUR per iteration, the
search's progress, and every compared network's widths over the original's."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

from .compare import trained_networks
from .config import BUDGET_TOLERANCE
from .errors import UserError
from .rundir import Run
from .spaces import network_name
from .store import write_through_path


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
