"""Does the search pay off? Search, then train original / uniform / searched from scratch.

For each named setting: ``netadjust search`` into ``bench/results/runs/NAME`` (continued with
``--resume`` when a run is there), then ``netadjust compare`` over the setting's seeds (kept
results are reused, so an interrupted run picks up where it stopped). Every finished row
goes to ``bench/results/quality.json`` and ``bench/results/quality.md``: per network the
test top-1 mean ± sample std over seeds; searched − original and searched − uniform as
paired differences (same seed) with their standard errors; MACs and parameters; the
training rate of each network in the comparison; the search's wall time.

    .venv/bin/python bench/quality.py --list
    OMP_NUM_THREADS=1 .venv/bin/python bench/quality.py NAME [NAME ...] [--data-dir DIR]

A finished setting named again is only summarised anew (its runs and trained networks are
kept), which also rebuilds its row of quality.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from netadjust.compare import seed_range, width_ratio_range
from netadjust.outcome import reversals
from netadjust.rundir import read_history
from search_seeds import training_seconds

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "runs"

# ResNet-20 x0.5 on 28x28 inputs with stage widths 9/20/12 costs 7.78M MACs against the
# original 8/16/32's 7.73M: stage 3 starved, for the sanity check of the mechanism. That
# start trained within noise of the original (README), so 9/21/4 (7.78M) starves it harder
POOR_STAGES = (9, 20, 12)
STARVED_STAGES = (9, 21, 4)

# all 54,000 training images of the 90% split (the quick preset's limit is 20,000); six
# iterations of 4 epochs, k = 3 throughout, FUR on 6,000 images with T = 4; on the quick
# preset's other settings (the default before the standard preset; it differs only in --inherit)
SEARCH = [
    "--preset", "quick", "--dataset", "fashion-mnist", "--width-mult", "0.5", "--train-limit", "54000",
    "--iterations", "6", "--epochs", "4", "--k", "3", "--k-decay", "0", "--adjust-rate", "0.15",
    "--repeats", "4", "--val-limit", "6000",
]  # fmt: skip


def replaced(arguments: list[str], changes: dict[str, str]) -> list[str]:
    """``arguments`` with the value after each flag of ``changes`` changed."""
    arguments = list(arguments)
    for flag, value in changes.items():
        arguments[arguments.index(flag) + 1] = value
    return arguments


def without(arguments: list[str], flag: str) -> list[str]:
    """``arguments`` without ``flag`` and its value."""
    index = arguments.index(flag)
    return arguments[:index] + arguments[index + 2 :]


# the ResNet-18 rows' search (a = 0.5) for a zoo network, which takes no --width-mult
ZOO_SEARCH = without(replaced(SEARCH, {"--adjust-rate": "0.5"}), "--width-mult")
# their comparisons train in fp32: bf16 backward of a strided or tiny depthwise convolution
# is 5-40x slower than fp32 on this CPU (docs/performance.md)
ZOO_COMPARE = ["--epochs", "8", "--precision", "fp32"]
MOBILENET_V2_HALF = ["--model", "torchvision:mobilenet_v2", "--model-args", '{"width_mult": 0.5}']
COMPARE = ["--epochs", "5"]  # five epochs per training: what fits a session on 2 cores
# the default's step until 2026-12-07 (the reference's; --step lesser since): the rows of the
# default as it was name it, so that their commands still reproduce them
STEP_THEN = ["--step", "initial"]

SETTINGS: dict[str, dict] = {
    # the mechanism: from a starved allocation, does the search move width to stage 3?
    "resnet20-poor-start": {"search": ["--space", "resnet20", *SEARCH], "initial": POOR_STAGES},
    "resnet20-starved": {"search": ["--space", "resnet20", *SEARCH], "initial": STARVED_STAGES},
    "resnet20-x0.5": {"search": ["--space", "resnet20", *SEARCH]},
    "plain20-x0.5": {"search": ["--space", "plain20", *SEARCH]},
    # the starved start again with a = 0.5: a 4-channel width moves 2 channels per iteration,
    # not 1 (the reference's step is a share of the start's width); same start, so the
    # starved run's trained originals are reused
    "resnet20-starved-a0.5": {
        "search": ["--space", "resnet20", *replaced(SEARCH, {"--adjust-rate": "0.5"})],
        "initial": STARVED_STAGES,
        "originals_from": "resnet20-starved",
    },
    # a = 0.5 repaired the starved start (+0.66 ± 0.26): does it find a gain from the original?
    "resnet20-x0.5-a0.5": {
        "search": ["--space", "resnet20", *replaced(SEARCH, {"--adjust-rate": "0.5"})],
        "originals_from": "resnet20-x0.5",
    },
    # the same search, but its final widths chosen by validation: those of the iteration
    # whose network scored best on the held-out images, not the last adjustment's
    "resnet20-x0.5-a0.5-best-val": {
        "copied_from": "resnet20-x0.5-a0.5",
        "best_validation": True,
        "originals_from": "resnet20-x0.5",
    },
    # a quarter width (4/8/16, 1.9M MACs): where capacity is scarcer, does allocation matter more?
    "resnet20-x0.25-a0.5": {
        "search": [
            "--space",
            "resnet20",
            *replaced(SEARCH, {"--width-mult": "0.25", "--adjust-rate": "0.5"}),
        ],
    },
    # Plain-20 with a = 0.5, as the ResNet-20 rows
    "plain20-x0.5-a0.5": {
        "search": ["--space", "plain20", *replaced(SEARCH, {"--adjust-rate": "0.5"})],
        "originals_from": "plain20-x0.5",
    },
    # the same search's networks trained twice as long (10 epochs against the search's 4 per
    # iteration and the other rows' 5): does allocation matter more when training is longer?
    "resnet20-x0.5-a0.5-10ep": {
        "copied_from": "resnet20-x0.5-a0.5",
        "compare": ["--epochs", "10"],
    },
    # a = 0.5 from the original swings (15 of 30 moves undone by the next iteration, 5 by
    # chance: bench/oscillation.py); the reference settles with k's decay: k 3, 2, 2, 2, 1, 0
    # (this search still swung: 5 of 20 undone, 1.8 by chance)
    "resnet20-x0.5-a0.5-kdecay": {
        "search": ["--space", "resnet20", *replaced(SEARCH, {"--adjust-rate": "0.5", "--k-decay": "0.5"})],
        "originals_from": "resnet20-x0.5",
    },
    # the overshoot warning's own advice: a smaller step over more iterations from the
    # original (a = 0.25, 8 iterations: a cumulative 2.0 against a = 0.5's 3.0 and 0.15's 0.9)
    "resnet20-x0.5-a0.25-it8": {
        "search": ["--space", "resnet20", *replaced(SEARCH, {"--adjust-rate": "0.25", "--iterations": "8"})],
        "originals_from": "resnet20-x0.5",
    },
    # its best iteration on validation (6: 90.32% against the original widths' 89.77%)
    "resnet20-x0.5-a0.25-it8-best-val": {
        "copied_from": "resnet20-x0.5-a0.25-it8",
        "best_validation": True,
        "originals_from": "resnet20-x0.5",
    },
    # the a = 0.5 search with "local" shortcuts (sliced, not padded to the widest output so
    # far); the original widths are equal within a stage, so its trained originals are reused
    "resnet20-x0.5-a0.5-local": {
        "search": ["--space", "resnet20", "--padding", "local", *replaced(SEARCH, {"--adjust-rate": "0.5"})],
        "originals_from": "resnet20-x0.5",
    },
    # the depthwise family, at a cost this machine can pay: MobileNetV2-small x0.25 (6.7M
    # MACs, about the half-width ResNet-20's 7.7M) trains at ~500 images/s on 2 threads, a
    # third of ResNet-20's, so 4 iterations of 2 epochs and a 3-epoch comparison
    "mobilenetv2-small-x0.25": {
        "search": [
            "--space",
            "mobilenetv2-small",
            *replaced(
                SEARCH, {"--width-mult": "0.25", "--iterations": "4", "--epochs": "2", "--adjust-rate": "0.5"}
            ),
        ],
        "compare": ["--epochs", "3"],
    },
    # an ImageNet network on small images, as users train one: ResNet-18 in its ImageNet form
    # (7x7 stem, max-pool) at x0.25 on 28x28 Fashion-MNIST (2.18M MACs: its last stage sees a
    # 1x1 map), searched with the quick preset as it ships; ~2,200 images/s on one thread, so
    # five seeds of 8-epoch trainings on all 60,000 images fit a session
    "resnet18-x0.25-quick": {
        "search": ["--preset", "quick", "--space", "resnet18", "--width-mult", "0.25"],
        "compare": ["--epochs", "8"],
    },
    # the same under the parameter budget (what an edge user counts); same original network
    # and recipe, so the MACs row's trained originals are reused
    "resnet18-x0.25-quick-params": {
        "search": ["--preset", "quick", "--space", "resnet18", "--width-mult", "0.25", "--budget", "params"],
        "compare": ["--epochs", "8"],
        "originals_from": "resnet18-x0.25-quick",
    },
    # the quick preset moved little (3 iterations, a = 0.15): the fmnist rows' search
    # (6 iterations of 4 epochs on all 54,000 images, k = 3, a = 0.5) on the same network
    "resnet18-x0.25-a0.5": {
        "search": [
            "--space",
            "resnet18",
            *replaced(SEARCH, {"--width-mult": "0.25", "--adjust-rate": "0.5"}),
        ],
        "compare": ["--epochs", "8"],
        "originals_from": "resnet18-x0.25-quick",
    },
    # that search under the parameter budget: the quick preset's params row moved width into
    # stages 1-3 (+33% MACs at equal parameters, +0.16 +- 0.08); a larger step moves more
    "resnet18-x0.25-a0.5-params": {
        "search": [
            "--space",
            "resnet18",
            "--budget",
            "params",
            *replaced(SEARCH, {"--width-mult": "0.25", "--adjust-rate": "0.5"}),
        ],
        "compare": ["--epochs", "8"],
        "originals_from": "resnet18-x0.25-quick",
    },
    # the same search with the step a share of each width's current size (--step current)
    "resnet18-x0.25-a0.5-step-current": {
        "search": [
            "--space",
            "resnet18",
            "--step",
            "current",
            *replaced(SEARCH, {"--width-mult": "0.25", "--adjust-rate": "0.5"}),
        ],
        "compare": ["--epochs", "8"],
        "originals_from": "resnet18-x0.25-quick",
    },
    # a network as a user writes one (bench/models/small_vgg.py: VGG-style stages of 16, 32
    # and 64 channels, 7.3M MACs), searched through --model with the quick preset; run from
    # the repository's root, where the path names the file
    "small-vgg-quick": {
        "search": ["--preset", "quick", "--model", "bench/models/small_vgg.py:net"],
        "compare": ["--epochs", "5"],  # it trains at about a third of ResNet-18 x0.25's rate
    },
    # MobileNetV2 in its ImageNet form at x0.5 (1.6M MACs at 28x28: its last stages run on
    # 1x1 maps), as the ResNet-18 rows
    "mobilenetv2-x0.5-quick": {
        "search": ["--preset", "quick", "--space", "mobilenetv2", "--width-mult", "0.5"],
        "compare": ["--epochs", "8"],
    },
    # networks as users hold them (issue 46): torchvision's MobileNetV3-Small and MobileNetV2
    # at half width, by name, at Fashion-MNIST's own 28x28 (their stem convolution replaced
    # for its one channel, random weights); the first with the headline rows' search, the
    # second with the default search as a user runs it (no flag but the model's): the
    # default measured on a row it was not chosen on
    "tv-mobilenet-v3-small-a0.5": {
        "search": ["--model", "torchvision:mobilenet_v3_small", *ZOO_SEARCH],
        "compare": ZOO_COMPARE,
    },
    # the default as it was then, at lr 0.1 (the standard preset's lr since 2026-12-07: 0.05)
    "tv-mobilenet-v2-x0.5-default": {
        "search": [*MOBILENET_V2_HALF, "--lr", "0.1", *STEP_THEN],
        "compare": ZOO_COMPARE,
    },
    # the default's lr 0.1 trained that network's original to 73.95% and 82.50% in two 8-epoch
    # trainings, 0.05 to 87.65% (bench/lr_stability.py): the default search at lr 0.05
    "tv-mobilenet-v2-x0.5-default-lr0.05": {
        "search": [*MOBILENET_V2_HALF, "--lr", "0.05", *STEP_THEN],
        "compare": ZOO_COMPARE,
    },
    # the default (lr 0.05 since 2026-12-07) on a network it was not chosen on: MobileNetV3-Small,
    # searched before only with the fmnist-like flags above (from scratch, T = 4, lr 0.1)
    "tv-mobilenet-v3-small-default": {
        "search": ["--model", "torchvision:mobilenet_v3_small", "--lr", "0.05", *STEP_THEN],
        "compare": ZOO_COMPARE,
    },
    # should the default lr be 0.05? The default search as a user types it on the row where the
    # default's gain was measured (the equal-parameter ResNet-18 row, +0.41 +- 0.07 with --inherit
    # 0.25 --repeats 2 at lr 0.1; bench/inherit.py), at lr 0.05 for the search and the trainings
    "resnet18-x0.25-params-default-lr0.05": {
        "search": [
            *["--space", "resnet18", "--width-mult", "0.25", "--budget", "params", "--lr", "0.05"],
            *STEP_THEN,
        ],
        "compare": ["--epochs", "8"],
    },
}
# the headline rows searched again with other search seeds (the recorded rows are seed 0): the
# gain a user can expect from one search is the mean over searches, not one search's. The
# first reseeded row retrains the originals (their weights are not kept in the repository),
# the others reuse those
_FIRST_RESEEDED = "resnet18-x0.25-a0.5-step-current-search1"
for _row in ("resnet18-x0.25-a0.5-step-current", "resnet18-x0.25-a0.5-params"):
    for _seed in (1, 2):
        _row_first = f"{_row}-search{_seed}" == _FIRST_RESEEDED
        SETTINGS[f"{_row}-search{_seed}"] = {
            "search": SETTINGS[_row]["search"],
            "compare": SETTINGS[_row]["compare"],
            "search_seed": _seed,
            "originals_from": "resnet18-x0.25-quick" if _row_first else _FIRST_RESEEDED,
        }
# their originals trained once; the MobileNetV2 row reseeded is the one at the lr that trains it
for _row in (
    "tv-mobilenet-v3-small-a0.5",
    "tv-mobilenet-v2-x0.5-default-lr0.05",
    "resnet18-x0.25-params-default-lr0.05",
    "tv-mobilenet-v3-small-default",
):
    for _seed in (1, 2):
        SETTINGS[f"{_row}-search{_seed}"] = dict(SETTINGS[_row], search_seed=_seed, originals_from=_row)
# the default with --step lesser (a share of the lesser of the initial and current width: no
# width cut to a sliver of itself and grown straight back, the undone moves of the default's
# searches in bench/undone_moves.py) on the default's two rows, three searches each, and on a
# row it was not chosen on, MobileNetV2 x0.5. The first search takes the row's original
# trainings where their weights are kept (else trains them again), the others the first's
for _row in (
    "resnet18-x0.25-params-default-lr0.05",
    "tv-mobilenet-v3-small-default",
    "tv-mobilenet-v2-x0.5-default-lr0.05",
):
    for _seed in (0, 1, 2):
        SETTINGS[f"{_row}-lesser" + (f"-search{_seed}" if _seed else "")] = dict(
            SETTINGS[_row],
            search=replaced(SETTINGS[_row]["search"], {"--step": "lesser"}),
            search_seed=_seed,
            originals_from=f"{_row}-lesser" if _seed else _row,
        )
# MobileNetV2's search 2 again under the floor of cuts (netadjust.cuts), which came after it: that
# search cut the last 1x1 convolution to 2 channels and its network did not train
SETTINGS["tv-mobilenet-v2-x0.5-default-lr0.05-search2-cut-floor"] = dict(
    SETTINGS["tv-mobilenet-v2-x0.5-default-lr0.05"],
    search_seed=2,
    originals_from="tv-mobilenet-v2-x0.5-default-lr0.05",
)
for _setting in SETTINGS.values():
    if "copied_from" in _setting:  # a copy of another setting's search: its flags
        _setting["search"] = SETTINGS[_setting["copied_from"]]["search"]
    _setting.setdefault("compare", COMPARE)
    _setting.setdefault("seeds", 5)


def netadjust(*arguments: str) -> None:
    command = [sys.executable, "-m", "netadjust", *arguments]
    print("$ netadjust " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True)


def initial_widths_file(name: str, stages: tuple[int, int, int]) -> Path:
    """A widths file giving every width of stage s the width ``stages[s - 1]``."""
    from netadjust.spaces import ModelSpec, base_widths

    path = RUNS / f"{name}.widths.json"
    widths = {width: stages[int(width[5]) - 1] for width in base_widths(ModelSpec("resnet20"))}
    path.write_text(json.dumps(widths, indent=1) + "\n")
    return path


def reuse_originals(source: Path, run: Path) -> None:
    """Copy the original network's trainings of a run with the same start into ``run``;
    ``compare`` reuses a kept training only when widths, seed, recipe and data agree."""
    folder = run / "compare"
    folder.mkdir(exist_ok=True)
    for record in sorted((source / "compare").glob("original-seed*.json")):
        weights = record.with_suffix(".safetensors")
        if not weights.exists():  # the repository keeps no weights: without them, trained anew
            continue
        for kept in (record, weights):
            if not (folder / kept.name).exists():
                shutil.copyfile(kept, folder / kept.name)


def copy_search(source: Path, out: Path, best_validation: bool = False) -> None:
    """Make ``out`` a copy of the search in ``source``, to compare its networks another way;
    with ``best_validation`` its final widths are those of the iteration that scored best on
    the validation images (the search trained and measured each iteration's network): does
    choosing by validation beat the last adjustment?"""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "history.jsonl"):
        shutil.copyfile(source / name, out / name)
    final = json.loads((source / "final.json").read_text())
    if best_validation:
        best = best_on_validation(source)
        final |= {key: best[key] for key in ("widths", "macs", "params")}
    (out / "final.json").write_text(json.dumps(final, indent=1) + "\n")


def best_on_validation(run: Path) -> dict:
    """The record of the iteration of ``run`` whose network scored best on validation."""
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return max(history, key=lambda record: record["val"]["top1"])


def run_setting(name: str, data_dir: str | None) -> dict:
    setting = SETTINGS[name]
    out = RUNS / name
    data = ["--data-dir", data_dir] if data_dir else []
    started = time.time()
    if "copied_from" in setting:
        copy_search(RUNS / setting["copied_from"], out, setting.get("best_validation", False))
    elif not (out / "final.json").exists():
        if (out / "config.json").exists():
            netadjust("search", "--resume", str(out))
        else:
            widths = (
                ["--widths", str(initial_widths_file(name, setting["initial"]))]
                if "initial" in setting
                else []
            )
            seed = str(setting.get("search_seed", 0))
            netadjust("search", *setting["search"], *widths, *data, "--out", str(out), "--seed", seed)
    if "originals_from" in setting:
        reuse_originals(RUNS / setting["originals_from"], out)
    netadjust("compare", str(out), "--seeds", str(setting["seeds"]), *setting["compare"], *data)
    return summarise(name, setting, time.time() - started)


def search_command(name: str, setting: dict) -> str:
    """The command that reproduces a row's search with today's defaults."""
    return (
        "netadjust search "
        + shlex.join(setting["search"])
        + (f" --widths {name}.widths.json" if "initial" in setting else "")
        + f" --out {setting.get('copied_from', name)} --seed {setting.get('search_seed', 0)}"
    )


def restate_commands(names: list[str]) -> None:
    """Rewrite the kept rows' search commands from ``SETTINGS``: where a default changed after
    a row ran, its settings now name the value it ran with, and its command must too."""
    rows = json.loads((RESULTS / "quality.json").read_text())
    restated = {name: rows[name] | {"search_command": search_command(name, SETTINGS[name])} for name in names}
    write_results(restated)


KEPT = ("top1_mean", "top1_std", "top1", "macs", "params", "widths")  # of each network in compare.json


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of the per-seed differences a - b and its standard error (in points)."""
    differences = [100 * (x - y) for x, y in zip(a, b, strict=True)]
    se = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None
    return {"mean": statistics.fmean(differences), "se": se, "per_seed": differences}


def images_per_second(run: Path, network: str, seeds: list[int]) -> float:
    """Training images per second of ``network`` in the comparison (whole fit, all seeds)."""
    images, seconds = 0, 0.0
    for seed in seeds:
        result = json.loads((run / "compare" / f"{network}-seed{seed}.json").read_text())
        images += result["data_sizes"]["train"] * len(result["train"])
        seconds += result["seconds"]
    return images / seconds


def summarise(name: str, setting: dict, wall: float) -> dict:
    run = RUNS / name
    comparison = json.loads((run / "compare.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    seeds = comparison["seeds"]
    uniform_source = comparison["uniform"].get("same_as", "uniform")
    trained = {"original": "original", "uniform": uniform_source, "searched": "searched"}
    row = {
        "name": name,
        "search_command": search_command(name, setting),
        "search_seed": setting.get("search_seed", 0),
        "compare_command": f"netadjust compare {run.name} --seeds {len(seeds)} "
        + " ".join(setting["compare"]),
        "seeds": seeds,
        "networks": {
            network: {key: comparison[network][key] for key in KEPT}
            | {"images_per_second": images_per_second(run, trained[network], seeds)}
            for network in ("original", "uniform", "searched")
        },
        "uniform_is_original": uniform_source == "original",
        **(
            {
                "selected_from": setting["copied_from"],
                "selected_iteration": best_on_validation(run)["iteration"],
            }
            if setting.get("best_validation")
            else {"copied_from": setting["copied_from"]}
            if "copied_from" in setting
            else {}
        ),
        "searched_minus_original": paired(comparison["searched"]["top1"], comparison["original"]["top1"]),
        "searched_minus_uniform": paired(comparison["searched"]["top1"], comparison["uniform"]["top1"]),
        "search_seconds": sum(sum(record["seconds"].values()) for record in history),
        "search_val_top1": [record["val"]["top1"] for record in history],
        "fur_split_half_spearman": [record["fur_stability"]["spearman"] for record in history],
        "hardware": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())),
            "torch": torch.__version__,
            "device": comparison["device"],
        },
        "wall_seconds_this_call": wall,
    }
    return row


