"""The pruning peer beside the search: for finished rows of ``bench/quality.py``, the
network ``compare --baseline pruned`` adds, trained over the row's seeds with the row's
comparison recipe and paired with the searched network's kept results (same seeds, recipe
and data, checked), so the other networks need not be trained again.

Per row it runs what compare runs (``pruned.pruned_baseline``, then ``train_on_full`` per
seed), keeps ``compare/pruned.json`` and ``compare/pruned-seed<k>.json`` in the row's run
directory (an interrupted run continues), and writes every finished row to
``bench/results/pruned_peer.json`` and ``.md``: the pruned network's top-1 mean ± sample std,
searched − pruned as a paired difference with its standard error, its MACs and parameters.

    OMP_NUM_THREADS=1 .venv/bin/python bench/pruned_peer.py NAME [NAME ...] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from _rows import RUNS, row_setting
from netadjust.compare import budget_measure
from netadjust.cost import model_cost
from netadjust.export import save_weights
from netadjust.pruned import pruned_baseline
from netadjust.retrain import train_on_full
from netadjust.store import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def run_row(name: str, data_dir: str | None) -> dict:
    run, comparison, recipe, data = row_setting(name, data_dir)
    spec, folder, seeds = run.final.model, RUNS / name / "compare", comparison["seeds"]
    searched = {seed: json.loads((folder / f"searched-seed{seed}.json").read_text()) for seed in seeds}
    cost, tolerance = budget_measure(run, spec)
    start = time.perf_counter()
    pruned = pruned_baseline(run, cost, tolerance, data, seeds[0], folder / "pruned.json", print)
    results = {}
    for seed in seeds:
        path = folder / f"pruned-seed{seed}.json"
        if path.exists() and json.loads(path.read_text())["widths"] == pruned["widths"]:
            results[seed] = json.loads(path.read_text())
            continue
        model, result = train_on_full(spec, pruned["widths"], data, recipe, seed, torch.device("cpu"))
        save_weights(model, spec, pruned["widths"], folder / f"pruned-seed{seed}.safetensors")
        write_json(path, result)
        results[seed] = result
        print(f"{name}: pruned seed {seed}: test top-1 {100 * result['test']['top1']:.2f}%", flush=True)
    top1 = [results[seed]["test"]["top1"] for seed in seeds]
    paired = [searched[seed]["test"]["top1"] - results[seed]["test"]["top1"] for seed in seeds]
    cost_of = model_cost(spec, pruned["widths"])
    return {
        "name": name,
        "budget": run.budget,
        "seeds": seeds,
        "pruned_top1_mean": statistics.fmean(top1),
        "pruned_top1_std": statistics.stdev(top1),
        "pruned_top1": top1,
        "searched_top1_mean": comparison["searched"]["top1_mean"],
        "original_top1_mean": comparison["original"]["top1_mean"],
        "searched_minus_pruned": statistics.fmean(paired),
        "searched_minus_pruned_se": statistics.stdev(paired) / math.sqrt(len(paired)),
        "pruned_macs": cost_of.macs,
        "pruned_params": cost_of.params,
        "searched_macs": comparison["searched"]["macs"],
        "searched_params": comparison["searched"]["params"],
        "pruned_widths": pruned["widths"],
        "wide_widths": pruned["wide_widths"],
        "pruning_ratio": pruned["pruning_ratio"],
        "wide_test_top1": pruned["wide_test"]["top1"],
        "command": f"netadjust compare {name} --seeds {len(seeds)} --epochs {recipe.epochs} "
        "--baseline pruned",
        "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)",
        "seconds": time.perf_counter() - start,
        "seconds_trainings": pruned["seconds"] + sum(results[seed]["seconds"] for seed in seeds),
    }


def write_rows(row: dict) -> None:
    """Add ``row`` to pruned_peer.json (under a lock: two jobs may finish at once) and
    rewrite pruned_peer.md from all rows."""
    path = RESULTS / "pruned_peer.json"
    with open(RESULTS / ".pruned_peer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else {}
        rows[row["name"]] = row
        write_json(path, rows)
        lines = [
            "| row | budget | pruned top-1 (%) | searched − pruned | pruned MACs | pruned params | time |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for item in rows.values():
            lines.append(
                f"| `{item['name']}` | {item['budget']} | {100 * item['pruned_top1_mean']:.2f} ± "
                f"{100 * item['pruned_top1_std']:.2f} | {100 * item['searched_minus_pruned']:+.2f} ± "
                f"{100 * item['searched_minus_pruned_se']:.2f} | {item['pruned_macs']:,} | "
                f"{item['pruned_params']:,} | {item['seconds_trainings'] / 60:.0f} min |"
            )
        (RESULTS / "pruned_peer.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    for name in args.names:
        row = run_row(name, args.data_dir)
        write_rows(row)
        print(
            f"{name}: pruned {100 * row['pruned_top1_mean']:.2f} ± {100 * row['pruned_top1_std']:.2f}, "
            f"searched − pruned {100 * row['searched_minus_pruned']:+.2f} ± "
            f"{100 * row['searched_minus_pruned_se']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
