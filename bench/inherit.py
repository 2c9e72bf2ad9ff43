"""``--inherit`` against the from-scratch search, on finished rows of ``bench/quality.py``
(issue 36): the same search (the row's recorded settings, seed and start) with every
iteration after the first starting from the previous one's weights and training E epochs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/inherit.py search ROW E   # runs/ROW-inheritE
    OMP_NUM_THREADS=1 .venv/bin/python bench/inherit.py train ROW E    # its final widths, 5 seeds (--seeds)
    ... search ROW E --repeats T / train ROW E --repeats T             # runs/ROW-inheritE-repeatsT
    OMP_NUM_THREADS=1 .venv/bin/python bench/inherit.py rerun ROW      # from scratch again: runs/ROW-rerun
    OMP_NUM_THREADS=1 .venv/bin/python bench/inherit.py train ROW      # the rerun's final widths
    OMP_NUM_THREADS=1 .venv/bin/python bench/inherit.py retime ROW     # the rerun timed again
    .venv/bin/python bench/inherit.py summary

Searches are resumable (run again after an interruption). ``train`` trains a search's final
widths as the row's comparison trained its searched network (recipe, data and seeds
checked by ``_rows``), kept as ``compare/searched-seed<k>.json`` in that run. The
from-scratch side is the rerun where it has finished (this code, this machine: the row's
recorded search may have run under other code or threads), else the row's own search.
``summary`` writes ``bench/results/inherit.json`` and ``.md``: each search's time (its wall
time where both searches ran whole under this script, ``wall.json``; else the sum of its
iterations' seconds), per iteration the Spearman correlation
between the two searches' FUR of the widths, the final widths' distance (sum |a - b| /
sum b), and top-1 of the final against each from-scratch search's final and against the
row's original network over the seeds, paired by seed, with the difference's standard
error; both searches' first training (the same one) times the machine's speed. A run
folder ``ROW-inheritE-NAME`` holds an earlier variant of the carry
(``zeroread``: grown widths got fresh channels read with zero weights, no splitting; the
code of commit 462cb9e; ``undropped``: the inheriting iterations trained without the
regulariser, whose ramp over their own fraction of an epoch stayed at 0, as in every
search before the regulariser kept iteration 0's last rate, ``zeroread`` included);
``ROW-inheritE-repeatsT`` the inheriting search with FUR's masks per width set to T in
every iteration (cheaper FUR; the row's own T otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _rows import RUNS, row_setting
from netadjust.fur import spearman
from netadjust.outcome import reversals
from netadjust.retrain import train_on_full
from netadjust.rundir import read_run
from netadjust.search import run_search
from netadjust.store import write_json
from search_seeds import across, training_seconds

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2, 3, 4)


def inheriting(row: str, epochs: float, repeats: int | None = None) -> Path:
    return RUNS / (f"{row}-inherit{epochs:g}" + (f"-repeats{repeats}" if repeats else ""))


def search(row: str, epochs: float | None, out: Path, repeats: int | None = None) -> None:
    """The row's search again, from its recorded settings (FUR's ``repeats`` replaced where
    given), inheriting or not; its wall time (data, model and evaluations included) kept in
    ``wall.json`` when it ran uninterrupted."""
    config = read_run(RUNS / row).config
    if repeats:
        config = dataclasses.replace(config, fur=dataclasses.replace(config.fur, repeats=repeats))
    config = dataclasses.replace(config, inherit=epochs, out=str(out))
    fresh, start = not (out / "config.json").exists(), time.perf_counter()
    run_search(config)
    if fresh:
        write_json(
            out / "wall.json", {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}
        )


def train(row: str, out: Path, data_dir: str | None, seeds: tuple[int, ...] = SEEDS) -> None:
    """The final widths of run ``out`` trained as ``row``'s comparison trained its searched
    network, per seed (kept: an interrupted run continues)."""
    run, _, recipe, data = row_setting(row, data_dir)
    widths = read_run(out).final.widths
    for seed in seeds:
        path = out / "compare" / f"searched-seed{seed}.json"
        if not path.exists():
            _, result = train_on_full(run.final.model, widths, data, recipe, seed, torch.device("cpu"))
            write_json(path, result)
            print(f"{out.name}: seed {seed}: test top-1 {100 * result['test']['top1']:.2f}%", flush=True)


def retime(row: str) -> None:
    """The from-scratch rerun once more, in a scratch folder, for its wall time beside the
    inheriting searches of this session; kept in ``ROW-rerun/wall-again.json`` with whether
    it ended at the rerun's widths (same code and threads: it should)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        search(row, None, out)
        again = read_run(out).final.widths
        wall = json.loads((out / "wall.json").read_text())
    rerun = RUNS / f"{row}-rerun"
    write_json(rerun / "wall-again.json", {**wall, "same_widths": again == read_run(rerun).final.widths})


