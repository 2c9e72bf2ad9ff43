"""How long until ``netadjust --help`` answers? The parser needs no torch: it is imported
only when a command runs. Prints the median wall time of N runs of each command line.

    .venv/bin/python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "netadjust"
LINES = [["--help"], ["search", "--help"], ["spaces"]]  # the last one imports torch: the contrast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for line in LINES:
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([str(SCRIPT), *line], check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
        print(f"netadjust {' '.join(line)}: median {statistics.median(seconds):.2f} s of {args.runs} runs")


if __name__ == "__main__":
    main()
