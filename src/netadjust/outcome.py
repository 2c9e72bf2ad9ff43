"""Did a search pay off? What its own measurements say, in plain words, for the end of the
log and for report.md: the validation accuracy the search measured along the way, and how
stable FUR's ranking was."""

from __future__ import annotations

import itertools
import statistics

from .config import Widths
from .rundir import IterationRecord
from .wording import invocation, plural

LOW_STABILITY = 0.8  # split-half Spearman below this: the ranking is partly noise
NOISE = 0.6  # below this: mostly noise (the halves share under a third of their rank variance)
# undone moves at this multiple of what random rankings would undo: the steps overshoot. The
# ResNet-20 and Plain-20 searches from the original widths at a = 0.5 undid 43-63% of their
# moves against 17% by chance (25% against 9% with k's decay); at a = 0.25 over 8 iterations
# 31% against 17%; at a = 0.15, and from starved starts, 0-13%, and none of the searches that
# swung beat the original (bench/results/oscillation.txt; docs/results.md, "Why the searches
# swing")
OVERSHOOT = 2.0
# the README's trainings vary by 0.1-0.3 points (sample std) between seeds: a change of the
# search's validation top-1 beyond one point is more than another seed gives
SEED_NOISE = 1.0


def duration(seconds: float) -> str:
    """``N seconds`` below two minutes, ``N minutes`` below two hours, ``X.X hours`` above."""
    minutes = seconds / 60
    if minutes < 2:
        return plural(round(seconds), "second")
    return f"{minutes:.0f} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"


def reversals(history: list[IterationRecord]) -> tuple[int, int, float]:
    """Moves the next iteration undid (a grown width shrunk, a shrunk one grown), all moves that
    had a next iteration, and how many undone moves random rankings would give on average."""
    undone = moves = 0
    chance = 0.0
    for now, after in itertools.pairwise(history):
        grown, shrunk = set(now.grown), set(now.shrunk)
        regrown, reshrunk = set(after.grown), set(after.shrunk)
        if not (grown or shrunk):
            continue
        undone += len(grown & reshrunk) + len(shrunk & regrown)
        moves += len(grown) + len(shrunk)
        chance += (len(grown) * len(reshrunk) + len(shrunk) * len(regrown)) / len(now.widths)
    return undone, moves, chance


def outcome_lines(
    history: list[IterationRecord],
    run_dir: str,
    compare_seconds: float | None = None,
    inherited: bool = False,
) -> list[str]:
    """Sentences on the search in ``history``;
    ``compare_seconds``: the expected time of ``netadjust compare --seeds 5``, if known;
    ``inherited``: the iterations after the first fine-tuned briefly (``--inherit``)."""
    first, last = history[0], history[-1]
    lines = []
    if len(history) > 1 and inherited:
        lines.append(
            "validation top-1 of the networks the search trained: original widths "
            f"{100 * first.val['top1']:.2f}% after a whole training; the later iterations only "
            "fine-tuned (--inherit), so theirs "
            f"(iteration {len(history)}'s {100 * last.val['top1']:.2f}%) say nothing about the widths."
        )
    elif len(history) > 1:
        best = max(history, key=lambda record: record.val["top1"])
        change = 100 * (last.val["top1"] - first.val["top1"])
        lines.append(
            f"validation top-1 of the networks the search trained: original widths "
            f"{100 * first.val['top1']:.2f}%, iteration {len(history)}'s {100 * last.val['top1']:.2f}% "
            f"({change:+.2f} points), best {100 * best.val['top1']:.2f}% at iteration "
            f"{best.iteration + 1}. "
            + (
                "One short training each: differences of a few tenths of a point are within what "
                "another seed gives."
                if abs(change) < SEED_NOISE
                else f"A change of {change:+.2f} points is more than another seed of one short "
                "training gives: "
                + (
                    "the later widths trained worse here; compare them before using them."
                    if change < 0
                    else "the later widths trained better here; compare confirms it over seeds."
                )
            )
        )
    took = f" (about {duration(compare_seconds)} here, by the search's speed)" if compare_seconds else ""
    lines.append(
        f"the final widths were never trained; `{invocation()} compare {run_dir} --seeds 5` trains them, "
        f"the original and a uniformly scaled network from scratch{took}, and says whether the gain "
        "exceeds the seed noise."
    )
    spearman = [record.fur_stability["spearman"] for record in history]
    moved = [record.fur_stability for record in history if record.k > 0]
    overlap = (
        f", the widths grown and shrunk agreed {statistics.fmean(m['grow_overlap'] for m in moved):.0%} "
        f"and {statistics.fmean(m['shrink_overlap'] for m in moved):.0%}"
        if moved
        else ""
    )
    mean = statistics.fmean(spearman)
    lines.append(
        f"FUR's ranking: the two halves of the validation split agreed with Spearman {mean:.2f} on "
        f"average (lowest {min(spearman):.2f}){overlap}."
    )
    if mean < LOW_STABILITY:
        how = "mostly noise" if mean < NOISE else "partly noise"
        lines.append(
            f"warning: FUR's ranking was {how}, so the widths moved partly at random; before trusting "
            "them, search again with more --repeats, a larger --val-limit, or more --epochs per iteration."
        )
    undone, moves, chance = reversals(history)
    if not moves:
        return lines
    lines.append(
        f"the next iteration undid {undone} of the search's {moves} moves "
        f"(random rankings would undo about {chance:.0f})."
    )
    if undone >= OVERSHOOT * chance and undone > 1:
        lines.append(
            "warning: the search kept undoing its own moves, so its steps overshoot: a grown width "
            "became one of the least useful in the next iteration, and the widths swing instead of "
            "settling. A smaller --adjust-rate swings less; with the initial-width step (the "
            "reference's) a width cut to a sliver is grown back at once, which --step lesser "
            "avoids; fewer moves with --k-decay did not stop the swing in our measurements. Some "
            "searches that swung still gained, others did not (docs/results.md, undone moves)."
        )
    return lines


def widths_table(original: Widths, searched: Widths) -> str:
    name_width = max(len(name) for name in original)
    lines = [f"{'width':<{name_width}}  original  searched"]
    for name, before in original.items():
        after = searched[name]
        mark = "  +" if after > before else ("  -" if after < before else "")
        lines.append(f"{name:<{name_width}}  {before:>8}  {after:>8}{mark}")
    return "\n".join(lines)
