"""A search that starves the whole network is named: a width everything passes through, cut
to the floor, narrower than the classes; widths inside residual blocks, above the floor or
on large maps are not."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import in_process
from netadjust.config import ModelSpec
from netadjust.cuts import cut_warning, starving_cuts
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
    assert "--step current" in line and "--min-width" in line


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


def test_the_warnings_figures_are_the_recorded_trainings():
    line = cut_warning({"a": 1}, {"a": 1}, {"a": 1}, 10)
    failed = json.loads(
        (RUNS / "tv-mobilenet-v2-x0.5-default-lr0.05-search2/compare/searched-seed0.json").read_text()
    )
    assert f"reached {100 * failed['test']['top1']:.2f}%" in line
    low, high = map(int, re.search(r"networks reached (\d+)-(\d+)%", line).groups())
    others = [
        json.loads(path.read_text())["test"]["top1"]
        for run in ("tv-mobilenet-v2-x0.5-default-lr0.05", "tv-mobilenet-v2-x0.5-default-lr0.05-search1")
        for path in (RUNS / run / "compare").glob("searched-seed*.json")
    ]
    assert others and all(low <= 100 * top1 < high + 1 for top1 in others)


def test_the_usage_guides_figures_are_the_recorded_trainings():
    usage = (Path(__file__).resolve().parent.parent / "docs" / "usage.md").read_text()
    for search, quoted in (
        ("search2", "trained to {}%"),
        ("search1", "above the floor (that row's search 1) trained to {}%"),
    ):
        record = RUNS / f"tv-mobilenet-v2-x0.5-default-lr0.05-{search}/compare/searched-seed0.json"
        top1 = 100 * json.loads(record.read_text())["test"]["top1"]
        assert quoted.format(f"{top1:.2f}") in " ".join(usage.split())
