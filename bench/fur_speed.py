"""FUR estimation: the fast path against the reference path, measured in one run.

ResNet-20 (width-mult 1) on Fashion-MNIST, trained briefly by this script, FUR on 6,000
validation images with T = 2. Prints the seconds of each path, the largest relative
difference of their FUR values (fp32), the bf16 fast path's time and its Spearman rank
correlation with fp32, and as its last line the ratio of the reference (fp32) to the fast
path as a search runs it by default: under bf16 autocast where the CPU has native bf16
(``bench/fur_bf16_ranking.py`` measures that this keeps the ranking), else fp32.

    .venv/bin/python bench/fur_speed.py [--data-dir DIR] [--val 6000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from _trained import trained_network
from netadjust.config import FurConfig
from netadjust.fur import estimate_fur, spearman
from netadjust.train import cpu_has_fast_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--val", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    model, val, info, f = trained_network(args.data_dir, 1.0, 10000, 2, args.val)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(val)} validation images, "
        f"T = {args.repeats}, batch {args.batch_size}"
    )

    def run(method: str, bf16: bool = False):
        start = time.perf_counter()
        estimate = estimate_fur(
            model,
            val,
            info,
            f,
            FurConfig(base_rate=0.05, repeats=args.repeats, method=method, bf16=bf16, control_variate=False),
            seed=0,
            batch_size=args.batch_size,
        )
        return estimate, time.perf_counter() - start

    reference, reference_s = run("reference")
    fast, fast_s = run("fast")
    fast_bf16, bf16_s = run("fast", bf16=True)
    names = list(reference.fur)
    worst = max(abs(fast.fur[n] - reference.fur[n]) / abs(reference.fur[n]) for n in names)
    rho = spearman([fast_bf16.fur[n] for n in names], [fast.fur[n] for n in names])
    print(f"reference path: {reference_s:.1f} s")
    print(f"fast path:      {fast_s:.1f} s (largest relative FUR difference {worst:.1e})")
    print(
        f"fast path bf16: {bf16_s:.1f} s (Spearman with fp32 {rho:.3f}, "
        f"{reference_s / bf16_s:.2f}x the reference)"
    )
    print(f"fp32 fast path: {reference_s / fast_s:.2f}x the reference, with identical FUR values")
    default_s = bf16_s if cpu_has_fast_bf16() else fast_s
    print(f"reference_s={reference_s:.2f} fast_s={default_s:.2f} speedup={reference_s / default_s:.2f}")


if __name__ == "__main__":
    main()
