"""What does ``--budget latency`` hand back, per ``--round-to``, over seeds?

Runs short searches (the quick preset cut to 2 iterations of 1 epoch on 2,000 images; the
point is the rescale, not the accuracy) with ``--budget latency --latency-mode train
--latency-batch 128`` for each grid and seed, and prints per run the searched network's
MACs over the original's, its time over the original's as timed again at the end, and the
layer table's error; then the mean ± std per grid.

    .venv/bin/python bench/latency_search.py [--round-to 1 8 16] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SEARCH = [
    "--preset", "quick", "--iterations", "2", "--epochs", "1", "--train-limit", "2000",
    "--val-limit", "1000", "--test-limit", "500", "--budget", "latency", "--latency-mode", "train",
    "--latency-batch", "128",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("$ netadjust search " + " ".join(SEARCH) + " --round-to N --seed S")
    print("N | seed | MACs / original | time / original (timed again) | table estimate / time - 1")
    rows: dict[int, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "table.json"
        for round_to in args.round_to:
            for seed in range(args.seeds):
                out = Path(folder) / f"n{round_to}-s{seed}"
                command = [
                    sys.executable, "-m", "netadjust", "search", *SEARCH, "--round-to", str(round_to),
                    "--seed", str(seed), "--latency-table", str(table), "--out", str(out),
                ]  # fmt: skip
                subprocess.run(command, check=True, capture_output=True)
                final = json.loads((out / "final.json").read_text())
                row = (
                    final["macs"] / final["original_macs"],
                    final["latency"] / final["original_latency"],
                    final["latency_estimate"] / final["latency"] - 1,
                )
                rows.setdefault(round_to, []).append(row)
                print(f"{round_to} | {seed} | {row[0]:.2f} | {row[1]:.3f} | {row[2]:+.1%}", flush=True)
    print("\nN | MACs / original | time / original | table error")
    for round_to, values in rows.items():
        cells = []
        for column in zip(*values, strict=True):
            spread = statistics.stdev(column) if len(column) > 1 else 0.0
            cells.append(f"{statistics.fmean(column):.3f} ± {spread:.3f}")
        print(f"{round_to} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
