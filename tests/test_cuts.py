"""Layers everything passes through (cuts) are held wide enough for the classes during a
search, and a search made without that floor is named when it starved one; widths inside
residual blocks, above the floor or on large maps are not."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import in_process, write_mnist_like
from netadjust.adjust import adjust, rescale
from netadjust.config import AdjustRule, ModelSpec
from netadjust.cuts import cut_warning, raised_floors, starving_cuts
from netadjust.rundir import read_run
from netadjust.spaces import base_widths, width_grid

RUNS = Path(__file__).resolve().parent.parent / "bench" / "results" / "runs"
MOBILENET = ModelSpec("mobilenetv2", width_mult=0.5)  # 32x32: its last stage runs on a 1x1 map


def test_the_last_stages_width_at_the_floor_on_a_1x1_map_is_named():
    widths = base_widths(MOBILENET)
    assert starving_cuts(MOBILENET, {**widths, "stage7.out": 2}, min_width=2) == {"stage7.out": 2}
    assert starving_cuts(MOBILENET, {**widths, "stage7.block0.expand": 3}, min_width=3) == {
        "stage7.block0.expand": 3
    }
    assert starving_cuts(MOBILENET, {**widths, "stage7.out": 2}, min_width=1) == {}  # above the floor


def test_widths_with_a_path_around_them_or_on_large_maps_are_not_named():
    widths = base_widths(MOBILENET)
    residual = {**widths, "stage6.block1.expand": 2}  # the block adds its input back
    assert starving_cuts(MOBILENET, residual, min_width=2) == {}
    early = {**widths, "stage1.out": 2}  # a cut, but 2 channels of a 16x16 map: 512 numbers
    assert starving_cuts(MOBILENET, early, min_width=2) == {}
    resnet = ModelSpec("resnet20", width_mult=0.5)
    shortcut = {**base_widths(resnet), "stage3.block2.conv1": 2, "stage3.block2.conv2": 2}
    assert starving_cuts(resnet, shortcut, min_width=2) == {}


def test_the_warning_names_each_cut_and_the_way_out():
    line = cut_warning({"head": 1280}, {"head": 2}, {"head": 2}, 10)
    assert "head (1280 -> 2 channels, 2 numbers per image)" in line and "10 classes" in line
    assert "search again" in line


def test_cuts_on_small_maps_get_a_floor_for_the_classes_and_no_more_than_their_width():
    widths = base_widths(MOBILENET)  # 32x32 in: stages 4-5 on 2x2 maps, 6-7 on 1x1
    floors = raised_floors(MOBILENET, widths, min_width=2)
    assert floors["stage7.out"] == 10 and floors["stage6.block0.expand"] == 10  # 1 position: 10 channels
    assert floors["stage4.out"] == 3  # 4 positions: 3 channels carry 12 numbers
    assert not any(".block1." in name or ".block2." in name for name in floors)  # residual blocks
    assert all(name.startswith(("stage4", "stage5", "stage6", "stage7")) for name in floors)
    assert raised_floors(MOBILENET, widths, min_width=10) == {}  # --min-width already enough
    assert raised_floors(MOBILENET, {**widths, "stage7.out": 6}, min_width=2)["stage7.out"] == 6  # its own
    resnet = ModelSpec("resnet20", width_mult=0.5)
    assert raised_floors(resnet, base_widths(resnet), min_width=2) == {}


def test_a_width_floor_per_width_holds_in_the_step_and_the_rescale():
    widths = {"a": 40, "b": 40, "c": 40}
    fur = {"a": 3.0, "b": 2.0, "c": 1.0}
    rule = AdjustRule(k0=1, k_decay=0.0, rate=0.95, rate_decay=0.0, min_width=2)
    floor = {"a": 2, "b": 2, "c": 10}
    shrunk, _, _ = adjust(widths, fur, widths, 0, rule, floor=floor)
    assert shrunk["c"] == 10 and adjust(widths, fur, widths, 0, rule)[0]["c"] == 2
    cost = lambda w: sum(w.values())  # noqa: E731 (channels as the cost)
    rescaled = rescale({"a": 100, "b": 100, "c": 10}, cost, 60, floor)
    assert rescaled["c"] >= 10 and abs(cost(rescaled) - 60) <= 0.6


def test_a_search_holds_a_cut_at_its_floor_and_says_so(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=120, n_test=20)
    out = tmp_path / "run"
    result = in_process(
        "search", "--space", "mobilenetv2", "--width-mult", "0.25", "--dataset", "mnist", "--data-dir", data,
        "--image-size", 32, "--iterations", 1, "--epochs", 1, "--repeats", 1, "--batch-size", 40, "--k", 8,
        "--adjust-rate", 0.95, "--adjust-rate-decay", 0, "--min-width", 2, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "held wide enough for its 10 classes" in result.stdout
        and "stage7.out at least 10 (of 80)" in result.stdout
    )
    final = json.loads((out / "final.json").read_text())
    floors = raised_floors(
        ModelSpec("mobilenetv2", width_mult=0.25, in_channels=1), final["original_widths"], 2
    )
    assert all(final["widths"][name] >= floor for name, floor in floors.items())
    held = [name for name, floor in floors.items() if final["widths"][name] == floor]
    assert held  # a step of 0.95 of the width took some cut to its floor, not to 2


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_of_the_searches_run_only_the_one_whose_network_failed_to_train_is_named():
    # MobileNetV2 x0.5's default search 2 cut features.18.0 to 2 channels; search 1 cut
    # features.17's expansion to 6 channels on a 1x1 map, above the floor, and trained well
    named = {}
    for search in (
        "tv-mobilenet-v2-x0.5-default-lr0.05-search1",
        "tv-mobilenet-v2-x0.5-default-lr0.05-search2",
    ):
        run = read_run(RUNS / search)
        grid = width_grid(run.final.model, run.config.rule.round_to)
        named[search] = starving_cuts(run.final.model, run.final.widths, run.config.rule.min_width, grid)
    assert named == {
        "tv-mobilenet-v2-x0.5-default-lr0.05-search1": {},
        "tv-mobilenet-v2-x0.5-default-lr0.05-search2": {"features.18.0": 2},
    }


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_the_report_of_that_search_warns(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "history.jsonl", "final.json"):
        shutil.copyfile(RUNS / "tv-mobilenet-v2-x0.5-default-lr0.05-search2" / name, run / name)
    assert in_process("report", str(run)).returncode == 0
    report = (run / "report" / "report.md").read_text()
    assert "warning: the search cut to the floor" in report and "features.18.0 (1280 -> 2 channels" in report


def searched_top1(search: str) -> float:
    """The mean test top-1 (%) of a MobileNetV2 x0.5 lr 0.05 search's network over its seeds."""
    rows = json.loads((RUNS.parent / "quality.json").read_text())
    return 100 * rows[f"tv-mobilenet-v2-x0.5-default-lr0.05{search}"]["networks"]["searched"]["top1_mean"]


