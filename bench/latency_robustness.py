"""Does ``--budget latency`` work on an ordinary, noisy machine? The latency issue's checks.

1. ``netadjust cost resnet20 --width-mult 0.5 --budget latency`` (28x28, one channel) run
   N times in a row: how many are accepted, and how far their measured times and table
   estimates spread (largest over smallest, minus 1).
2. A latency search (the quick preset cut to 2 iterations of 1 epoch on 2,000 images)
   run M times: how many finish, and the searched network's time over the original's as
   timed again side by side at the end.
3. The cost command again beside one CPU-bound process (a Python busy loop): refused, or
   how far its figure lies from the idle one.

Run it on an otherwise idle machine (it starts the busy process itself):

    .venv/bin/python bench/latency_robustness.py [--costs 10] [--searches 5] [--busy 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COST = [
    "cost", "resnet20", "--width-mult", "0.5", "--budget", "latency", "--num-classes", "10",
    "--in-channels", "1", "--image-size", "28", "--json",
]  # fmt: skip
SEARCH = [
    "search", "--preset", "quick", "--iterations", "2", "--epochs", "1", "--train-limit", "2000",
    "--val-limit", "1000", "--test-limit", "500", "--budget", "latency",
]  # fmt: skip


def netadjust(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netadjust", *arguments], capture_output=True, text=True)


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1 if values else float("nan")


def costs(count: int, table: Path, label: str) -> list[dict]:
    """``count`` cost commands in a row: each one's figures, or its refusal."""
    results = []
    for index in range(count):
        started = time.perf_counter()
        result = netadjust(*COST, "--latency-table", str(table))
        seconds = time.perf_counter() - started
        if result.returncode == 0:
            timing = json.loads(result.stdout)["latency"]
            row = {"measured_ms": 1e3 * timing["measured"], "estimate_ms": 1e3 * timing["estimate"]}
            row["repeats_apart"] = timing["spread"]
            print(
                f"{label} {index + 1}: measured {row['measured_ms']:.3f} ms, "
                f"estimate {row['estimate_ms']:.3f} ms "
                f"(repeats {row['repeats_apart']:.1%} apart; {seconds:.1f} s)",
                flush=True,
            )
        else:
            row = {"refused": result.stderr.strip()}
            print(f"{label} {index + 1}: {row['refused']}", flush=True)
        results.append(row)
    return results


def summary(label: str, rows: list[dict]) -> dict:
    accepted = [row for row in rows if "refused" not in row]
    figures = {
        "accepted": len(accepted),
        "runs": len(rows),
        "measured_spread": spread([row["measured_ms"] for row in accepted]),
        "estimate_spread": spread([row["estimate_ms"] for row in accepted]),
    }
    print(
        f"{label}: {figures['accepted']} of {figures['runs']} accepted; measured times spread by "
        f"{figures['measured_spread']:.1%}, table estimates by {figures['estimate_spread']:.1%}",
        flush=True,
    )
    return figures


def searches(count: int, folder: Path, table: Path) -> dict:
    ratios, believed, refused = [], [], []
    for seed in range(count):
        out = folder / f"search-{seed}"
        result = netadjust(*SEARCH, "--seed", str(seed), "--latency-table", str(table), "--out", str(out))
        if result.returncode != 0:
            refused.append(result.stderr.strip().splitlines()[-1])
            print(f"search {seed}: {refused[-1]}", flush=True)
            continue
        final = json.loads((out / "final.json").read_text())
        ratios.append(final["latency"] / final["original_latency"])
        last = json.loads((out / "history.jsonl").read_text().splitlines()[-1])
        believed.append(1 / (1 - last["next_excess"]))  # excess = (cost - budget) / cost
        print(
            f"search {seed}: searched / original time, timed again: {ratios[-1]:.3f} "
            f"(as the last rescale timed it: {believed[-1]:.3f}; MACs "
            f"{final['macs'] / final['original_macs']:.2f}x)",
            flush=True,
        )
    within = sum(abs(ratio - 1) <= 0.03 for ratio in ratios)
    print(
        f"searches: {len(ratios)} of {count} finished, {within} within 3% of the original's time", flush=True
    )
    return {
        "finished": len(ratios),
        "runs": count,
        "ratios": ratios,
        "rescale_ratios": believed,
        "within_3_percent": within,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", type=int, default=10)
    parser.add_argument("--searches", type=int, default=5)
    parser.add_argument("--busy", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "table.json"
        idle = costs(args.costs, table, "idle cost")
        figures["idle_costs"] = summary("idle cost", idle)
        if args.searches:
            figures["searches"] = searches(args.searches, Path(folder), table)
        if args.busy:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                loaded = costs(args.busy, table, "busy cost")
            finally:
                busy.kill()
            figures["busy_costs"] = summary("beside a busy process", loaded)
            accepted = [row["measured_ms"] for row in loaded if "refused" not in row]
            idle_ms = sorted(row["measured_ms"] for row in idle if "refused" not in row)
            if accepted and idle_ms:
                median_idle = idle_ms[len(idle_ms) // 2]
                off = [value / median_idle - 1 for value in accepted]
                figures["busy_costs"]["off_idle_median"] = off
                print(
                    "beside a busy process, accepted figures off the idle median by "
                    + ", ".join(f"{value:+.1%}" for value in off),
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
