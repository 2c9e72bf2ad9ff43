"""Does the search's learning rate (0.1 at batch 128, every preset but paper) train each
network, or does it diverge? Short trainings on Fashion-MNIST at 28 x 28: ``--epochs`` epochs
on the first ``--images`` training images, each network at each learning rate with and
without the channel-dropout regulariser, one seed; test top-1 on 2,000 images and the last
epoch's training loss (chance: ln 10 = 2.30). Networks: ResNet-20 x0.5 and ResNet-18 x0.25
(the Results rows), torchvision's MobileNetV3-Small and MobileNetV2 x0.5 (the zoo rows).
Then a table of every kept record (docs/results.md quotes it); last line:
``diverged=<network@lr/regulariser, ...>`` (final training loss above chance).

    OMP_NUM_THREADS=1 .venv/bin/python bench/lr_stability.py [--lrs 0.1 0.05] [--epochs 2] [--images 12000]
        [--networks NAME ...]

writes ``bench/results/lr_stability.json`` (one record per training, kept between runs).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from netadjust.config import ModelSpec, Recipe
from netadjust.data import load
from netadjust.spaces import build
from netadjust.train import evaluate, fit

RESULTS = Path(__file__).resolve().parent / "results" / "lr_stability.json"
NETWORKS = {
    "resnet20 x0.5": dict(space="resnet20", width_mult=0.5),
    "resnet18 x0.25": dict(space="resnet18", width_mult=0.25),
    "torchvision:mobilenet_v3_small": dict(model="torchvision:mobilenet_v3_small"),
    "torchvision:mobilenet_v2 x0.5": dict(model="torchvision:mobilenet_v2", model_args='{"width_mult": 0.5}'),
}


def table(records: dict) -> str:
    """The kept records as a markdown table, one row per training."""
    lines = [
        "| network | lr | regulariser | epochs × images | final training loss | test top-1 (2,000 images) |",
        "|---|---:|---|---|---:|---:|",
    ]
    for key, record in records.items():
        network, setting = key.split("@")
        lr, regulariser, length = setting.split("/")
        lines.append(
            f"| {network} | {lr} | {'0.05' if regulariser == 'regulariser' else 'off'} | "
            f"{length.replace('x', ' × ')} | {record['train_loss']:.3f} | {100 * record['test_top1']:.2f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    train, test, info = load("fashion-mnist", args.data_dir)
    train, test = train.subset(slice(0, args.images)), test.subset(slice(0, 2000))
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.networks:
        settings = NETWORKS[name]
        spec = ModelSpec(
            num_classes=info.num_classes, in_channels=info.in_channels, image_size=28, **settings
        )
        for lr in args.lrs:
            for drop in (0.05, 0.0):
                key = f"{name}@{lr:g}/{'regulariser' if drop else 'none'}/{args.epochs}x{args.images}"
                if key not in records:
                    torch.manual_seed(0)
                    model, started = build(spec), time.perf_counter()
                    recipe = Recipe(epochs=args.epochs, lr=lr, drop_rate=drop)
                    log = fit(model, train, info, recipe, seed=0)
                    records[key] = {
                        "train_loss": log["epochs"][-1]["loss"],
                        "test_top1": evaluate(model, test, info)["top1"],
                        "seconds": time.perf_counter() - started,
                        "threads": torch.get_num_threads(),
                    }
                    RESULTS.write_text(json.dumps(records, indent=1) + "\n")
                record = records[key]
                loss, top1 = record["train_loss"], 100 * record["test_top1"]
                print(f"{key}: train loss {loss:.3f}, test top-1 {top1:.2f}%")
    print(table(records))
    diverged = [key for key, record in records.items() if not record["train_loss"] < math.log(10)]
    print(f"diverged={','.join(diverged) or 'none'}")


if __name__ == "__main__":
    main()
