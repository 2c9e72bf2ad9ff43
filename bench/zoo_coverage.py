"""Which of the networks users hold does netadjust search? Every torchvision classification
model and one model of each of a list of timm CNN families, each through ``netadjust
inspect`` (timed) and a one-iteration search on a few hundred Fashion-MNIST images, as a
user would type them (random weights, nothing downloaded).

    OMP_NUM_THREADS=1 .venv/bin/python bench/zoo_coverage.py [--only NAME ...] [--summary]

Each model's outcome is appended to ``bench/results/zoo_coverage.jsonl`` as it finishes (a
model already there is skipped, so an interrupted run continues; ``--again`` replaces the
records of the models named with ``--only``); ``--summary`` writes the table
``bench/results/zoo_coverage.md`` from those records. A model refused for its input size is
tried again at the smallest side the refusal names. ``--retime`` times ``inspect`` again for
every record (or the ``--only`` models) and keeps the new seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RECORDS = RESULTS / "zoo_coverage.jsonl"
TABLE = RESULTS / "zoo_coverage.md"
SIDE = 32  # Fashion-MNIST resized: what an ImageNet network needs at least, mostly
SEARCH = [
    "--iterations", "1", "--epochs", "1", "--train-limit", "300", "--val-limit", "100",
    "--test-limit", "100", "--repeats", "1", "--batch-size", "50",
]  # fmt: skip
LIMIT = 900  # seconds a command may take before it counts as too slow
# one model of each timm CNN family (the smallest where a family has sizes)
TIMM = [
    "resnet18", "resnet50d", "seresnext26d_32x4d", "res2net50_14w_8s", "resnest14d", "regnetx_002",
    "regnety_002", "efficientnet_b0", "efficientnet_lite0", "tinynet_e", "mobilenetv2_050",
    "mobilenetv3_small_050", "mnasnet_small", "fbnetc_100", "lcnet_050", "mixnet_s", "ghostnet_100",
    "rexnet_100", "dla34", "dpn68", "densenet121", "cspresnet50", "darknet17", "vgg11_bn",
    "repvgg_a0", "hrnet_w18_small", "selecsls42b", "convnext_atto", "nf_resnet26", "xception41",
]  # fmt: skip


def torchvision_names() -> list[str]:
    from netadjust.factories import zoo_names

    return zoo_names("torchvision")


def netadjust(*arguments: str) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "netadjust", *arguments], capture_output=True, text=True, timeout=LIMIT
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"took over {LIMIT} s", time.perf_counter() - started
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def reason(stderr: str) -> str:
    """The one line a refusal printed, or the last line of a traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("netadjust: error:")]
    return (errors or lines or ["(nothing printed)"])[-1].removeprefix("netadjust: error: ")[:300]


def outcome(model: str) -> dict:
    record = {"model": model, "side": SIDE}
    code, out, err, seconds = netadjust("inspect", "--model", model, "--image-size", str(SIDE), "--json")
    wanted = re.search(r"pass --image-size (\d+)", err)
    if code == 2 and wanted:
        record["side"] = int(wanted.group(1))
        code, out, err, seconds = netadjust(
            "inspect", "--model", model, "--image-size", str(record["side"]), "--json"
        )
    record["inspect_seconds"] = seconds
    if code != 0:
        traceback = "Traceback" in err
        return record | {"status": "traceback" if traceback else "refused", "reason": reason(err)}
    found = json.loads(out)
    record |= {
        "widths": len(found["widths"]),
        "held": len(found.get("held", {})),
        "macs": found["macs"],
        "params": found["params"],
    }
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        code, out, err, seconds = netadjust(
            "search", "--model", model, "--image-size", str(record["side"]), *SEARCH, "--out", str(run)
        )
        record["search_seconds"] = seconds
        if code != 0:
            traceback = "Traceback" in err
            return record | {
                "status": "traceback" if traceback else "refused in search",
                "reason": reason(err),
            }
        final = json.loads((run / "final.json").read_text())
    changed = sum(final["widths"][name] != width for name, width in final["original_widths"].items())
    return record | {
        "status": "searched",
        "searched_macs": final["macs"],
        "widths_changed": changed,
    }


TRANSFORMERS = ("torchvision:vit_", "torchvision:swin_", "torchvision:maxvit")  # not CNNs


def read_records() -> list[dict]:
    return [json.loads(line) for line in RECORDS.read_text().splitlines()] if RECORDS.exists() else []


def cnn_records(records: list[dict]) -> list[dict]:
    return [record for record in records if not record["model"].startswith(TRANSFORMERS)]


def summary() -> str:
    records = read_records()
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    cnns = cnn_records(records)
    searched = sum(record["status"] == "searched" for record in cnns)
    held = sum(record["status"] == "searched" and record.get("held", 0) > 0 for record in cnns)
    slowest = max(cnns, key=lambda record: record["inspect_seconds"])
    lines = [
        f"{len(records)} models: "
        + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())),
        f"CNNs (all but the vision transformers: ViT, Swin, MaxViT): {searched} of {len(cnns)} searched "
        f"({searched / max(1, len(cnns)):.0%}), {held} of them with some widths held at their size; "
        f"slowest CNN inspect {slowest['inspect_seconds']:.1f} s ({slowest['model']}); "
        f"over 30 s: {sum(record['inspect_seconds'] > 30 for record in cnns)}; slowest of all "
        f"{len(records)}: {max(record['inspect_seconds'] for record in records):.1f} s",
        "",
        "| model | side | widths (held) | MACs | inspect s | outcome | searched MACs (changed) or reason |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for record in records:
        detail = (
            f"{record['searched_macs']:,} ({record['widths_changed']})"
            if record["status"] == "searched"
            else record.get("reason", "").replace("|", "/")
        )
        lines.append(
            f"| {record['model']} | {record['side']} | {record.get('widths', '')}"
            f"{' (' + str(record['held']) + ')' if record.get('held') else ''} | "
            f"{format(record['macs'], ',') if 'macs' in record else ''} | {record['inspect_seconds']:.1f} | "
            f"{record['status']} | {detail} |"
        )
    return "\n".join(lines)


