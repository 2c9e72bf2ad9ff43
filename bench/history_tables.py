"""docs/results.md's per-row tables of the hand-designed starts. From a run directory, per
iteration: the widths (a stage's mean, every width, or a MobileNet's block outputs and
expansions), validation and test top-1 of the network the search trained, FUR's split-half
Spearman and the MACs, then the final widths (not trained by the search). From the row in
``bench/results/quality.json``: the networks trained from scratch, with the paired
differences (a resolved one, 2 SE or more, in bold).

    .venv/bin/python bench/history_tables.py            # every table docs/results.md quotes
    .venv/bin/python bench/history_tables.py NAME STYLE  # one search's
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "runs"
SEPARATORS = {
    "means": "|---:|---|---:|---:|---:|---:|",
    "widths": "|---:|---|---|---|---:|---:|---:|---:|",
    "widths-short": "|---:|---|---|---|---:|---:|",
    "mobilenet": "|---:|---|---|---:|---:|---:|---:|---:|",
    "outputs": "|---:|---|---:|",
}
HEADERS = {
    "means": "| iteration | mean width, stages 1/2/3 | val top-1 (%) | test top-1 (%) "
    "| FUR split-half Spearman | MACs |",
    "widths": "| iteration | widths, stage 1 | stage 2 | stage 3 | val top-1 (%) | test top-1 (%) "
    "| FUR split-half Spearman | MACs |",
    "widths-short": "| iteration | widths, stage 1 | stage 2 | stage 3 | val top-1 (%) | test top-1 (%) |",
    "mobilenet": "| iteration | outputs, stages 1–7 | expansions | val top-1 (%) | test top-1 (%) "
    "| FUR split-half Spearman | MACs | params |",
    "outputs": "| iteration | block outputs | val top-1 (%) |",
}
# the tables docs/results.md quotes: (run, style), in its order
DOCUMENTED = [
    ("resnet20-poor-start", "means"),
    ("resnet20-starved", "means"),
    ("resnet20-starved-a0.5", "widths-short"),
    ("plain20-x0.5", "means"),
    ("resnet20-x0.5-a0.5", "widths"),
    ("resnet20-x0.25-a0.5", "widths"),
    ("plain20-x0.5-a0.5", "means"),
    ("mobilenetv2-small-x0.25", "mobilenet"),
    ("resnet20-x0.5-a0.25-it8", "means"),
    ("resnet20-x0.5-a0.5-local", "outputs"),
]


# the networks' tables docs/results.md quotes: (row, the original's label, the searched one's),
# in its order
NETWORKS = [
    ("resnet20-poor-start", "starved start 9/20/12", "searched from it"),
    ("resnet20-x0.5", "original 8/16/32", "searched"),
    ("resnet20-starved", "starved start 9/21/4", "searched from it"),
    ("resnet20-starved-a0.5", "starved start 9/21/4", "searched from it, a = 0.5"),
    ("plain20-x0.5", "original 8/16/32", "searched"),
    ("resnet20-x0.5-a0.5", "original 8/16/32", "searched, a = 0.5"),
    ("resnet20-x0.5-a0.5-best-val", "original 8/16/32", "iteration 5 of the a = 0.5 search"),
    ("resnet20-x0.25-a0.5", "original 4/8/16", "searched"),
    ("plain20-x0.5-a0.5", "original 8/16/32", "searched, a = 0.5"),
    ("mobilenetv2-small-x0.25", "original", "searched, a = 0.5"),
    ("resnet20-x0.5-a0.5-10ep", "original 8/16/32", "searched, a = 0.5"),
]


def networks_table(rows: dict, name: str, original_label: str, searched_label: str) -> str:
    row = rows[name]
    networks = row["networks"]
    start = "start" if "start" in original_label else "original"
    searched = "selected" if "selected_from" in row else "searched"

    def line(label: str, network: str) -> str:
        values = networks[network]
        return (
            f"| {label} | {values['macs'] / 1e6:.2f}M | {values['params'] / 1e3:.0f}k | "
            f"{100 * values['top1_mean']:.2f} ± {100 * values['top1_std']:.2f} |"
        )

    def difference(label: str, key: str) -> str:
        gain = row[key]
        text = f"{gain['mean']:+.2f} ± {gain['se']:.2f} (SE)".replace("-", "−")
        if abs(gain["mean"]) >= 2 * gain["se"]:
            text = f"**{text}**"
        return f"| {label}, paired over seeds | | | {text} |"

    lines = [
        "| network | MACs | params | test top-1 (%) |",
        "|---|---:|---:|---:|",
        line(original_label, "original"),
        line(searched_label, "searched"),
        difference(f"{searched} − {start}", "searched_minus_original"),
    ]
    if not row["uniform_is_original"]:
        lines += [
            line("uniform (the original scaled to the searched MACs)", "uniform"),
            difference(f"{searched} − uniform", "searched_minus_uniform"),
        ]
    return "\n".join(lines)


def stages(widths: dict[str, int]) -> list[list[int]]:
    """A CIFAR ResNet's or Plain net's widths per stage, in block order."""
    return [[width for name, width in widths.items() if name.startswith(f"stage{s}.")] for s in (1, 2, 3)]


def width_cells(widths: dict[str, int], style: str) -> list[str]:
    if style == "means":
        return [" / ".join(f"{statistics.fmean(stage):.1f}" for stage in stages(widths))]
    if style == "mobilenet":
        outputs = [width for name, width in widths.items() if name.endswith(".out")]
        expansions = [width for name, width in widths.items() if name.endswith(".expand")]
        return [" ".join(map(str, outputs)), " ".join(map(str, expansions))]
    if style == "outputs":  # each block's output width (conv2), stages apart
        outputs = [
            [w for name, w in widths.items() if name.startswith(f"stage{s}.") and name.endswith("conv2")]
            for s in (1, 2, 3)
        ]
        return [" \\| ".join(" ".join(map(str, stage)) for stage in outputs)]
    return [" ".join(map(str, stage)) for stage in stages(widths)]


# the columns after the widths, per style; the final widths fill only MACs and params
MEASURED = {
    "means": ("val", "test", "spearman", "macs"),
    "widths": ("val", "test", "spearman", "macs"),
    "widths-short": ("val", "test"),
    "mobilenet": ("val", "test", "spearman", "macs", "params"),
    "outputs": ("val",),
}


def measured(record: dict, column: str) -> str:
    if column in ("val", "test"):
        return f"{100 * record[column]['top1']:.2f}" if column in record else ""
    if column == "spearman":
        return f"{record['fur_stability']['spearman']:.2f}" if "fur_stability" in record else ""
    return f"{record['macs']:,}" if column == "macs" else f"{record['params'] / 1e3:.0f}k"


def iteration_table(name: str, style: str) -> str:
    run = RUNS / name
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    final = json.loads((run / "final.json").read_text())
    lines = [HEADERS[style], SEPARATORS[style]]
    for record in history:
        cells = [str(record["iteration"] + 1), *width_cells(record["widths"], style)]
        lines.append(row(cells + [measured(record, column) for column in MEASURED[style]]))
    label = "final" if style == "outputs" else "final (not trained by the search)"
    cells = [label, *width_cells(final["widths"], style)]
    lines.append(row(cells + [measured(final, column) for column in MEASURED[style]]))
    return "\n".join(lines)


def row(cells: list[str]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def main() -> None:
    if len(sys.argv) == 3:
        print(iteration_table(*sys.argv[1:3]))
        return
    rows = json.loads((RESULTS / "quality.json").read_text())
    tables = [iteration_table(name, style) for name, style in DOCUMENTED]
    tables += [networks_table(rows, *labels) for labels in NETWORKS]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
