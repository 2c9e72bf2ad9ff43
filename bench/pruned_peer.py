"""The pruning counterparts beside the search: for finished rows of ``bench/quality.py``,
the network ``compare --baseline METHOD`` adds (``pruned``: Torch-Pruning's L1 magnitude;
``slimming``: Network Slimming; ``depgraph``: DepGraph's group sparsity), trained over the
row's seeds with the row's comparison recipe and paired with the searched network's kept
results (same seeds, recipe and data, checked), so the other networks need not be trained
again.

Per row it runs what compare runs (``pruned.pruned_baseline`` or
``counterparts.counterpart``, then ``train_on_full`` per seed), keeps
``compare/METHOD.json`` and ``compare/METHOD-seed<k>.json`` in the row's run directory (an
interrupted run continues), and writes every finished row to
``bench/results/METHOD_peer.json`` and ``.md``: the network's top-1 mean ± sample std,
searched − it as a paired difference with its standard error, its MACs and parameters, the
range of its widths over the original's, and the wide training's and all trainings' time.

    OMP_NUM_THREADS=1 .venv/bin/python bench/pruned_peer.py NAME [NAME ...] [--method METHOD] [--data-dir DIR]
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
from counterparts_table import ratio_range
from netadjust.compare import budget_measure, width_ratio_range
from netadjust.cost import model_cost
from netadjust.counterparts import METHODS, counterpart
from netadjust.export import save_weights
from netadjust.pruned import pruned_baseline
from netadjust.retrain import train_on_full
from netadjust.store import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def run_row(name: str, data_dir: str | None, method: str = "pruned") -> dict:
    run, comparison, recipe, data = row_setting(name, data_dir)
    spec, folder, seeds = run.final.model, RUNS / name / "compare", comparison["seeds"]
    searched = {seed: json.loads((folder / f"searched-seed{seed}.json").read_text()) for seed in seeds}
    cost, tolerance = budget_measure(run, spec)
    start = time.perf_counter()
    record_path = folder / f"{method}.json"
    if method == "pruned":
        pruned = pruned_baseline(run, cost, tolerance, data, seeds[0], record_path, print)
    else:
        pruned = counterpart(METHODS[method], run, cost, tolerance, data, seeds[0], record_path, print)
    results = {}
    for seed in seeds:
        path = folder / f"{method}-seed{seed}.json"
        if path.exists() and json.loads(path.read_text())["widths"] == pruned["widths"]:
            results[seed] = json.loads(path.read_text())
            continue
        model, result = train_on_full(spec, pruned["widths"], data, recipe, seed, torch.device("cpu"))
        save_weights(model, spec, pruned["widths"], folder / f"{method}-seed{seed}.safetensors")
        write_json(path, result)
        results[seed] = result
        print(f"{name}: {method} seed {seed}: test top-1 {100 * result['test']['top1']:.2f}%", flush=True)
    top1 = [results[seed]["test"]["top1"] for seed in seeds]
    paired = [searched[seed]["test"]["top1"] - results[seed]["test"]["top1"] for seed in seeds]
    cost_of = model_cost(spec, pruned["widths"])
    return {
        "name": name,
        "method": pruned.get("method", pruned.get("importance")),
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
        "pruning_ratio": pruned.get("pruning_ratio", pruned.get("removed_share")),
        "width_ratio_range": width_ratio_range(pruned["widths"], run.final.original_widths),
        "searched_width_ratio_range": width_ratio_range(run.final.widths, run.final.original_widths),
        "wide_test_top1": pruned["wide_test"]["top1"],
        "command": f"netadjust compare {name} --seeds {len(seeds)} --epochs {recipe.epochs} "
        + (f"--precision {recipe.precision} " if recipe.precision != run.config.recipe.precision else "")
        + f"--baseline {method}",
        "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)",
        "seconds": time.perf_counter() - start,
        "seconds_wide": pruned["seconds"],
        "seconds_trainings": pruned["seconds"] + sum(results[seed]["seconds"] for seed in seeds),
    }


def write_rows(row: dict, method: str = "pruned") -> None:
    """Add ``row`` to METHOD_peer.json (under a lock: two jobs may finish at once) and
    rewrite METHOD_peer.md from all rows."""
    path = RESULTS / f"{method}_peer.json"
    with open(RESULTS / ".pruned_peer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else {}
        rows[row["name"]] = row
        write_json(path, rows)
        (RESULTS / f"{method}_peer.md").write_text(peer_table(rows, method) + "\n")


def peer_table(rows: dict, method: str) -> str:
    """METHOD_peer.md: per row, the counterpart's top-1, searched − it, its cost, its widths
    over the original's (from its kept pruning where the row predates that field) and time."""
    lines = [
        f"| row | budget | {method} top-1 (%) | searched − {method} | MACs | params | "
        "widths / original's | time |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for item in rows.values():
        low, high = item.get("width_ratio_range") or ratio_range(
            item["name"],
            json.loads((RUNS / item["name"] / "compare" / f"{method}.json").read_text())["widths"],
        )
        lines.append(
            f"| `{item['name']}` | {item['budget']} | {100 * item['pruned_top1_mean']:.2f} ± "
            f"{100 * item['pruned_top1_std']:.2f} | {100 * item['searched_minus_pruned']:+.2f} ± "
            f"{100 * item['searched_minus_pruned_se']:.2f} | {item['pruned_macs']:,} | "
            f"{item['pruned_params']:,} | {low:.2f}–{high:.2f} | {item['seconds_trainings'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--data-dir")
    parser.add_argument("--method", choices=["pruned", *METHODS], default="pruned")
    args = parser.parse_args()
    for name in args.names:
        row = run_row(name, args.data_dir, args.method)
        write_rows(row, args.method)
        print(
            f"{name}: {args.method} {100 * row['pruned_top1_mean']:.2f} ± "
            f"{100 * row['pruned_top1_std']:.2f}, searched − {args.method} "
            f"{100 * row['searched_minus_pruned']:+.2f} ± {100 * row['searched_minus_pruned_se']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