def readme_figures() -> list[str]:
    """The phrases of the README's zoo paragraph, from the records."""
    cnns = cnn_records(read_records())
    searched = sum(record["status"] == "searched" for record in cnns)
    seconds = [record["inspect_seconds"] for record in cnns]
    slowest, median = max(seconds), statistics.median(seconds)
    return [
        f"Of the {len(cnns)} CNNs tried",
        f"{searched} are searched and {len(cnns) - searched} refused in one line",
        f"`inspect` took at most {slowest:.0f} s per CNN here (median {median:.0f} s)",
    ]


DOC = Path(__file__).resolve().parents[1] / "docs" / "zoo.md"


def document(planned: int) -> str:
    """docs/zoo.md: how the table is made, and the table as the records stand."""
    done = len(RECORDS.read_text().splitlines())
    partial = f"**Partial: {done} of {planned} models so far** (the run continues where it stopped).\n\n"
    return (
        "# The zoos' networks: searched or refused\n\n"
        "Written by `bench/zoo_coverage.py --summary` from `bench/results/zoo_coverage.jsonl`, which\n"
        "`OMP_NUM_THREADS=1 .venv/bin/python bench/zoo_coverage.py` fills: every torchvision\n"
        "classification model and one model of each of 30 timm CNN families, as a user types them\n"
        f"(random weights), each through `netadjust inspect --model REF --image-size {SIDE}` (timed;\n"
        "at the smallest side a refusal names where a model cannot run at that size) and a\n"
        f"one-iteration search on 300 Fashion-MNIST images (`{' '.join(SEARCH)}`).\n"
        "Hardware: a 2-core x86-64 VM, one thread per job. Every model's inspect was timed again\n"
        "(`--retime`: one at a time, each checked to find what its record says) after the plan\n"
        "checks moved to the meta device (shapes only: no weights, no arithmetic), beside a\n"
        "single-thread training on the other core (and at times tests); the three Swin-V2 and\n"
        "RexNet were run again (`--again`) after discovery got its limit of channel indices\n"
        "followed (Swin-V2 had run into the 60 s limit, 83-90 s each). Widths (held): the\n"
        "searchable widths, and in brackets those held at their size because the model splits or\n"
        "slices them by counts fixed when it was built (docs/models.md).\n\n"
        + (partial if done < planned else "")
        + summary()
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="these models (zoo:NAME) only")
    parser.add_argument("--summary", action="store_true", help="write the table from the records and stop")
    parser.add_argument(
        "--again", action="store_true", help="run the --only models again, replacing their records"
    )
    parser.add_argument("--retime", action="store_true", help="time inspect again for every record")
    args = parser.parse_args()
    if args.retime:
        retime(args.only)
        return
    everything = [f"torchvision:{name}" for name in torchvision_names()] + [f"timm:{n}" for n in TIMM]
    if args.summary:
        TABLE.write_text(summary() + "\n")
        DOC.write_text(document(len(everything)))
        print(TABLE.read_text().splitlines()[0])
        return
    models = args.only or everything
    records = read_records()
    if args.again and args.only:
        records = [record for record in records if record["model"] not in args.only]
        RECORDS.write_text("".join(json.dumps(record) + "\n" for record in records))
    done = {record["model"] for record in records}
    machine = {
        "processor": platform.processor() or platform.machine(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
    }
    for model in models:
        if model in done:
            continue
        record = outcome(model) | {"hardware": machine}
        with RECORDS.open("a") as file:
            file.write(json.dumps(record) + "\n")
        print(f"{model}: {record['status']} {record.get('reason', '')}", flush=True)


def retime(only: list[str] | None) -> None:
    """Each record's inspect (or those of ``only``), timed again, one at a time, and checked
    to find what the record says it found (a record it disagrees with keeps its time and is
    named: run the model again without ``--retime``)."""
    records = read_records()
    differing = []
    for record in records:
        if only and record["model"] not in only:
            continue
        code, out, _, seconds = netadjust(
            "inspect", "--model", record["model"], "--image-size", str(record["side"]), "--json"
        )
        found = json.loads(out) if code == 0 else {}
        now = (
            {"widths": len(found["widths"]), "held": len(found.get("held", {}))}
            | {key: found[key] for key in ("macs", "params")}
            if found
            else {}
        )
        recorded = (  # records from before widths were held have no "held": none were
            {"widths": record["widths"], "held": record.get("held", 0)}
            | {key: record[key] for key in ("macs", "params")}
            if "widths" in record
            else {}
        )
        if now != recorded:
            differing.append(record["model"])
            print(f"{record['model']}: inspect now finds {now or f'nothing (exit {code})'}", flush=True)
            continue
        record["inspect_seconds"], record["inspect_retimed"] = seconds, True
        print(f"{record['model']}: {seconds:.1f} s (exit {code})", flush=True)
        RECORDS.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"retimed; differing from their records: {differing or 'none'}")


if __name__ == "__main__":
    main()
