"""The README's table of the pruning counterparts, computed from the raw rows of
``bench/pruned_peer.py --method METHOD`` (``bench/results/METHOD_peer.json``): per row,
searched − each counterpart (paired by seed, mean ± standard error, from unrounded values)
and the range of each network's widths over the original's.

    .venv/bin/python bench/counterparts_table.py             # prints the Markdown table
    .venv/bin/python bench/counterparts_table.py --details   # per row and method, for docs/results.md
    .venv/bin/python bench/counterparts_table.py --figures   # the figures the README's text quotes
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = {  # the README's rows, in its order
    "resnet18-x0.25-a0.5-step-current": "ResNet-18 ×0.25, `--preset fmnist --step current`",
    "resnet18-x0.25-a0.5": "ResNet-18 ×0.25, `--preset fmnist`",
    "resnet18-x0.25-a0.5-params": "ResNet-18 ×0.25, `--preset fmnist`",
}
METHODS = {"slimming": "Network Slimming", "depgraph": "DepGraph", "pruned": "L1 (Torch-Pruning)"}


def peers() -> dict[str, dict]:
    return {
        method: json.loads(path.read_text())
        for method in METHODS
        if (path := RESULTS / f"{method}_peer.json").exists()
    }


def ratio_range(name: str, widths: dict[str, int]) -> tuple[float, float]:
    """The least and the most of ``widths`` over the row's original widths."""
    original = json.loads((RESULTS / "runs" / name / "final.json").read_text())["original_widths"]
    ratios = [widths[width] / original[width] for width in original]
    return min(ratios), max(ratios)


def cell(name: str, method: str, row: dict) -> str:
    widths = json.loads((RESULTS / "runs" / name / "compare" / f"{method}.json").read_text())["widths"]
    low, high = ratio_range(name, widths)
    se = row["searched_minus_pruned_se"]
    return (
        f"{100 * row['searched_minus_pruned']:+.2f} ± {100 * se:.2f} "
        f"({row['searched_minus_pruned'] / se:+.1f} SE); {low:.2f}–{high:.2f}"
    )


def table() -> str:
    found = peers()
    methods = [method for method in METHODS if method in found]
    header = "| setting | budget | searched widths / original's | " + " | ".join(
        f"searched − {METHODS[method]}; its widths / original's" for method in methods
    )
    lines = [header + " |", "|---|---|---|" + "---|" * len(methods)]
    for name, label in ROWS.items():
        rows = {method: found[method][name] for method in methods if name in found[method]}
        if not rows:
            continue
        budget = next(iter(rows.values()))["budget"]
        searched = json.loads((RESULTS / "runs" / name / "final.json").read_text())["widths"]
        low, high = ratio_range(name, searched)
        cells = [cell(name, method, rows[method]) if method in rows else "not run" for method in methods]
        lines.append(f"| {label} (`{name}`) | {budget} | {low:.2f}–{high:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details() -> str:
    """Per row and method: its command, top-1 per seed, the share of the wide network's
    channels removed, the wide network's own top-1, the widths, MACs and parameters, time."""
    lines = []
    for method, rows in peers().items():
        for name, row in rows.items():
            if name not in ROWS:
                continue
            widths = json.loads((RESULTS / "runs" / name / "compare" / f"{method}.json").read_text())[
                "widths"
            ]
            per_seed = ", ".join(f"{100 * top1:.2f}" for top1 in row["pruned_top1"])
            lines.append(
                f"**`{name}`, {method}**: `{row['command']}`. Top-1 per seed {per_seed}; "
                f"{100 * row['pruning_ratio']:.1f}% of the wide network's channels removed (its top-1 "
                f"{100 * row['wide_test_top1']:.2f}%); widths {', '.join(str(w) for w in widths.values())}; "
                f"{row['pruned_macs']:,} MACs, {row['pruned_params']:,} params; "
                f"{row['seconds_trainings'] / 60:.0f} min ({row['hardware']}).\n"
            )
    return "\n".join(lines)


def figures() -> str:
    """The figures the README's text around the table quotes, from the same rows."""
    found = {method: rows for method, rows in peers().items() if method != "pruned"}
    chosen = [(name, row) for rows in found.values() for name, row in rows.items() if name in ROWS]
    macs_rows = [(name, row) for name, row in chosen if row["budget"] == "macs"]
    differences = [row["searched_minus_pruned"] / row["searched_minus_pruned_se"] for _, row in macs_rows]
    top1 = [row["pruned_top1_mean"] for _, row in macs_rows]
    searched = [row["searched_top1_mean"] for _, row in macs_rows]
    minutes = [row["seconds_trainings"] / 60 for _, row in chosen]
    gains = [row["searched_minus_pruned"] for _, row in macs_rows]
    original = macs_rows[0][1]["original_top1_mean"]
    params = [row["pruned_params"] for _, row in macs_rows]
    lines = [
        f"equal MACs: searched − counterpart {100 * min(gains):+.2f} … {100 * max(gains):+.2f} "
        f"({min(differences):.1f} … {max(differences):.1f} SE); counterparts "
        f"{100 * min(top1):.2f}–{100 * max(top1):.2f}%, searched {100 * min(searched):.2f}–"
        f"{100 * max(searched):.2f}%, original {100 * original:.2f}%",
        f"equal MACs params: counterparts {min(params) / 1e3:.0f}k–{max(params) / 1e3:.0f}k, searched "
        + ", ".join(sorted({f"{row['searched_params'] / 1e3:.0f}k" for _, row in macs_rows})),
        "equal params: "
        + "; ".join(
            f"{method} {found[method][name]['pruned_macs'] / 1e6:.2f}M MACs, searched "
            f"{row['searched_macs'] / 1e6:.2f}M ({row['searched_macs'] / row['pruned_macs']:.1f}x)"
            for method in found
            for name, row in found[method].items()
            if name in ROWS and row["budget"] == "params"
        ),
        f"a row's wide training and five trainings: {min(minutes):.0f}–{max(minutes):.0f} min",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(details() if "--details" in sys.argv else figures() if "--figures" in sys.argv else table())
