"""Why does a search undo its moves? Each move (a width grown or shrunk) of a finished search
against the next iteration, from the search's own history.

A move the next iteration undoes can come from noise (the ranking put a width among the k
grown or shrunk by a margin the estimate cannot resolve), from overshoot (the step carried
the width past the point where its FUR ranks it there: its FUR, per MAC, falls as it grows
and rises as it shrinks), or from the others moving (the whole ranking changed). Per move
this reads:

- whether both halves of the validation split (``fur_halves``) put the width in the set it
  was moved with: a move both halves agree on is not mask noise;
- its margin: its FUR over the FUR of the first width left out of that set (above 1 for a
  grown width, below 1 for a shrunk one; near 1 is a close call);
- its step, the width after over the width before;
- its FUR's ratio next iteration over this one, against the median ratio of the widths not
  moved (the whole network retrains, so every FUR shifts): how much the move itself changed
  its FUR (margins and ratios only where the FURs are positive);
- whether it put the width on the width floor (``--min-width``) or took it off.

It prints, per search, moves, undone and by chance, then for undone and kept moves apart:
how many both halves agreed on, the median margin, step and relative FUR ratio, and how many
touched the floor. A search that
undoes confident moves with a large FUR shift after a large step overshoots; one that undoes
close calls the halves disagree on follows noise.

    .venv/bin/python bench/undone_moves.py [RUN ...]   # default: the README's rows' searches
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

from netadjust.outcome import reversals
from netadjust.rundir import read_history

RUNS = Path(__file__).resolve().parent / "results" / "runs"
DEFAULT = [
    "resnet18-x0.25-a0.5-step-current",
    "resnet18-x0.25-a0.5-step-current-search1",
    "resnet18-x0.25-a0.5-step-current-search2",
    "resnet18-x0.25-a0.5",
    "resnet18-x0.25-a0.5-params",
    "resnet18-x0.25-a0.5-params-search1",
    "resnet18-x0.25-a0.5-params-search2",
    "tv-mobilenet-v3-small-a0.5",
    "tv-mobilenet-v3-small-a0.5-search1",
    "tv-mobilenet-v3-small-a0.5-search2",
    "tv-mobilenet-v2-x0.5-default-lr0.05",
    "tv-mobilenet-v2-x0.5-default-lr0.05-search1",
    "tv-mobilenet-v2-x0.5-default-lr0.05-search2",
]


def ranked(fur: dict[str, float]) -> list[str]:
    return sorted(fur, key=fur.get, reverse=True)


def ratio(a: float, b: float) -> float | None:
    """a / b where both are positive FURs, else None (a FUR can be negative: dropping the
    width's channels lowered the loss, and a ratio across signs says nothing)."""
    return a / b if a > 0 and b > 0 else None


def moves(history: list, floor: int) -> list[dict]:
    """Every move of ``history`` that has a next iteration, with what the module docstring
    lists; ``floor``: the search's least width."""
    found = []
    for now, after in itertools.pairwise(history):
        order = ranked(now.fur)
        halves = [ranked(half) for half in now.fur_halves or []]
        unmoved = [w for w in now.fur if w not in now.grown and w not in now.shrunk]
        shift = statistics.median(r for w in unmoved if (r := ratio(after.fur[w], now.fur[w])))
        for direction, moved, again in (
            ("grown", now.grown, after.shrunk),
            ("shrunk", now.shrunk, after.grown),
        ):
            if not moved:
                continue
            k = len(moved)
            outside = order[k] if direction == "grown" else order[-k - 1]  # the first width left out
            for width in moved:
                agreed = None
                if halves:
                    sets = [h[:k] if direction == "grown" else h[-k:] for h in halves]
                    agreed = all(width in chosen for chosen in sets)
                found.append(
                    {
                        "iteration": now.iteration,
                        "width": width,
                        "direction": direction,
                        "undone": width in again,
                        "halves_agree": agreed,
                        "margin": ratio(now.fur[width], now.fur[outside]),
                        "step": now.next_widths[width] / now.widths[width],
                        "fur_ratio": (r / shift) if (r := ratio(after.fur[width], now.fur[width])) else None,
                        # a width shrunk onto the floor, or grown from it
                        "floor": min(now.widths[width], now.next_widths[width]) <= floor,
                    }
                )
    return found


def summary(run: Path) -> str:
    history = read_history(run)
    found = moves(history, json.loads((run / "config.json").read_text())["rule"]["min_width"])
    undone, total, chance = reversals(history)
    parts = [f"{run.name}: {undone} of {total} moves undone ({chance:.1f} by chance)"]
    for label, group in (
        ("undone", [m for m in found if m["undone"]]),
        ("kept", [m for m in found if not m["undone"]]),
    ):
        if not group:
            continue
        agreed = [m for m in group if m["halves_agree"]]
        grown = [m for m in group if m["direction"] == "grown"]
        shrunk = [m for m in group if m["direction"] == "shrunk"]

        def median(key: str, moves_: list[dict]) -> str:
            values = [m[key] for m in moves_ if m[key] is not None]
            return f"{statistics.median(values):.2f}" if values else "-"

        def described(moves_: list[dict]) -> str:
            return (
                f"{len(moves_)} (margin {median('margin', moves_)}, step {median('step', moves_)}, "
                f"FUR ratio {median('fur_ratio', moves_)}, at the floor {sum(m['floor'] for m in moves_)})"
            )

        parts.append(
            f"  {label:6} {len(group):>2}: halves agreed {len(agreed)}; grown {described(grown)}; "
            f"shrunk {described(shrunk)}"
        )
    return "\n".join(parts)


def main() -> None:
    names = sys.argv[1:] or DEFAULT
    print("\n".join(summary(RUNS / name) for name in names if (RUNS / name / "final.json").exists()))


if __name__ == "__main__":
    main()
