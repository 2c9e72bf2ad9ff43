"""Does a search settle or swing? Moves undone by the next iteration, per recorded search.

For every finished search under ``bench/results/runs`` with at least two iterations (a copy of a
search, compared another way, counts once): how many of its moves (a width grown or
shrunk) the next iteration undid, how many random rankings would undo on average (the
figure ``netadjust search`` prints at its end), and the Spearman correlation between
consecutive iterations' FUR over the widths. A search heading
somewhere repeats its moves and its FUR correlates positively from one iteration to the
next; one whose steps overshoot undoes them and its FUR ranking flips sign.

    .venv/bin/python bench/oscillation.py > bench/results/oscillation.txt
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from netadjust.fur import spearman
from netadjust.outcome import reversals
from netadjust.rundir import read_history

RUNS = Path(__file__).resolve().parent / "results" / "runs"


# the searches docs/results.md's table shows, in its order, with a note after the name
DOCUMENTED = {
    "resnet20-starved": "",
    "resnet20-starved-a0.5": "",
    "resnet20-poor-start": "",
    "resnet20-x0.5": "",
    "plain20-x0.5": "",
    "resnet20-x0.5-a0.5": "",
    "resnet20-x0.25-a0.5": "",
    "plain20-x0.5-a0.5": "",
    "mobilenetv2-small-x0.25": "",
    "resnet20-x0.5-a0.5-kdecay": " (k 3, 2, 2, 2, 1, 0)",
}


def swings(run: Path) -> dict:
    """A search's moves undone by the next iteration, those random rankings would undo, and
    the Spearman correlation of consecutive iterations' FUR."""
    history = read_history(run)
    undone, moves, chance = reversals(history)
    return {
        "undone": undone,
        "moves": moves,
        "chance": chance,
        "consecutive": [
            spearman([now.fur[n] for n in now.fur], [after.fur[n] for n in now.fur])
            for now, after in itertools.pairwise(history)
        ],
        "rule": json.loads((run / "config.json").read_text())["rule"],
    }


def docs_table() -> str:
    """docs/results.md's table: the undone moves in bold where twice what chance undoes."""
    lines = [
        "| search | a | moves undone by the next iteration | by chance | consecutive FUR Spearman, mean "
        "(per pair) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, note in DOCUMENTED.items():
        found = swings(RUNS / name)
        undone = f"{found['undone']} / {found['moves']}"
        if found["undone"] >= 2 * found["chance"]:
            undone = f"**{undone}**"
        consecutive = found["consecutive"]
        pairs = " ".join(f"{c:+.2f}" for c in consecutive)
        lines.append(
            f"| {name}{note} | {found['rule']['rate']:g} | {undone} | {found['chance']:.1f} | "
            + f"{statistics.fmean(consecutive):+.2f} ({pairs}) |".replace("-", "−")
        )
    return "\n".join(lines)


def main() -> None:
    print(f"{'run':32} {'a':>5} {'k/decay':>7} {'undone':>9} {'by chance':>9}  consecutive FUR Spearman")
    seen = set()
    for run in sorted(path for path in RUNS.iterdir() if (path / "final.json").exists()):
        text = (run / "history.jsonl").read_text()
        if text in seen:
            continue
        seen.add(text)
        found = swings(run)
        rule, consecutive = found["rule"], found["consecutive"]
        if not consecutive:  # one iteration: nothing to undo
            continue
        print(
            f"{run.name:32} {rule['rate']:>5} {rule['k0']:>3g}/{rule['k_decay']:<3g} "
            f"{found['undone']:>4} / {found['moves']:<3} {found['chance']:>9.1f} "
            f"{statistics.fmean(consecutive):>+8.2f} ({' '.join(f'{c:+.2f}' for c in consecutive)})"
        )


if __name__ == "__main__":
    main()