def search_seconds(run) -> float:
    return sum(sum(record.seconds.values()) for record in run.history)


def wall_seconds(out: Path) -> float | None:
    wall = out / "wall.json"
    return json.loads(wall.read_text())["seconds"] if wall.exists() else None


def seed_top1(out: Path, widths: dict, network: str = "searched") -> dict[int, float]:
    found = {}
    for path in sorted((out / "compare").glob(f"{network}-seed*.json")):
        result = json.loads(path.read_text())
        if result["widths"] == widths:
            found[result["seed"]] = result["test"]["top1"]
    return found


def paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """a − b over the seeds both have: mean, standard error, and the values."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    differences = [a[seed] - b[seed] for seed in seeds]
    return {
        "mean": statistics.fmean(differences),
        "se": statistics.stdev(differences) / math.sqrt(len(seeds)),
        "seeds": seeds,
        "top1": [a[seed] for seed in seeds],
        "other_top1": [b[seed] for seed in seeds],
    }


def distance(a: dict, b: dict) -> float:
    return sum(abs(a[name] - width) for name, width in b.items()) / sum(b.values())


def compared(row: str, out: Path) -> dict:
    """Run ``out`` against the from-scratch searches of ``row``: time, FUR and widths
    against the rerun (this code, beside it) where it has finished, else the recorded one;
    top-1 against each whose finals were trained."""
    recorded, rerun_dir, fast = read_run(RUNS / row), RUNS / f"{row}-rerun", read_run(out)
    rerun = read_run(rerun_dir) if (rerun_dir / "final.json").exists() else None
    scratch, scratch_dir = (rerun, rerun_dir) if rerun else (recorded, RUNS / row)
    entry = {
        "row": row,
        "inherit": fast.config.inherit,
        "repeats": fast.config.fur.repeats,
        "scratch_repeats": scratch.config.fur.repeats,
        "variant": out.name.split("-inherit", 1)[1],  # E, and a suffix naming an earlier variant
        "scratch": "rerun with this code" if rerun else "the row's recorded search",
        "seconds": search_seconds(fast),
        "scratch_seconds": search_seconds(scratch),
        # the same training in both searches: how fast the machine ran each
        "first_training_seconds": [fast.history[0].seconds["train"], scratch.history[0].seconds["train"]],
        "fur_spearman": [
            spearman([a.fur[name] for name in a.fur], [b.fur[name] for name in a.fur])
            for a, b in zip(scratch.history, fast.history, strict=True)
        ],
        "widths": fast.final.widths,
        "widths_distance": distance(fast.final.widths, scratch.final.widths),
        # moves the next iteration undid, of all moves: this search's and the from-scratch one's
        "undone": [reversals(fast.history)[:2], reversals(scratch.history)[:2]],
    }
    walls = wall_seconds(out), wall_seconds(scratch_dir)
    if None not in walls:  # both timed whole: data, models and evaluations included
        entry.update(wall_seconds=walls[0], scratch_wall_seconds=walls[1], ratio=walls[0] / walls[1])
        again = scratch_dir / "wall-again.json"  # the rerun timed once more (``retime``)
        if again.exists():
            entry["scratch_wall_again"] = json.loads(again.read_text())["seconds"]
    else:
        entry["ratio"] = entry["seconds"] / entry["scratch_seconds"]
    mine = seed_top1(out, fast.final.widths)
    for name, run, folder in (("rerun", rerun, rerun_dir), ("recorded", recorded, RUNS / row)):
        if run is not None:
            entry[f"minus_{name}"] = paired(mine, seed_top1(folder, run.final.widths))
    # what the search found: its final against the network it started from
    entry["minus_original"] = paired(mine, seed_top1(RUNS / row, recorded.final.original_widths, "original"))
    return entry


def scratch_twice(row: str) -> dict | None:
    """The two from-scratch searches of ``row`` against each other: how far one search's
    result lies from another's when only the arithmetic's rounding differs."""
    rerun_dir = RUNS / f"{row}-rerun"
    if not (rerun_dir / "final.json").exists():
        return None
    recorded, rerun = read_run(RUNS / row), read_run(rerun_dir)
    rerun_top1, recorded_top1 = (
        seed_top1(rerun_dir, rerun.final.widths),
        seed_top1(RUNS / row, recorded.final.widths),
    )
    original = seed_top1(RUNS / row, recorded.final.original_widths, "original")
    return {
        "row": row,
        "widths_distance": distance(rerun.final.widths, recorded.final.widths),
        "rerun_minus_recorded": paired(rerun_top1, recorded_top1),
        "recorded_minus_original": paired(recorded_top1, original),
        "rerun_minus_original": paired(rerun_top1, original),
    }


def with_and_without_regulariser(entry: dict) -> dict | None:
    """An inheriting search run with the regulariser against its ``-undropped`` twin (the
    same search before the fix), paired by training seed; None where either is missing."""
    folder = RUNS / f"{entry['row']}-inherit{entry['variant']}"
    twin = folder.with_name(folder.name + "-undropped")
    if entry["variant"].endswith("undropped") or not (twin / "final.json").exists():
        return None
    mine = seed_top1(folder, entry["widths"])
    theirs = seed_top1(twin, read_run(twin).final.widths)
    return {"row": entry["row"], "variant": entry["variant"], "difference": paired(mine, theirs)}


def on_seeds(entries: list[dict], key: str, seeds: list[int]) -> list[dict]:
    """Each entry's paired differences ``key`` restricted to ``seeds``, in points."""
    gains = []
    for entry in entries:
        difference = entry[key]
        mine = dict(zip(difference["seeds"], difference["top1"], strict=True))
        other = dict(zip(difference["seeds"], difference["other_top1"], strict=True))
        per_seed = [100 * (mine[seed] - other[seed]) for seed in seeds]
        gains.append({key: {"mean": statistics.fmean(per_seed), "per_seed": per_seed}})
    return gains


