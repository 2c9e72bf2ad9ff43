"""The pruning counterparts that choose widths (``compare --baseline slimming depgraph``):
the channels their scores keep, their sparsity training, the budget they meet, and the
budgets and spaces they refuse."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import netadjust
from conftest import in_process as cli
from conftest import write_mnist_like
from netadjust.config import DataConfig, Recipe
from netadjust.cost import measure
from netadjust.counterparts import (
    METHODS,
    channel_parts,
    depgraph_penalty,
    group_norms,
    norm_scales,
    scorable_parts,
    slimming_penalty,
    slimming_scores,
    thresholded_to_budget,
    unscaled,
)
from netadjust.data import prepare_data
from netadjust.errors import UserError
from netadjust.pruned import made_from
from netadjust.rundir import read_run
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import train_network

RUNS = Path(__file__).resolve().parent.parent / "bench" / "results" / "runs"
SPEC = ModelSpec("plain20", num_classes=10, in_channels=1, image_size=28, width_mult=0.25)


def hand_set(model, widths, small: dict[str, list[int]]):
    """Every norm scale 1, except the channels ``small`` names, scaled to 0.01."""
    parts = channel_parts(model, SPEC, widths, "the test net")
    scales = norm_scales(model)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name in scales:
            parameters[name].fill_(1.0)
        for width, channels in small.items():
            for entry, dim, first, per in parts[width]:
                if entry in scales:
                    parameters[entry].movedim(dim, 0)[[first + per * c for c in channels]] = 0.01
    return parts


def test_hand_set_norm_scales_prune_exactly_those_channels():
    widths = base_widths(SPEC)
    model = build(SPEC, widths)
    small = {"stage1.block0.conv1": [0, 2], "stage3.block1.conv2": [1, 3, 5, 7, 9]}
    parts = hand_set(model, widths, small)
    scores = slimming_scores(model, parts, widths)
    channels = lambda w: sum(w.values())  # noqa: E731 (channels as the cost)
    kept, removed = thresholded_to_budget(scores, channels, channels(widths) - 7, "the test net")
    assert kept == {name: width - len(small.get(name, [])) for name, width in widths.items()}
    assert removed == pytest.approx(7 / channels(widths))
    with pytest.raises(UserError, match="even one channel per width"):
        thresholded_to_budget(scores, channels, len(widths) - 1, "the test net")
    with pytest.raises(UserError, match="nothing to prune"):
        thresholded_to_budget(scores, channels, channels(widths), "the test net")


def test_the_threshold_keeps_a_cuts_floor_where_it_would_keep_fewer_channels():
    widths = base_widths(SPEC)
    model = build(SPEC, widths)
    name = "stage3.block1.conv2"  # the floor is given here; which widths are cuts: test_cuts.py
    parts = hand_set(model, widths, {name: list(range(widths[name] - 1))})  # all but one score low
    scores = slimming_scores(model, parts, widths)
    channels = lambda w: sum(w.values())  # noqa: E731 (channels as the cost)
    budget = channels(widths) - widths[name] + 4
    assert thresholded_to_budget(scores, channels, budget, "the test net")[0][name] == 1
    kept, _ = thresholded_to_budget(scores, channels, budget, "the test net", cut_floors={name: 4})
    assert kept[name] == 4 and channels(kept) <= budget
    assert all(kept[other] == width for other, width in widths.items() if other != name)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_the_counterparts_of_the_mobilenetv3_row_hold_the_searchs_floors():
    # DepGraph, made without them, left features.12.0 and classifier.0 one channel each on
    # their 1x1 map, and its network trained to 78-82% (docs/results.md)
    run = read_run(RUNS / "tv-mobilenet-v3-small-a0.5")
    data = SimpleNamespace(info=SimpleNamespace(name="fashion-mnist"), train=range(60000), test=range(10000))
    _, _, wanted, floor = made_from(run, data, seed=0)
    assert wanted["cut_floors"]["features.12.0"] == 10 and wanted["cut_floors"]["classifier.0"] == 10
    assert {name: floor[name] for name in wanted["cut_floors"]} == wanted["cut_floors"]
    assert all(floor[name] == run.config.rule.min_width for name in floor if name not in wanted["cut_floors"])
    resnet = read_run(RUNS / "resnet18-x0.25-a0.5")  # no raised floor: its records still match
    assert "cut_floors" not in made_from(resnet, data, seed=0)[2]


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_slimming_holds_the_widths_behind_no_norm_layer_and_prunes_the_others():
    # MobileNetV3-Small's squeeze-and-excitation reductions and its classifier's hidden layer
    # have no norm layer: Network Slimming (the paper's) prunes only channels it has a scale for
    spec = ModelSpec(model="torchvision:mobilenet_v3_small", in_channels=1, image_size=28)
    widths = base_widths(spec)
    model = build(spec, widths)
    parts = channel_parts(model, spec, widths, "the test net")
    held_names = unscaled(model, parts)
    se = [name for name in widths if name.endswith(".fc1")]
    assert len(se) == 9 and sorted(held_names) == sorted([*se, "classifier.0"])
    scores = slimming_scores(model, parts, widths)
    assert set(scores) == set(widths) - set(held_names)
    channels = lambda w: sum(w.values())  # noqa: E731 (channels as the cost)
    held = {name: widths[name] for name in held_names}
    kept, removed = thresholded_to_budget(scores, channels, 0.8 * channels(widths), "the test net", held)
    assert all(kept[name] == widths[name] for name in held_names)
    assert channels(kept) <= 0.8 * channels(widths)
    scored = sum(widths[name] for name in scores)
    assert removed == pytest.approx((channels(widths) - channels(kept)) / scored)


NORMLESS_NET = """
from torch import nn

