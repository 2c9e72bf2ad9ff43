"""Where the floor of cuts (``netadjust.cuts``) would have bound in the searches made before
it: for every finished search in ``bench/results/runs``, the cuts of its original network
that get a floor above ``--min-width``, and those of them that went below it in some
iteration or in the final widths. Writes ``bench/results/cut_floors.txt``.

    .venv/bin/python bench/cut_floors.py
"""

from __future__ import annotations

from pathlib import Path

from netadjust.cuts import raised_floors
from netadjust.errors import UserError
from netadjust.rundir import read_history, read_run

RESULTS = Path(__file__).resolve().parent / "results"


def below_floor(run_dir: Path) -> tuple[dict[str, int], dict[str, tuple[int, int]]] | None:
    """The run's raised floors, and per cut that went below its floor the least width it took
    and its width in the final network; None when the run cannot be rebuilt here."""
    try:
        run = read_run(run_dir)
        floors = raised_floors(run.final.model, run.final.original_widths, run.config.rule.min_width)
    except UserError:  # a user's model file that lived elsewhere
        return None
    history = read_history(run_dir)
    below = {}
    for name, floor in floors.items():
        least = min([record.widths[name] for record in history] + [run.final.widths[name]])
        if least < floor:
            below[name] = (least, run.final.widths[name])
    return floors, below


def main() -> None:
    lines = ["run | cuts with a floor above --min-width | below it: least width (final), floor"]
    for run_dir in sorted((RESULTS / "runs").iterdir()):
        if not (run_dir / "final.json").exists():
            continue
        found = below_floor(run_dir)
        if found is None:
            lines.append(f"{run_dir.name} | not rebuilt here |")
            continue
        floors, below = found
        shown = ", ".join(
            f"{name} {least} ({final}), {floors[name]}" for name, (least, final) in below.items()
        )
        lines.append(f"{run_dir.name} | {len(floors)} | {shown or 'none'}")
    (RESULTS / "cut_floors.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
