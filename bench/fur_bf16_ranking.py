"""Does bf16 autocast keep the FUR ranking? fp32 against bf16 FUR on several trained networks.

Each space is trained briefly on Fashion-MNIST (seed 0), then FUR is estimated on the
same validation images by the fast path in fp32 and under bf16 autocast. Prints, per
network, the Spearman rank correlation of the two, the share of the k widths each would
grow (and shrink) that the other picks too, and beside them the split-half Spearman of
the fp32 estimate itself (its own sampling noise). Last line: the smallest bf16/fp32
Spearman.

    .venv/bin/python bench/fur_bf16_ranking.py [--data-dir DIR] [--train 5000] [--val 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from _trained import overlap
from netadjust.config import FurConfig
from netadjust.cost import sensitivities
from netadjust.data import load, split
from netadjust.fur import estimate_fur, spearman, stability
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import Recipe, fit

SPACES = (
    ("resnet20", 0.5),
    ("plain20", 0.5),
    ("resnet56", 0.5),
    ("pyramidnet20", 0.5),
    ("densenet40", 0.5),
    ("resnet18-small", 0.25),
    ("mobilenetv2-small", 0.5),
    ("mnasnet-small", 0.5),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()

    data, _, info = load("fashion-mnist", args.data_dir)
    train, val = split(data, 0.1, seed=0)
    train, val = train.subset(slice(0, args.train)), val.subset(slice(0, args.val))
    print(f"{len(train)} training images, {args.epochs} epochs; FUR on {len(val)} images, T = {args.repeats}")
    header = ("space", "bf16/fp32 rho", "grow", "shrink", "fp32 split-half rho", "s")
    print(f"{header[0]:<18} {header[1]:>13} {header[2]:>5} {header[3]:>6} {header[4]:>20} {header[5]:>5}")
    worst = 1.0
    for space, width_mult in SPACES:
        start = time.perf_counter()
        spec = ModelSpec(space, info.num_classes, info.in_channels, info.image_size, width_mult)
        torch.manual_seed(0)
        model = build(spec)
        fit(model, train, info, Recipe(epochs=args.epochs, lr=0.1), seed=0)
        f = sensitivities(spec, base_widths(spec))
        config = FurConfig(repeats=args.repeats, method="fast", control_variate=False)
        fp32 = estimate_fur(model, val, info, f, config, seed=0)
        bf16 = estimate_fur(model, val, info, f, dataclasses.replace(config, bf16=True), seed=0)
        names = list(fp32.fur)
        rho = spearman([bf16.fur[n] for n in names], [fp32.fur[n] for n in names])
        grow, shrink = (overlap(fp32.fur, bf16.fur, top, args.k) / args.k for top in (True, False))
        noise = stability(fp32, args.k)["spearman"]
        worst = min(worst, rho)
        seconds = time.perf_counter() - start
        print(f"{space:<18} {rho:>13.3f} {grow:>5.2f} {shrink:>6.2f} {noise:>20.3f} {seconds:>5.0f}")
    print(f"min_spearman={worst:.3f}")


if __name__ == "__main__":
    main()
