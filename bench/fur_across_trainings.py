"""Does FUR rank the widths of the architecture, or of one training? Agreement across seeds.

The search's stability figure (split-half Spearman) only sees the mask noise of one
estimate on one trained network. Each iteration, though, trains the network anew, and the
adjustment follows whatever that training's FUR says. This script runs the search's first
iteration (``netadjust search --preset fmnist --iterations 1``: half-width ResNet-20, all
54,000 training images, FUR with T = 4 on 6,000 validation images) for several training
lengths E and seeds, and prints per E:

- the within-training agreement (split-half Spearman, mean over seeds; each half has
  3,000 images), i.e. the mask noise the search already reports;
- the across-training agreement: Spearman between the FUR of two seeds' networks, mean
  over the seed pairs, and the share of the k = 3 widths one seed would grow (shrink) that
  another grows (shrinks) too;
- the agreement with the longest training: Spearman between the FUR of one seed's network
  trained E epochs and another seed's trained the longest E, mean over such pairs (at the
  longest E it is the across-seeds figure);
- the networks' validation top-1.

Runs go to ``bench/results/runs/fur-across-trainings/E<E>-s<seed>``; finished ones are
reused, so an interrupted measurement resumes. The figures go to
``bench/results/fur_across_trainings.json``.

    .venv/bin/python bench/fur_across_trainings.py [--epochs 1 2 4 8] [--seeds 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _trained import overlap
from netadjust.fur import spearman

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "runs" / "fur-across-trainings"
K = 3  # the fmnist preset's k: widths grown and shrunk per iteration


def first_iteration(epochs: int, seed: int, data: list[str]) -> dict:
    """The search's first iteration at ``epochs`` and ``seed``: run unless already run."""
    out = RUNS / f"E{epochs}-s{seed}"
    history = out / "history.jsonl"
    if not history.exists():
        if (out / "config.json").exists():
            arguments = ["--resume", str(out)]
        else:
            arguments = ["--preset", "fmnist", "--iterations", "1", "--epochs", str(epochs)]
            arguments += ["--seed", str(seed), *data, "--out", str(out)]
        print("$ netadjust search", " ".join(arguments), flush=True)
        subprocess.run([sys.executable, "-m", "netadjust", "search", *arguments], check=True)
    return json.loads(history.read_text().splitlines()[0])


def agreement(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    names = list(a)
    return {
        "spearman": spearman([a[n] for n in names], [b[n] for n in names]),
        "grow_overlap": overlap(a, b, True, K) / K,
        "shrink_overlap": overlap(a, b, False, K) / K,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    data = ["--data-dir", args.data_dir] if args.data_dir else []

    runs = {e: [first_iteration(e, s, data) for s in range(args.seeds)] for e in args.epochs}
    longest = runs[max(args.epochs)]
    rows = []
    for epochs, records in runs.items():
        pairs = [agreement(a["fur"], b["fur"]) for a, b in itertools.combinations(records, 2)]
        across = {key: statistics.fmean(p[key] for p in pairs) for key in pairs[0]}
        rows.append(
            {
                "epochs": epochs,
                "seeds": len(records),
                "val_top1": [r["val"]["top1"] for r in records],
                "split_half_spearman": statistics.fmean(r["fur_stability"]["spearman"] for r in records),
                "across_seeds": across,
                "across_seeds_spearman_pairs": [p["spearman"] for p in pairs],
                "vs_longest_spearman": statistics.fmean(
                    agreement(a["fur"], b["fur"])["spearman"]
                    for (i, a), (j, b) in itertools.product(enumerate(records), enumerate(longest))
                    if i != j
                ),
                "train_seconds": statistics.fmean(r["seconds"]["train"] for r in records),
                "fur_seconds": statistics.fmean(r["seconds"]["fur"] for r in records),
            }
        )

    print(
        f"{'E':>3} {'val top-1 (%)':>14} {'split-half':>10} {'across seeds':>12} "
        f"{'grow ovl':>8} {'shrink ovl':>10} {f'vs E={max(args.epochs)}':>8}"
    )
    for row in rows:
        top1 = [100 * v for v in row["val_top1"]]
        spread = statistics.stdev(top1) if len(top1) > 1 else 0.0
        across = row["across_seeds"]
        print(
            f"{row['epochs']:>3} {statistics.fmean(top1):>8.2f} ± {spread:.2f} "
            f"{row['split_half_spearman']:>10.2f} {across['spearman']:>12.2f} "
            f"{across['grow_overlap']:>8.2f} {across['shrink_overlap']:>10.2f} "
            f"{row['vs_longest_spearman']:>8.2f}"
        )
    (RESULTS / "fur_across_trainings.json").write_text(json.dumps(rows, indent=2) + "\n")


def docs_table(rows: list[dict]) -> str:
    """docs/results.md's table of the recorded figures (``fur_across_trainings.json``)."""
    longest = max(row["epochs"] for row in rows)
    lines = [
        "| E | val top-1 (%) | split-half Spearman (mask noise) | Spearman across seeds (per pair) "
        f"| grow / shrink sets shared across seeds | Spearman against {longest}-epoch trainings |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        top1, across = [100 * value for value in row["val_top1"]], row["across_seeds"]
        pairs = ", ".join(f"{value:.2f}" for value in row["across_seeds_spearman_pairs"])
        against = f"{row['vs_longest_spearman']:.2f}" + (
            " (= across seeds)" if row["epochs"] == longest else ""
        )
        lines.append(
            f"| {row['epochs']} | {statistics.fmean(top1):.2f} ± {statistics.stdev(top1):.2f} | "
            f"{row['split_half_spearman']:.2f} | {across['spearman']:.2f} ({pairs}) | "
            f"{100 * across['grow_overlap']:.0f}% / {100 * across['shrink_overlap']:.0f}% | {against} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
