"""Does the step rule decide how often a search undoes its moves, and what it gains? The
default's rows of ``bench/quality.py`` searched with the reference's step (a share of the
initial width) and with ``--step lesser`` (a share of the lesser of the initial and current
width), three searches each, every searched network trained over the same training seeds
against the same original trainings: the two rows the rule was chosen on, and MobileNetV2
x0.5, where it was not (there the reference step's searches predate the floor of cuts, so
that row's difference is the step's and the floor's together).

Per row and rule: the moves the next iteration undid in each search (and how many random
rankings would undo), searched − original over the searches (``search_seeds.across``: mean
± SE, and each search's), and each search's cost in final trainings. Then lesser − initial:
the difference of the two means, its SE the two SEs combined as independent (conservative:
the shared original trainings cancel in the difference but count in both).

    .venv/bin/python bench/step_rules.py   # prints the table; docs/results.md quotes it
"""

from __future__ import annotations

import json
import math

from netadjust.outcome import reversals
from netadjust.rundir import read_history
from search_seeds import RESULTS, search_names, summarised

# (label, the row with the reference's step; with --step lesser it is the row + "-lesser")
PAIRS = [
    ("ResNet-18 ×0.25, equal parameters", "resnet18-x0.25-params-default-lr0.05"),
    ("MobileNetV3-Small, equal MACs", "tv-mobilenet-v3-small-default"),
    # the row the rule was not chosen on; the reference step's searches there predate the floor of cuts
    (
        "MobileNetV2 ×0.5, equal MACs (reference's step before the floor of cuts)",
        "tv-mobilenet-v2-x0.5-default-lr0.05",
    ),
]
RULES = (("initial", ""), ("lesser", "-lesser"))
RUNS = RESULTS / "runs"


def undone(name: str) -> tuple[int, int, float]:
    return reversals(read_history(RUNS / name))


def rule_row(rows: dict, label: str, row: str, rule: str) -> tuple[str, dict]:
    summary = summarised(rows, row)
    moves = [undone(search["name"]) for search in summary["searches"]]
    gain = summary["searched_minus_original"]
    cells = [
        label,
        f"`{rule}`",
        ", ".join(f"{count} of {total}" for count, total, _ in moves) + f" ({moves[0][2]:.1f})",
        f"{gain['mean']:+.2f} ± {gain['se']:.2f} ("
        + ", ".join(f"{value:+.2f}" for value in gain["per_search"])
        + ")",
        ", ".join(f"{value:.2f}" for value in summary["search_in_trainings"]),
    ]
    return "| " + " | ".join(cells) + " |", gain


def table(rows: dict | None = None) -> str:
    rows = rows if rows is not None else json.loads((RESULTS / "quality.json").read_text())
    lines = [
        "| row | `--step` | moves undone per search (by chance) | searched − original over searches "
        "± SE (each search) | search in final trainings |",
        "|---|---|---|---|---|",
    ]
    for label, row in PAIRS:
        for rule, suffix in RULES:
            if f"{row}{suffix}" in rows:
                lines.append(rule_row(rows, label, f"{row}{suffix}", rule)[0])
    differences = [f"{label}: lesser − initial {phrase}" for label, phrase in lesser_minus_initial(rows)]
    return "\n".join(lines) + "\n\n" + "\n".join(differences)


def lesser_minus_initial(rows: dict | None = None) -> list[tuple[str, str]]:
    """Per row with both rules: lesser's mean gain over searches minus the reference step's,
    ± the two SEs combined, and the ratio (from unrounded values), as the README quotes it."""
    rows = rows if rows is not None else json.loads((RESULTS / "quality.json").read_text())
    found = []
    for label, row in PAIRS:
        if not all(f"{row}{suffix}" in rows for _, suffix in RULES):
            continue
        initial, lesser = (summarised(rows, row + suffix)["searched_minus_original"] for _, suffix in RULES)
        difference, se = lesser["mean"] - initial["mean"], math.hypot(lesser["se"], initial["se"])
        phrase = f"{difference:+.2f} ± {se:.2f} points ({difference / se:+.1f} SE)".replace("-", "−")
        found.append((label, phrase))
    return found


def undone_block(rows: dict | None = None) -> str:
    """``bench/undone_moves.py``'s summary of every search of the table, the reference's step's
    first: what the undone moves were."""
    import undone_moves

    return "\n".join(undone_moves.summary(RUNS / name) for name in searched(rows))


def searched(rows: dict | None = None) -> list[str]:
    """Every search of the table's rows, in its order."""
    rows = rows if rows is not None else json.loads((RESULTS / "quality.json").read_text())
    return [name for _, row in PAIRS for _, suffix in RULES for name in search_names(rows, row + suffix)]


def undone_by_rule(rows: dict) -> dict[str, list[list[tuple[int, int, float]]]]:
    """Per rule, per row of ``PAIRS``: each search's undone moves (``undone``)."""
    return {
        rule: [[undone(name) for name in search_names(rows, row + suffix)] for _, row in PAIRS]
        for rule, suffix in RULES
    }


def undone_counts(rows: dict | None = None) -> str:
    """The sentence the results notes give the undone moves: per row, lesser's moves undone of
    all its searches' moves (each search's), against the reference step's."""
    rows = rows if rows is not None else json.loads((RESULTS / "quality.json").read_text())
    counts = undone_by_rule(rows)
    parts = []
    for (label, _), initial, lesser in zip(PAIRS, counts["initial"], counts["lesser"], strict=True):
        parts.append(
            f"{sum(u[0] for u in lesser)} of {sum(u[1] for u in lesser)} moves "
            f"({', '.join(str(u[0]) for u in lesser)}) on {label.split(',')[0]} against "
            f"{sum(u[0] for u in initial)} ({', '.join(str(u[0]) for u in initial)})"
        )
    return "The next iteration undid " + ", ".join(parts)


def undone_phrase(rows: dict | None = None) -> str:
    """The README's words for the same counts: lesser's moves undone per row, all its searches
    together, against the reference step's."""
    rows = rows if rows is not None else json.loads((RESULTS / "quality.json").read_text())
    counts = undone_by_rule(rows)
    totals = {sum(moves[1] for moves in searches) for rule in counts for searches in counts[rule]}
    if len(totals) != 1:
        raise ValueError(f"the rows' searches made different numbers of moves ({sorted(totals)})")

    def listed(rule: str) -> str:
        values = [str(sum(moves[0] for moves in searches)) for searches in counts[rule]]
        return ", ".join(values[:-1]) + " and " + values[-1]

    moves = totals.pop()
    return f"undid {listed('lesser')} of {moves} moves where the reference's step undid {listed('initial')}"


if __name__ == "__main__":
    print(table() + "\n\n" + undone_block())
