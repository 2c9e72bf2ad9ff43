"""Does ``--latency-mode train`` time what training costs? The latency issue's check.

For each network and thread count: the timed train-mode pass (``LatencyModel``, forward and
backward at ``--latency-batch`` = the recipe's batch, in the recipe's precision and memory
format) as images/s, against the training loop's own rate (``fit``: one epoch on
``--images`` images, with its data augmentation, loss, optimiser step and, as in a search's
training, the channel-dropout regulariser). Each figure is the fastest of ``--repeats``
runs (on a shared VM the slower runs measure interference); the last column is the timed
rate over the loop's. Run it on an otherwise idle machine:

    .venv/bin/python bench/latency_train_mode.py [--images 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from netadjust.config import LatencyConfig, Recipe
from netadjust.data import load
from netadjust.latency import LatencyModel
from netadjust.layer_table import LatencyTable
from netadjust.settings import configured
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.speed import using_threads
from netadjust.train import fit

NETWORKS = (("resnet20", 0.5), ("resnet18", 0.25))


def loop_rate(spec: ModelSpec, train, info, recipe: Recipe, repeats: int) -> float:
    """Images/s of the training loop: the fastest of ``repeats`` one-epoch fits."""
    rates = []
    for _ in range(repeats):
        torch.manual_seed(0)
        rates.append(len(train) / fit(build(spec), train, info, recipe, seed=0)["seconds"])
    return max(rates)


def timed_rate(spec: ModelSpec, recipe: Recipe, threads: int, table, repeats: int) -> float:
    """Images/s of the latency model's train-mode timing of the whole network."""
    config = LatencyConfig(
        mode="train", batch=recipe.batch_size, threads=threads, latency_precision="training"
    )
    cpu = torch.device("cpu")
    table = LatencyTable(Path(table), cpu, threads)
    model = LatencyModel(spec, config, cpu, recipe.precision, recipe.channels_last, table)
    seconds = min(model.measure_network(base_widths(spec)).seconds for _ in range(repeats))
    return recipe.batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    train, _, info = load("fashion-mnist", args.data_dir)
    train = train.subset(slice(0, args.images))
    recipe = configured(Recipe, {"epochs": 1})
    print(
        f"torch {torch.__version__}, {args.images} images, batch {recipe.batch_size}, precision "
        f"{recipe.precision}, channels_last {recipe.channels_last}, regulariser {recipe.drop_rate}"
    )
    rows = []
    for space, width_mult in NETWORKS:
        spec = ModelSpec(space, info.num_classes, info.in_channels, info.image_size, width_mult)
        for threads in (1, 2):
            with using_threads(threads):
                fit(build(spec), train.subset(slice(0, 1024)), info, recipe, seed=0)  # kernel set-up
                loop = loop_rate(spec, train, info, recipe, args.repeats)
            timed = timed_rate(spec, recipe, threads, f"/tmp/latency-train-mode-{threads}.json", args.repeats)
            rows.append(
                {"network": f"{space} x{width_mult:g}", "threads": threads, "loop": loop, "timed": timed}
            )
            print(
                f"{space} x{width_mult:g}, {threads} thread(s): training loop {loop:,.0f} images/s, "
                f"timed train-mode pass {timed:,.0f} images/s, timed/loop {timed / loop:.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
