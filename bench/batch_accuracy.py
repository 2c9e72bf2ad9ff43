"""Does a large batch reach batch 128's accuracy once the schedule is longer?

On a GPU the training step is bound by the host, so images/s grow almost linearly with the
batch (docs/performance.md), but after 5 epochs no large-batch learning rate came within 4
points of batch 128. This trains ResNet-20 x1 on all 60,000 Fashion-MNIST images for
``--epochs`` epochs per (batch, peak lr, warm-up epochs) and seed, and reports test top-1
as mean +- sample std over seeds and as the paired difference to the first setting (same
seed, same initial weights). Each finished training is appended to ``--out`` (JSON lines)
at once; a run started again skips what is there, so it can be stopped at any time.

    .venv/bin/python bench/batch_accuracy.py [--epochs 15] [--seeds 3]
        [--settings "128:0.1:0,512:0.2:1,512:0.4:1"] [--data-dir DIR] [--out FILE]
    .venv/bin/python bench/batch_accuracy.py --summary   (the table of what --out holds)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from pathlib import Path

import torch

from netadjust.config import Recipe
from netadjust.data import load
from netadjust.spaces import ModelSpec, build
from netadjust.train import evaluate, fit

RESULTS = Path(__file__).resolve().parent / "results"


def parse_settings(text: str) -> list[tuple[int, float, float]]:
    """``batch:lr:warm-up`` items, comma-separated."""
    settings = []
    for item in text.split(","):
        batch, lr, warmup = item.split(":")
        settings.append((int(batch), float(lr), float(warmup)))
    return settings


def trained_top1(spec: ModelSpec, train, test, info, recipe: Recipe, seed: int) -> tuple[float, float]:
    """Test top-1 (%) of ``spec`` trained by ``recipe`` from seed ``seed``'s initial weights
    (the same for every recipe), and the training's seconds."""
    torch.manual_seed(seed)
    model = build(spec).to(train.device)
    seconds = fit(model, train, info, recipe, seed=seed)["seconds"]
    return 100 * evaluate(model, test, info)["top1"], seconds


def key(record: dict) -> tuple:
    return record["batch"], record["lr"], record["warmup_epochs"], record["epochs"]


def summary(records: list[dict], settings: list[tuple[int, float, float]], epochs: int) -> str:
    """Per setting: test top-1 mean +- std, and the paired difference to the first setting."""
    by_setting = {s: {r["seed"]: r for r in records if key(r) == (*s, epochs)} for s in settings}
    first = by_setting[settings[0]]
    lines = [
        f"ResNet-20 x1, Fashion-MNIST (60,000 training images), {epochs} epochs, test top-1",
        "| batch, peak lr, warm-up epochs | seeds | test top-1 | minus the first (paired) | seconds each |",
        "|---|---:|---:|---:|---:|",
    ]
    for setting, runs in by_setting.items():
        if not runs:
            continue
        tops = [run["top1"] for run in runs.values()]
        spread = f" ± {statistics.stdev(tops):.2f}" if len(tops) > 1 else ""
        paired = [runs[s]["top1"] - first[s]["top1"] for s in runs if s in first]
        if setting == settings[0] or not paired:
            difference = ""
        else:
            difference = f"{statistics.mean(paired):+.2f} (1 seed)"
            if len(paired) > 1:
                error = statistics.stdev(paired) / math.sqrt(len(paired))
                difference = f"{statistics.mean(paired):+.2f} ± {error:.2f} (SE, {len(paired)} seeds)"
        seconds = ", ".join(f"{run['seconds']:.0f}" for run in runs.values())
        batch, lr, warmup = setting
        lines.append(
            f"| {batch}, {lr:g}, {warmup:g} | {len(tops)} | {statistics.mean(tops):.2f}{spread}% "
            f"| {difference} | {seconds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", default="128:0.1:0,512:0.2:1,512:0.4:1")
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=RESULTS / "batch_accuracy.jsonl")
    parser.add_argument("--summary", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    settings = parse_settings(args.settings)
    records = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.summary:
        train, test, info = load("fashion-mnist", args.data_dir)
        spec = ModelSpec("resnet20", info.num_classes, info.in_channels, info.image_size)
        for seed in range(args.seeds):  # seed by seed: a run cut short leaves paired rows
            for batch, lr, warmup in settings:
                wanted = (batch, lr, warmup, args.epochs)
                if any(key(r) == wanted and r["seed"] == seed for r in records):
                    continue
                recipe = Recipe(epochs=args.epochs, batch_size=batch, lr=lr, warmup_epochs=warmup)
                top1, seconds = trained_top1(spec, train, test, info, recipe, seed)
                record = {
                    "batch": batch,
                    "lr": lr,
                    "warmup_epochs": warmup,
                    "epochs": args.epochs,
                    "seed": seed,
                    "top1": top1,
                    "seconds": seconds,
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                    "torch": torch.__version__,
                }
                records.append(record)
                with args.out.open("a") as out:
                    out.write(json.dumps(record) + "\n")
                print(
                    f"batch {batch}, lr {lr:g}, warm-up {warmup:g}, seed {seed}: "
                    f"{record['top1']:.2f}% in {seconds:.0f} s",
                    flush=True,
                )
    print(summary(records, settings, args.epochs))


if __name__ == "__main__":
    main()