def net(in_channels=1, num_classes=10):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
"""


def test_slimming_refuses_a_network_without_any_norm_layer_in_one_line(tmp_path):
    (tmp_path / "normless.py").write_text(NORMLESS_NET)
    spec = ModelSpec("model", in_channels=1, image_size=28, model=f"{tmp_path / 'normless.py'}:net")
    widths = base_widths(spec)
    with pytest.raises(UserError, match="no width of .* passes through a norm layer.*--baseline depgraph"):
        scorable_parts(METHODS["slimming"], spec, widths)
    assert set(scorable_parts(METHODS["depgraph"], spec, widths)) == set(widths)


def test_group_norms_count_every_parameter_of_a_channel():
    widths = base_widths(SPEC)
    model = build(SPEC, widths)
    parts = channel_parts(model, SPEC, widths, "the test net")
    name = "stage2.block1.conv1"
    conv1 = model.get_submodule("stage2.block1.conv1")
    bn1 = model.get_submodule("stage2.block1.bn1")
    conv2 = model.get_submodule("stage2.block1.conv2")
    expected = (
        conv1.weight.pow(2).flatten(1).sum(1)
        + bn1.weight.pow(2)
        + bn1.bias.pow(2)
        + conv2.weight.pow(2).transpose(0, 1).flatten(1).sum(1)
    ).sqrt()
    if conv1.bias is not None:
        expected = (expected.pow(2) + conv1.bias.pow(2)).sqrt()
    assert torch.allclose(group_norms(model, parts, widths)[name], expected.detach())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_mnist_like(tmp_path_factory.mktemp("counterparts") / "data", n_train=300, n_test=100)


@pytest.mark.parametrize("method", ["slimming", "depgraph"])
def test_the_sparsity_training_lowers_the_regularised_scores(data, method):
    config = DataConfig(dataset="mnist", data_dir=str(data), train_limit=300)
    prepared = prepare_data(config, 0, torch.device("cpu"), hold_out=False)
    widths = base_widths(SPEC)
    recipe = Recipe(epochs=2, batch_size=50, lr=0.05)
    with torch.device("meta"):
        parts = channel_parts(build(SPEC, widths), SPEC, widths, "the test net")
    strength = 0.5  # strong, so that 12 steps show it
    penalty = (
        slimming_penalty(strength) if method == "slimming" else depgraph_penalty(parts, widths, strength)
    )

    def scores(model):
        found = (
            slimming_scores(model, parts, widths)
            if method == "slimming"
            else group_norms(model, parts, widths)
        )
        return torch.cat(list(found.values())).mean()

    plain, _ = train_network(SPEC, widths, prepared, recipe, seed=0, label="plain")
    sparse, _ = train_network(SPEC, widths, prepared, recipe, seed=0, label="sparse", penalty=penalty)
    assert scores(sparse) < 0.8 * scores(plain)


def tiny_run(data, out) -> str:
    netadjust.search(
        space="resnet18", dataset="mnist", data_dir=str(data), width_mult=0.25, train_limit=300,
        val_limit=100, test_limit=100, epochs=1, iterations=1, repeats=1, k=2, out=str(out),
        log=lambda line: None,
    )  # fmt: skip
    return str(out)


def test_compare_trains_each_counterpart_at_the_searched_cost(data, tmp_path):
    run_dir = tiny_run(data, tmp_path / "run")
    result = cli("compare", run_dir, "--baseline", "slimming", "depgraph", "--seeds", "2", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    comparison = json.loads((tmp_path / "run/compare.json").read_text())
    spec = read_run(run_dir).final.model
    budget = measure(spec, comparison["searched"]["widths"], "macs")
    original = read_run(run_dir).final.original_widths
    for name in ("slimming", "depgraph"):
        record = json.loads((tmp_path / f"run/compare/{name}.json").read_text())
        assert abs(measure(spec, record["widths"], "macs") / budget - 1) <= 0.01
        assert record["wide_widths"] == {width: 2 * channels for width, channels in original.items()}
        assert 0 < record["removed_share"] < 1 and record["pruned_widths"] != record["wide_widths"]
        assert len(comparison[name]["top1"]) == 2 and f"searched_minus_{name}" in comparison["difference"]
        assert f"searched − {name}" in result.stdout
    assert "widths over the original's" in result.stdout
    assert cli("report", run_dir).returncode == 0
    assert (tmp_path / "run/report/allocation.png").stat().st_size > 0
    report = (tmp_path / "run/report/report.md").read_text()
    assert "Searched − depgraph" in report and "its wide training and pruning took" in report


def test_the_usage_guides_figures_on_depgraph_before_the_floor_are_its_records():
    before = RUNS.parent / "before_cut_floor" / "tv-mobilenet-v3-small-a0.5"
    pruning = json.loads((before / "depgraph.json").read_text())
    assert "cut_floors" not in pruning
    assert pruning["pruned_widths"]["features.12.0"] == pruning["pruned_widths"]["classifier.0"] == 1
    top1 = [json.loads((before / f"depgraph-seed{seed}.json").read_text())["test"]["top1"] for seed in (0, 1)]
    original = json.loads((RUNS.parent / "quality.json").read_text())["tv-mobilenet-v3-small-a0.5"]
    usage = " ".join((RUNS.parents[2] / "docs" / "usage.md").read_text().split())
    assert (
        f"trained to {100 * top1[0]:.2f}% and {100 * top1[1]:.2f}% (two seeds; stopped there; the original "
        f"reached {100 * original['networks']['original']['top1_mean']:.2f}%)" in usage
    )
    readme = " ".join((RUNS.parents[2] / "README.md").read_text().split())
    assert (
        f"its network trained to {100 * top1[0]:.2f}% and {100 * top1[1]:.2f}% (two seeds, then stopped"
        in readme
    )
