"""How well does the layer lookup table of ``--budget latency`` predict a whole network's time?

For a space and each timing mode, the table is calibrated on the base widths (as a search
is on its original network), then, for random width sets (each width times a factor in
[0.5, 1.6], per channel and on a grid of 8), the table's estimate is set beside the
network's measured time: its ratio to the original, timed side by side, times the
original's time. Also printed: the measured time's ratio to the original next to the MACs'
ratio, which says how much the time depends on the widths at all.
Last line: ``mean|error|=<x> max|error|=<y>`` over all rows.

    .venv/bin/python bench/latency_table.py [--space resnet20] [--width-mult 0.5] [--sets 6]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import torch

from netadjust.adjust import scale_widths
from netadjust.config import LatencyConfig, ModelSpec
from netadjust.cost import model_cost
from netadjust.latency import latency_model
from netadjust.layer_table import device_description
from netadjust.spaces import base_widths

MODES = (("infer", 1), ("infer", 64), ("train", 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="resnet20")
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--sets", type=int, default=6, help="random width sets per mode and grid")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    spec = ModelSpec(args.space, num_classes=10, in_channels=1, image_size=28, width_mult=args.width_mult)
    device = torch.device("cpu")
    print(
        f"{args.space} x{args.width_mult} on 1x28x28, {device_description(device)}, "
        f"torch {torch.__version__}, precision {args.precision}"
    )
    original = base_widths(spec)
    errors = []
    with tempfile.TemporaryDirectory() as folder:
        for mode, batch in MODES:
            table = str(Path(folder) / "t.json")
            config = LatencyConfig(batch=batch, mode=mode, table=table, max_disagreement=1.0)
            model = latency_model(spec, config, device, args.precision, channels_last=True)
            seconds, spread = model.calibrate(original)
            print(
                f"\n{mode}, batch {batch}: original {1e3 * seconds:.3f} ms (spread {spread:.1%}); "
                f"its layers' sum {1e3 * model.layers_sum(original):.3f} ms"
            )
            print("grid | MACs / original | measured / original (spread) | table estimate / measured - 1")
            rng = random.Random(0)
            for round_to in (1, 8):
                for _ in range(args.sets):
                    widths = {name: max(4, round(w * rng.uniform(0.5, 1.6))) for name, w in original.items()}
                    widths = scale_widths(widths, 1.0, 4, round_to)
                    ratio, ratio_spread = model.ratio(widths, original)
                    measured = ratio * seconds
                    error = model.estimate(widths) / measured - 1
                    errors.append(abs(error))
                    macs = model_cost(spec, widths).macs / model_cost(spec, original).macs
                    cells = f"{round_to:>4} | {macs:15.2f} | {ratio:10.2f} ({ratio_spread:5.1%})"
                    print(f"{cells} | {error:+.1%}")
    print(f"\nmean|error|={statistics.fmean(errors):.3f} max|error|={max(errors):.3f}")


if __name__ == "__main__":
    main()
