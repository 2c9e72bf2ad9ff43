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

from netadjust.compare import width_ratio_range

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = {  # the README's rows, in its order
    "resnet18-x0.25-a0.5-step-current": "ResNet-18 ×0.25, `--preset fmnist --step current`",
    "resnet18-x0.25-a0.5": "ResNet-18 ×0.25, `--preset fmnist`",
    "resnet18-x0.25-a0.5-params": "ResNet-18 ×0.25, `--preset fmnist`",
    "tv-mobilenet-v3-small-a0.5": "torchvision's MobileNetV3-Small, a = 0.5",
    "tv-mobilenet-v2-x0.5-default-lr0.05": "torchvision's MobileNetV2 ×0.5, the default search then",
}
LAST_CUTS = (  # the two last widths everything passes through, those a row's model has
    *("features.12.0", "classifier.0"),  # MobileNetV3-Small: last 1x1 convolution, classifier's hidden layer
    *("features.17.conv.2", "features.18.0"),  # MobileNetV2: last block's projection, last 1x1 convolution
)
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
    return width_ratio_range(widths, original)


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


def figures() -> list[str]:
    """The phrases the README's text around the table quotes, from the same rows (minus signs
    as the README writes them; SE ratios from unrounded values)."""
    found = {method: rows for method, rows in peers().items() if method != "pruned"}
    chosen = [  # the ResNet-18 rows: the zoo rows' cells are in the table
        (name, row)
        for rows in found.values()
        for name, row in rows.items()
        if name in ROWS and "resnet18" in name
    ]
    macs_rows = [(name, row) for name, row in chosen if row["budget"] == "macs"]
    params_rows = [(name, row) for name, row in chosen if row["budget"] == "params"]
    losses = [-100 * row["searched_minus_pruned"] for _, row in macs_rows]
    ratios = [abs(row["searched_minus_pruned"] / row["searched_minus_pruned_se"]) for _, row in macs_rows]
    top1 = [100 * row["pruned_top1_mean"] for _, row in macs_rows]
    searched = [100 * row["searched_top1_mean"] for _, row in macs_rows]
    params = [row["pruned_params"] / 1e3 for _, row in macs_rows]
    searched_params = sorted({row["searched_params"] for _, row in macs_rows})

    def pair(values: list[str]) -> str:
        return " and ".join(values)

    phrases = [
        f"by {min(losses):.2f}–{max(losses):.2f} points ({min(ratios):.1f}–{max(ratios):.1f} SE, "
        f"{len(macs_rows[0][1]['pruned_top1'])} seeds, {len({name for name, _ in macs_rows})} rows)",
        f"{min(top1):.2f}–{max(top1):.2f}% against the searched {min(searched):.2f}–{max(searched):.2f}% "
        f"and the original {100 * macs_rows[0][1]['original_top1_mean']:.2f}%",
        f"({min(params):.0f}k–{max(params):.0f}k against "
        + pair([f"{value / 1e3:.0f}k" for value in searched_params])
        + ")",
        "("
        + ", ".join(
            f"{100 * row['searched_minus_pruned']:+.2f} ± {100 * row['searched_minus_pruned_se']:.2f}"
            for _, row in params_rows
        ).replace("-", "−")
        + ")",
        "with "
        + pair([f"{row['searched_macs'] / row['pruned_macs']:.1f}×" for _, row in params_rows])
        + " fewer MACs",
        "the counterparts with "
        + pair([f"{row['pruned_macs'] / 1e6:.2f}M" for _, row in params_rows])
        + f" MACs where the search spends {params_rows[0][1]['searched_macs'] / 1e6:.2f}M",
    ]
    return phrases


def zoo_figures() -> list[str]:
    """The phrases the README quotes of the zoo rows: per measured counterpart, searched − it
    (SE ratio from unrounded values), its top-1 against the searched and the original
    networks', and the widths it left at the two layers everything passes through last (the
    floor of cuts holds them against its threshold; a layer without a norm scale Network
    Slimming does not threshold)."""
    phrases = []
    for method, rows in peers().items():
        for name, row in rows.items():
            if name not in ROWS or not name.startswith("tv-"):
                continue
            difference, se = 100 * row["searched_minus_pruned"], 100 * row["searched_minus_pruned_se"]
            record = json.loads((RESULTS / "runs" / name / "compare" / f"{method}.json").read_text())
            final = json.loads((RESULTS / "runs" / name / "final.json").read_text())
            original, searched = final["original_widths"], final["widths"]
            last = [layer for layer in LAST_CUTS if layer in record["widths"]]
            top1 = {key: 100 * row[f"{key}_top1_mean"] for key in ("pruned", "searched", "original")}
            phrases += [
                f"{difference:+.2f} ± {se:.2f} points ({difference / se:.1f} SE, "
                f"{len(row['pruned_top1'])} seeds, one search), {METHODS[method]}'s network at "
                f"{top1['pruned']:.2f}% against the searched {top1['searched']:.2f}% and the original "
                f"{top1['original']:.2f}%".replace("-", "−"),
                *(f"{layer} {record['widths'][layer]:,} of {original[layer]:,}" for layer in last),
                "searched network has " + " and ".join(f"{searched[layer]:,}" for layer in last),
            ]
    return phrases


if __name__ == "__main__":
    import sys

    print(
        details()
        if "--details" in sys.argv
        else "\n".join(figures() + zoo_figures())
        if "--figures" in sys.argv
        else table()
    )