def test_the_warnings_figures_are_the_recorded_trainings():
    line = cut_warning({"a": 1}, {"a": 1}, {"a": 1}, 10)
    assert f"reached {searched_top1('-search2'):.2f}% over 5 seeds" in line
    low, high = map(int, re.search(r"networks reached (\d+)-(\d+)%", line).groups())
    others = [
        json.loads(path.read_text())["test"]["top1"]
        for run in ("tv-mobilenet-v2-x0.5-default-lr0.05", "tv-mobilenet-v2-x0.5-default-lr0.05-search1")
        for path in (RUNS / run / "compare").glob("searched-seed*.json")
    ]
    assert len(others) == 10 and all(low <= 100 * top1 < high + 1 for top1 in others)


def test_the_usage_guides_figures_are_the_recorded_trainings():
    usage = " ".join((Path(__file__).resolve().parent.parent / "docs" / "usage.md").read_text().split())
    assert f"its network trained to {searched_top1('-search2'):.2f}% over 5 seeds" in usage
    assert f"(that row's search 1), and that network trained to {searched_top1('-search1'):.2f}%" in usage


def test_the_floor_would_have_bound_only_in_the_searches_the_usage_guide_names():
    lines = (RUNS.parent / "cut_floors.txt").read_text().splitlines()[1:]
    rows = [line.split(" | ") for line in lines]
    bound = {row[0] for row in rows if "not rebuilt" not in row[1] and row[-1] != "none"}
    assert bound == {
        f"tv-mobilenet-v2-x0.5-default-lr0.05{search}" for search in ("", "-search1", "-search2")
    }
    usage = " ".join((Path(__file__).resolve().parent.parent / "docs" / "usage.md").read_text().split())
    assert "it would have bound only in the three MobileNetV2 ×0.5 searches at lr 0.05" in usage
