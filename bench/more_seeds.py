"""More seeds for a finished row of ``bench/quality.py`` (and its pruning peer from
``bench/pruned_peer.py``): each network of the row trained as its comparison trains it (the
row's recipe and data, checked), for further seeds, kept as ``compare/<network>-seed<k>.json``
beside the first ones; then the row summarised over every seed it has.

Train (two jobs may split the seeds, one thread each), then summarise:

    OMP_NUM_THREADS=1 .venv/bin/python bench/more_seeds.py NAME --seeds 5 6 7 8 9
    .venv/bin/python bench/more_seeds.py NAME --summary

The summary goes to ``bench/results/more_seeds.json`` and ``.md``: per network top-1 mean ±
sample std over the seeds, and searched − each other network paired by seed with its
standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

from _rows import row_setting
from netadjust.retrain import train_on_full
from netadjust.store import write_json

RESULTS = Path(__file__).resolve().parent / "results"
NETWORKS = ("original", "searched", "uniform", "pruned")


def row_networks(comparison: dict, out: Path) -> dict:
    """The row's widths per network (the pruning peer's when it was trained)."""
    networks = {name: comparison[name]["widths"] for name in ("original", "searched", "uniform")}
    pruned = out / "compare" / "pruned.json"
    if pruned.exists():
        networks["pruned"] = json.loads(pruned.read_text())["widths"]
    return networks


def train_seeds(name: str, seeds: list[int], data_dir: str | None) -> None:
    out = RESULTS / "runs" / name
    run, comparison, recipe, data = row_setting(name, data_dir)
    networks = row_networks(comparison, out)
    for seed in seeds:
        for network, widths in networks.items():
            path = out / "compare" / f"{network}-seed{seed}.json"
            if path.exists():
                continue
            _, result = train_on_full(run.final.model, widths, data, recipe, seed, torch.device("cpu"))
            write_json(path, result)
            print(
                f"{name}: {network} seed {seed}: test top-1 {100 * result['test']['top1']:.2f}%", flush=True
            )


def summarise(name: str) -> dict:
    out = RESULTS / "runs" / name
    comparison = json.loads((out / "compare.json").read_text())
    networks = row_networks(comparison, out)
    found = {network: {} for network in networks}
    for network in networks:
        for path in sorted((out / "compare").glob(f"{network}-seed*.json")):
            result = json.loads(path.read_text())
            if result["widths"] == networks[network]:
                found[network][result["seed"]] = result["test"]["top1"]
    seeds = sorted(set.intersection(*(set(values) for values in found.values())))
    row = {"name": name, "seeds": seeds, "epochs": comparison["recipe"]["epochs"]}
    for network in networks:
        top1 = [found[network][seed] for seed in seeds]
        row[network] = {"top1_mean": statistics.fmean(top1), "top1_std": statistics.stdev(top1), "top1": top1}
    # the seeds the row was not chosen on: its setting was picked among others on the first ones
    fresh = [seed for seed in seeds if seed not in comparison["seeds"]]
    row["fresh_seeds"] = fresh
    for network in networks:
        if network != "searched":
            for key, over in (
                (f"searched_minus_{network}", seeds),
                (f"searched_minus_{network}_fresh", fresh),
            ):
                paired = [found["searched"][seed] - found[network][seed] for seed in over]
                if len(paired) > 1:
                    row[key] = {
                        "mean": statistics.fmean(paired),
                        "se": statistics.stdev(paired) / math.sqrt(len(paired)),
                    }
    return row


def write_summary(row: dict) -> None:
    path = RESULTS / "more_seeds.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[row["name"]] = row
    write_json(path, rows)
    lines = [
        "| row | seeds | original | uniform | pruned | searched | searched − original | searched − uniform "
        "| searched − pruned | searched − original, the seeds it was not chosen on |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for item in rows.values():
        cells = [
            f"{100 * item[network]['top1_mean']:.2f} ± {100 * item[network]['top1_std']:.2f}"
            if network in item
            else ""
            for network in ("original", "uniform", "pruned", "searched")
        ]
        differences = [
            f"{100 * item[key]['mean']:+.2f} ± {100 * item[key]['se']:.2f}" if key in item else ""
            for key in (
                "searched_minus_original",
                "searched_minus_uniform",
                "searched_minus_pruned",
                "searched_minus_original_fresh",
            )
        ]
        if "searched_minus_original_fresh" in item:
            differences[-1] += f" ({', '.join(map(str, item['fresh_seeds']))})"
        lines.append(f"| `{item['name']}` | {len(item['seeds'])} | " + " | ".join(cells + differences) + " |")
    (RESULTS / "more_seeds.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[])
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.seeds:
        train_seeds(args.name, args.seeds, args.data_dir)
    if args.summary:
        row = summarise(args.name)
        write_summary(row)
        print(json.dumps({key: value for key, value in row.items() if key.startswith("searched_minus")}))


if __name__ == "__main__":
    main()
