"""Does a search settle or swing? Moves undone by the next iteration, per recorded search.

For every search under ``bench/results/runs`` with at least two iterations (a copy of a
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


def main() -> None:
    print(f"{'run':32} {'a':>5} {'k/decay':>7} {'undone':>9} {'by chance':>9}  consecutive FUR Spearman")
    seen = set()
    for run in sorted(path for path in RUNS.iterdir() if (path / "history.jsonl").exists()):
        history = read_history(run)
        text = (run / "history.jsonl").read_text()
        if len(history) < 2 or text in seen:
            continue
        seen.add(text)
        undone, moves, chance = reversals(history)
        consecutive = [
            spearman([now.fur[n] for n in now.fur], [after.fur[n] for n in now.fur])
            for now, after in itertools.pairwise(history)
        ]
        rule = json.loads((run / "config.json").read_text())["rule"]
        print(
            f"{run.name:32} {rule['rate']:>5} {rule['k0']:>3g}/{rule['k_decay']:<3g} "
            f"{undone:>4} / {moves:<3} {chance:>9.1f} "
            f"{statistics.fmean(consecutive):>+8.2f} ({' '.join(f'{c:+.2f}' for c in consecutive)})"
        )


if __name__ == "__main__":
    main()