def over_searches(entries: list[dict]) -> list[dict]:
    """A row searched with several search seeds (``ROW``, ``ROW-search1``, ...), each search
    again inheriting with the same E: the mean over searches of final − original and of
    final − the from-scratch search's (with ``search_seeds.across``' SE, on the training
    seeds all of them have), and each search's time in from-scratch trainings of its final
    network (the mean of its seeds')."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for entry in entries:
        base = entry["row"].split("-search", 1)[0]
        groups.setdefault((base, entry["variant"]), []).append(entry)
    found = []
    for (base, variant), searches in sorted(groups.items()):
        trained = [entry for entry in searches if entry["minus_original"]]
        if len(trained) < 2:
            continue
        seeds = sorted(set.intersection(*(set(entry["minus_original"]["seeds"]) for entry in trained)))
        in_trainings = [  # its iterations' seconds, as bench/search_seeds.py counts a search's
            entry["seconds"] / training_seconds(f"{entry['row']}-inherit{variant}") for entry in trained
        ]
        found.append(
            {
                "row": base,
                "variant": variant,
                "searches": [entry["row"] for entry in trained],
                "training_seeds": seeds,
                "minus_original": across(on_seeds(trained, "minus_original", seeds), "minus_original"),
                # against the from-scratch search of the same seed (the row's recorded one)
                "minus_recorded": across(on_seeds(trained, "minus_recorded", seeds), "minus_recorded"),
                "search_in_trainings": in_trainings,
            }
        )
    return found


def cell(difference: dict | None) -> str:
    if difference is None:
        return "not trained"
    return f"{100 * difference['mean']:+.2f} ± {100 * difference['se']:.2f} ({len(difference['seeds'])})"


def summary() -> None:
    entries = [
        compared(out.name.rsplit("-inherit", 1)[0], out)
        for out in sorted(RUNS.glob("*-inherit*"))
        if (out / "final.json").exists()
    ]
    twice = [found for found in map(scratch_twice, sorted({e["row"] for e in entries})) if found]
    regulariser = [found for found in map(with_and_without_regulariser, entries) if found]
    searches = over_searches(entries)
    write_json(
        RESULTS / "inherit.json",
        {
            "machine": platform.processor() or platform.machine(),
            "rows": entries,
            "scratch_twice": twice,
            "with_minus_without_regulariser": regulariser,
            "over_searches": searches,
        },
    )
    lines = [
        "| row | --inherit | search s | from scratch s (timed again) | ratio (to again) | first training s "
        "| FUR Spearman per iteration | widths distance | top-1 − rerun | top-1 − recorded "
        "| top-1 − original |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in entries:
        scratch_seconds, ratio = (
            f"{e.get('scratch_wall_seconds', e['scratch_seconds']):.0f}",
            f"{e['ratio']:.2f}",
        )
        if "scratch_wall_again" in e:
            scratch_seconds += f" ({e['scratch_wall_again']:.0f})"
            ratio += f" ({e['wall_seconds'] / e['scratch_wall_again']:.2f})"
        lines.append(
            f"| {e['row']} | {e['variant']} | {e.get('wall_seconds', e['seconds']):.0f} | "
            f"{scratch_seconds} | {ratio} | "
            f"{e['first_training_seconds'][0]:.0f} / {e['first_training_seconds'][1]:.0f} | "
            f"{', '.join(f'{value:.2f}' for value in e['fur_spearman'])} | "
            f"{e['widths_distance']:.2f} | {cell(e.get('minus_rerun'))} | {cell(e.get('minus_recorded'))} | "
            f"{cell(e['minus_original'])} |"
        )
    lines += [
        "",
        "| row | from scratch twice: widths distance | top-1 rerun − recorded | recorded − original "
        "| rerun − original |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {t['row']} | {t['widths_distance']:.2f} | {cell(t['rerun_minus_recorded'])} | "
        f"{cell(t['recorded_minus_original'])} | {cell(t['rerun_minus_original'])} |"
        for t in twice
    ]
    lines += [
        "",
        "| row | --inherit | top-1 with the regulariser − without (the same search before the fix) |",
        "|---|---|---:|",
    ]
    lines += [f"| {r['row']} | {r['variant']} | {cell(r['difference'])} |" for r in regulariser]
    lines += [
        "",
        "| row | --inherit | searches | training seeds | final − original: mean over searches ± SE "
        "(each) | final − the from-scratch search's (each) | search in final trainings |",
        "|---|---|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {o['row']} | {o['variant']} | {len(o['searches'])} | "
        f"{', '.join(map(str, o['training_seeds']))} | "
        + " | ".join(
            f"{o[key]['mean']:+.2f} ± {o[key]['se']:.2f} "
            f"({', '.join(f'{gain:+.2f}' for gain in o[key]['per_search'])})"
            for key in ("minus_original", "minus_recorded")
        )
        + " | "
        f"{', '.join(f'{ratio:.2f}' for ratio in o['search_in_trainings'])} |"
        for o in searches
    ]
    (RESULTS / "inherit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("search", "train", "rerun", "retime", "summary"))
    parser.add_argument("row", nargs="?")
    parser.add_argument("epochs", nargs="?", type=float)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, help="FUR's masks per width (default: the row's)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=SEEDS, help="train: these seeds (default 0-4)"
    )
    args = parser.parse_args()
    if args.action == "search":
        search(args.row, args.epochs, inheriting(args.row, args.epochs, args.repeats), args.repeats)
    elif args.action == "retime":
        retime(args.row)
    elif args.action == "rerun":
        search(args.row, None, RUNS / f"{args.row}-rerun")
    elif args.action == "train":  # without E: the rerun's finals
        out = inheriting(args.row, args.epochs, args.repeats) if args.epochs else RUNS / f"{args.row}-rerun"
        train(args.row, out, args.data_dir, tuple(args.seeds))
    else:
        summary()


if __name__ == "__main__":
    main()
