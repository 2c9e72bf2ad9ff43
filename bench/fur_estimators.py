"""Second-order FUR against Monte Carlo: which agrees with a long Monte Carlo reference?

On a network trained by ``_trained.py`` (Fashion-MNIST, fixed seed; ResNet-20 x0.5 unless
``--space`` names another), all on the same validation images: a Monte Carlo reference
with T = 32 masks per width (fast path where the space has one); the search's default
Monte Carlo estimate (T = 4, the quick and fmnist presets'); and the second-order estimate
with each curvature (exact Gauss-Newton, labels sampled from the model with 1 and 4 draws,
the true labels). For each: Spearman correlation of its FUR with the reference's, overlap
of the k = 6 widths it would grow and shrink with the reference's, the ratio of its mean
loss rise to the reference's (the same quantity, or something else?), and seconds. Last
line, for the exact curvature:
``second_order_spearman=<a> mc_spearman=<b> speedup=<c>`` (c = Monte Carlo seconds /
second-order seconds).

    .venv/bin/python bench/fur_estimators.py [--space resnet20] [--width-mult 0.5] [--val 6000]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from _trained import overlap, trained_network
from netadjust.config import FurConfig
from netadjust.fur import estimate_fur, spearman

K = 6
# name: (method, curvature, repeats, control variate)
ESTIMATORS = {
    "monte-carlo-T4": ("auto", "exact", 4, False),
    "monte-carlo-T4-cv": ("auto", "exact", 4, True),
    "monte-carlo-T2-cv": ("auto", "exact", 2, True),
    "monte-carlo-T1-cv": ("auto", "exact", 1, True),
    "second-order-exact": ("second-order", "exact", 1, False),
    "second-order-sampled-1": ("second-order", "sampled", 1, False),
    "second-order-sampled-4": ("second-order", "sampled", 4, False),
    "second-order-empirical": ("second-order", "empirical", 1, False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--space", default="resnet20")
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--val", type=int, default=6000)
    parser.add_argument("--reference-repeats", type=int, default=32)
    parser.add_argument("--only", nargs="+", choices=list(ESTIMATORS), help="run only these estimators")
    args = parser.parse_args()

    model, val, info, f = trained_network(args.data_dir, args.width_mult, 20000, 3, args.val, args.space)
    plain = FurConfig(repeats=args.reference_repeats, control_variate=False, bf16=False)
    reference = estimate_fur(model, val, info, f, plain, seed=1000)
    ref_rise = statistics.fmean(reference.loss_increase.values())
    print(
        f"{args.space} x{args.width_mult}, {len(f)} widths, {len(val)} validation images; reference: "
        f"Monte Carlo ({reference.method}), T = {args.reference_repeats}, {reference.seconds:.1f} s, "
        f"mean loss rise {ref_rise:.5f}"
    )
    print(f"{'estimator':24} {'spearman':>8} {'grow':>5} {'shrink':>6} {'rise/ref':>8} {'seconds':>8}")
    results = {}
    chosen = {name: ESTIMATORS[name] for name in args.only} if args.only else ESTIMATORS
    for name, (method, curvature, repeats, control_variate) in chosen.items():
        config = FurConfig(
            repeats=repeats, method=method, curvature=curvature, control_variate=control_variate
        )
        estimate = estimate_fur(model, val, info, f, dataclasses.replace(config, bf16=False), seed=7)
        rho = spearman(list(estimate.fur.values()), list(reference.fur.values()))
        rise = statistics.fmean(estimate.loss_increase.values()) / ref_rise
        results[name] = (rho, estimate.seconds)
        print(
            f"{name:24} {rho:8.3f} {overlap(estimate.fur, reference.fur, True, K):>3}/{K} "
            f"{overlap(estimate.fur, reference.fur, False, K):>4}/{K} {rise:8.3f} {estimate.seconds:8.2f}"
        )
    if not {"monte-carlo-T4", "second-order-exact"} <= set(results):
        return
    mc_rho, mc_seconds = results["monte-carlo-T4"]
    so_rho, so_seconds = results["second-order-exact"]
    print(
        f"second_order_spearman={so_rho:.3f} mc_spearman={mc_rho:.3f} speedup={mc_seconds / so_seconds:.1f}"
    )


if __name__ == "__main__":
    main()