def write_results(rows: dict[str, dict]) -> dict[str, dict]:
    """Merge ``rows`` into quality.json as it is now (another batch may have written it
    meanwhile; under a lock, as two batches may finish at once) and rewrite quality.md;
    return all rows."""
    path = RESULTS / "quality.json"
    with open(RESULTS / ".quality.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {**(json.loads(path.read_text()) if path.exists() else {}), **rows}
        path.write_text(json.dumps(merged, indent=1) + "\n")
        (RESULTS / "quality.md").write_text(table(merged) + "\n")
    return merged


def pm(network: dict) -> str:
    """A network's test top-1 over seeds, mean ± sample std, in per cent."""
    return f"{100 * network['top1_mean']:.2f} ± {100 * network['top1_std']:.2f}"


def difference(values: dict) -> str:
    """A paired difference in points, ± its standard error where there is one."""
    return (
        f"{values['mean']:+.2f} ± {values['se']:.2f}"
        if values["se"] is not None
        else f"{values['mean']:+.2f}"
    )


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| setting | seeds | original top-1 (%) | uniform | searched | searched − original (SE) "
        "| searched − uniform (SE) | MACs orig → searched | params orig → searched "
        "| train img/s searched / original | search time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        original, uniform, searched = (row["networks"][n] for n in ("original", "uniform", "searched"))
        lines.append(
            f"| {row['name']} | {len(row['seeds'])} | {pm(original)} | "
            f"{pm(uniform)}{' (= original)' if row['uniform_is_original'] else ''} | {pm(searched)} | "
            f"{difference(row['searched_minus_original'])} | {difference(row['searched_minus_uniform'])} | "
            f"{original['macs'] / 1e6:.2f}M → {searched['macs'] / 1e6:.2f}M | "
            f"{original['params'] / 1e3:.0f}k → {searched['params'] / 1e3:.0f}k | "
            f"{searched['images_per_second']:.0f} / {original['images_per_second']:.0f} | "
            f"{row['search_seconds'] / 60:.0f} min |"
        )
    return "\n".join(lines)


# the README's everyday table: its rows, in its order, and their labels (bold: the lead row)
README_ROWS = {
    "resnet18-x0.25-a0.5-params": "**ResNet-18 ×0.25, `--preset fmnist`**",
    "resnet18-x0.25-quick-params": "ResNet-18 ×0.25, `--preset quick`",
    "resnet18-x0.25-a0.5-step-current": "ResNet-18 ×0.25, `--preset fmnist --step current`",
    "resnet18-x0.25-a0.5": "ResNet-18 ×0.25, `--preset fmnist` (6 iterations, a = 0.5)",
    "resnet18-x0.25-quick": "ResNet-18 ×0.25, `--preset quick` (3 iterations, a = 0.15)",
    "small-vgg-quick": (
        "your own: a VGG-style net (`bench/models/small_vgg.py`), quick preset, 5-epoch trainings"
    ),
}


def trainings_seconds(name: str, row: dict) -> float:
    """The seconds of the row's trainings over its seeds: the original's, the uniform
    network's (where it is not the original) and the searched network's."""
    networks = ["original", "searched"] + ([] if row["uniform_is_original"] else ["uniform"])
    return sum(
        json.loads((RUNS / name / "compare" / f"{network}-seed{seed}.json").read_text())["seconds"]
        for network in networks
        for seed in row["seeds"]
    )


def readme_table(rows: dict) -> str:
    """The README's everyday table, from the rows of ``README_ROWS``."""
    lines = [
        "| setting | budget | original | uniform | searched | searched − original | searched − uniform "
        "| MACs | params | reproduce (`bench/quality.py …`) | search (in final trainings) + trainings |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, label in README_ROWS.items():
        row = rows[name]
        original, uniform, searched = (row["networks"][n] for n in ("original", "uniform", "searched"))
        budget = json.loads((RUNS / name / "config.json").read_text())["budget"]
        lines.append(
            f"| {label} | {'MACs' if budget == 'macs' else budget} | {pm(original)} | {pm(uniform)}"
            f"{' (= original)' if row['uniform_is_original'] else ''} | {pm(searched)} | "
            f"{difference(row['searched_minus_original'])} | {difference(row['searched_minus_uniform'])} | "
            f"{original['macs'] / 1e6:.2f}M → {searched['macs'] / 1e6:.2f}M | "
            f"{original['params'] / 1e3:.0f}k → {searched['params'] / 1e3:.0f}k | `{name}` | "
            f"{row['search_seconds'] / 60:.0f} min ({row['search_seconds'] / training_seconds(name):.1f}) + "
            f"{trainings_seconds(name, row) / 60:.0f} min |"
        )
    return "\n".join(lines)


def readme_row_figures(rows: dict) -> list[str]:
    """The phrases the README's text around its everyday table quotes from the rows."""

    def gain(name: str) -> dict:
        return rows[name]["searched_minus_original"]

    def ratio(name: str, key: str) -> float:
        networks = rows[name]["networks"]
        return networks["searched"][key] / networks["original"][key]

    def side_by_side(name: str) -> float:  # compare's training rates, timed side by side
        networks = json.loads((RUNS / name / "compare.json").read_text())
        return networks["searched"]["train_images_per_s"] / networks["original"]["train_images_per_s"]

    def with_ratio(difference: dict) -> str:
        mean, se = difference["mean"], difference["se"]
        return f"{mean:+.2f} ± {se:.2f} points ({mean / se:.1f} SE"

    lead = "resnet18-x0.25-a0.5-params"
    macs_rows = ("resnet18-x0.25-quick", "resnet18-x0.25-a0.5", "resnet18-x0.25-a0.5-step-current")
    vgg = "small-vgg-quick"
    lead_gain = gain(lead)
    return [
        f"{lead_gain['mean']:+.2f} ± {lead_gain['se']:.2f}, {lead_gain['mean'] / lead_gain['se']:.1f} SE, "
        f"at {ratio(lead, 'macs'):.1f}× the MACs and {side_by_side(lead):.2f} of the training rate",
        "("
        + ", ".join(f"{100 * (ratio(name, 'params') - 1):.0f}%" for name in macs_rows).replace("-", "−")
        + ";",
        f"({gain(vgg)['mean']:+.2f} ± {gain(vgg)['se']:.2f}), its searched widths training at "
        f"{side_by_side(vgg):.2f} of the original's rate".replace("-", "−"),
        *(with_ratio(gain(name)) for name in ("resnet20-starved-a0.5", "resnet20-starved")),
    ]


# the rows that start from a hand-designed CIFAR allocation (ResNet-20, Plain-20 and
# MobileNetV2-small at their own widths), searches and copies of a search compared otherwise
HAND_DESIGNED = [
    "resnet20-x0.5", "plain20-x0.5", "resnet20-x0.5-a0.5", "resnet20-x0.25-a0.5", "plain20-x0.5-a0.5",
    "mobilenetv2-small-x0.25", "resnet20-x0.5-a0.5-kdecay", "resnet20-x0.5-a0.25-it8",
    "resnet20-x0.5-a0.5-local", "resnet20-x0.5-a0.5-best-val", "resnet20-x0.5-a0.5-10ep",
    "resnet20-x0.5-a0.25-it8-best-val",
]  # fmt: skip


# docs/results.md's table of the hand-designed starts: its rows, in its order, and their labels
CIFAR_ROWS = {
    "resnet20-x0.5": "the original, 8/16/32",
    "resnet20-x0.5-a0.5": "the original, 8/16/32",
    "resnet20-x0.5-a0.5-best-val": "the original, best iteration on validation",
    "resnet20-x0.5-a0.5-10ep": "the original, the same search's networks trained 10 epochs",
    "resnet20-x0.5-a0.5-kdecay": "the original, k's decay (k = 3, 2, 2, 2, 1, 0)",
    "resnet20-x0.5-a0.25-it8": "the original, 8 iterations",
    "resnet20-x0.5-a0.25-it8-best-val": "the original, a = 0.25's best iteration on validation",
    "resnet20-x0.5-a0.5-local": "the original, `--padding local`",
    "resnet20-x0.25-a0.5": "quarter width, the original 4/8/16",
    "resnet20-poor-start": "stage 3 poor, 9/20/12",
    "resnet20-starved": "stage 3 starved, 9/21/4",
    "resnet20-starved-a0.5": "stage 3 starved, 9/21/4",
    "plain20-x0.5": "Plain-20 (no shortcuts), 8/16/32",
    "plain20-x0.5-a0.5": "Plain-20 (no shortcuts), 8/16/32",
    "mobilenetv2-small-x0.25": (
        "MobileNetV2-small ×0.25 (depthwise), the original; 4 iterations of 2 epochs, 3-epoch trainings"
    ),
}


def cifar_table(rows: dict) -> str:
    """docs/results.md's table of the hand-designed starts (a resolved difference, 2 SE or
    more, in bold; minus signs typeset), from the rows of ``CIFAR_ROWS``."""
    lines = [
        "| start (stage widths) | a | MACs | start | searched | searched − start "
        "| reproduce (`.venv/bin/python bench/quality.py …`) | search + trainings |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, label in CIFAR_ROWS.items():
        row = rows[name]
        original, searched = row["networks"]["original"], row["networks"]["searched"]
        rate = json.loads((RUNS / name / "config.json").read_text())["rule"]["rate"]
        gain = row["searched_minus_original"]
        cell = difference(gain).replace("-", "−")
        if abs(gain["mean"]) >= 2 * gain["se"]:
            cell = f"**{cell}**"
        lines.append(
            f"| {label} | {rate:g} | {original['macs'] / 1e6:.2f}M | "
            f"{pm(original)} | {pm(searched)} | {cell} | "
            f"`{name}` | "
            f"{row['search_seconds'] / 60:.0f} + {trainings_seconds(name, row) / 60:.0f} min |"
        )
    return "\n".join(lines)


def cifar_uniform_figures(rows: dict) -> str:
    """What docs/results.md says of the one hand-designed row whose uniform network is not
    its start (MobileNetV2-small's)."""
    row = rows["mobilenetv2-small-x0.25"]
    uniform, gain = row["networks"]["uniform"], row["searched_minus_uniform"]
    return (
        f"(the original scaled to {uniform['macs'] / 1e6:.2f}M MACs) scored "
        f"{pm(uniform)}, "
        f"searched − uniform {gain['mean']:+.2f} ± {gain['se']:.2f}"
    ).replace("-", "−")


def hand_designed_figures(rows: dict) -> str:
    """What the README says of the hand-designed starts, from their rows: how many settings
    and searches, the range of searched − original, and those resolved (2 SE or more)."""
    gains = [rows[name]["searched_minus_original"] for name in HAND_DESIGNED]
    copies = sum("copied_from" in rows[name] or "selected_from" in rows[name] for name in HAND_DESIGNED)
    resolved = [gain["mean"] for gain in gains if abs(gain["mean"]) >= 2 * gain["se"]]
    means = [gain["mean"] for gain in gains]
    extent = f"{min(means):+.2f} … {max(means):+.2f}".replace("-", "−")
    return (
        f"{len(gains)} settings ({len(gains) - copies} searches, {copies} of them compared again otherwise): "
        f"{extent} points, {sum(m > 0 for m in resolved)} resolved gains, "
        f"{sum(m < 0 for m in resolved)} resolved losses"
    )


def search_course(name: str) -> str:
    """A search's course and cost from its run directory (compared or not): iterations, time
    (training's and FUR's), validation top-1 first → last, FUR's split-half Spearman, the
    moves the next iteration undid (``bench/oscillation.py``), and how far its widths moved."""
    run = RUNS / name
    final, history = json.loads((run / "final.json").read_text()), read_history(run)
    seconds = sum(sum(record.seconds.values()) for record in history)
    val = [record.val["top1"] for record in history]
    spearman = [record.fur_stability["spearman"] for record in history]
    low, high = width_ratio_range(final["widths"], final["original_widths"])
    train, fur = ([record.seconds[part] for record in history] for part in ("train", "fur"))
    undone, moves, chance = reversals(history)
    return (
        f"{len(history)} iterations in {seconds / 60:.0f} min ({seconds:,.0f} s: training "
        f"{train[0]:.0f} s, then {min(train[1:]):.0f}–{max(train[1:]):.0f} s per iteration; FUR "
        f"{min(fur):.0f}–{max(fur):.0f} s per iteration), validation top-1 "
        f"{100 * val[0]:.2f} → {100 * val[-1]:.2f}, FUR split-half Spearman {min(spearman):.2f}–"
        f"{max(spearman):.2f}, moves undone by the next iteration {undone} of {moves} ({chance:.1f} by "
        f"chance); its widths {low:.2f}–{high:.2f} of the original's, MACs "
        f"{final['original_macs']:,} → {final['macs']:,}, parameters {final['original_params']:,} → "
        f"{final['params']:,}"
    )


def row_details(rows: dict, name: str) -> str:
    """One row in a paragraph, for docs/results.md: its commands, accuracies, paired
    differences per seed, the search's course and cost, and how far its widths moved."""
    row = rows[name]
    networks = row["networks"]

    def top1(network: str) -> str:
        return pm(networks[network])

    def paired(key: str) -> str:
        gain = row[key]
        seeds = ", ".join(f"{value:+.2f}" for value in gain["per_seed"])
        return f"{gain['mean']:+.2f} ± {gain['se']:.2f} ({seeds})"

    return (
        f"**`{name}`**: `{row['search_command']}`, then `{row['compare_command']}`. Top-1 over "
        f"{seed_range(row['seeds'])}: original {top1('original')}, uniform {top1('uniform')}, "
        f"searched {top1('searched')}; searched − original {paired('searched_minus_original')}, "
        f"− uniform {paired('searched_minus_uniform')}. The search "
        f"({row['search_seconds'] / training_seconds(name):.1f} trainings of its final network): "
        f"{search_course(name)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="settings to run (see --list)")
    parser.add_argument("--list", action="store_true", help="print the settings and exit")
    parser.add_argument("--figures", action="store_true", help="print the figures the README quotes")
    parser.add_argument("--details", metavar="NAME", help="print a row's paragraph for docs/results.md")
    parser.add_argument("--course", metavar="NAME", help="print a search's course (compared or not)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--restate", action="store_true", help="rewrite the named rows' search commands from the settings"
    )
    args = parser.parse_args()
    if args.list:
        for name, setting in SETTINGS.items():
            search, compare = " ".join(setting["search"]), " ".join(setting["compare"])
            print(f"{name}: search {search} | compare {compare} --seeds {setting['seeds']}")
        return
    if args.course:
        print(search_course(args.course))
        return
    if args.details:
        print(row_details(json.loads((RESULTS / "quality.json").read_text()), args.details))
        return
    if args.figures:
        print(
            "hand-designed starts:", hand_designed_figures(json.loads((RESULTS / "quality.json").read_text()))
        )
        return
    unknown = [name for name in args.names if name not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; see --list")
    if args.restate:
        restate_commands(args.names)
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    rows = write_results({})
    for name in args.names:
        rows = write_results({name: run_setting(name, args.data_dir)})  # an interrupted batch keeps these
    print(table(rows))


if __name__ == "__main__":
    main()
