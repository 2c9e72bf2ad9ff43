"""The pruning peer of ``compare --baseline pruned``: the channels Torch-Pruning's global
magnitude pruner removes, the budget its widths meet, and the spaces it refuses."""

import json

import pytest
import torch
from torch import nn

import netadjust
from conftest import in_process as cli
from conftest import write_mnist_like
from netadjust.cost import measure
from netadjust.errors import UserError
from netadjust.pruned import check_prunable, pruned_to_budget, pruning_plan
from netadjust.rundir import read_run
from netadjust.spaces import ModelSpec, base_widths, width_grid
from test_cli import assert_user_error

pytest.importorskip("torch_pruning")

SMALL = [0, 2, 5, 7, 8, 11, 12, 14]  # the first layer's channels given tiny weights


def hand_set_network() -> nn.Sequential:
    """Two convolutions of 16 and 32 channels whose weights all have the same magnitude,
    except that the first one's channels ``SMALL`` (filters, batch-norm scales and the
    second layer's inputs from them) are a thousand times smaller."""
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.9 + 0.2 * torch.rand(parameter.shape, generator=generator))
        model[0].weight[SMALL] *= 1e-3
        model[0].bias[SMALL] *= 1e-3
        model[1].weight[SMALL] *= 1e-3
        model[1].bias[SMALL] *= 1e-3
        model[3].weight[:, SMALL] *= 1e-3
    return model


def test_the_global_magnitude_pruner_removes_the_channels_whose_weights_are_small():
    plan = pruning_plan(hand_set_network(), {"0": 16, "3": 32}, torch.zeros(1, 1, 8, 8), "the test net")
    removed = plan.removed(len(SMALL) / 48)  # 8 of the 48 channels
    assert removed == {"0": SMALL, "3": []}
    assert plan.widths(len(SMALL) / 48) == {"0": 8, "3": 32}
    assert plan.removed(0.0) == {"0": [], "3": []}


def test_the_pruning_ratio_is_the_least_that_meets_the_budget():
    plan = pruning_plan(hand_set_network(), {"0": 16, "3": 32}, torch.zeros(1, 1, 8, 8), "the test net")
    total = lambda widths: sum(widths.values())  # noqa: E731 (channels as the cost)
    widths, ratio = pruned_to_budget(plan, total, 40)
    assert total(widths) <= 40 and widths == {"0": 8, "3": 32}
    assert total(plan.widths(ratio - 1 / 48)) > 40  # a ratio one channel lower misses the budget


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_mnist_like(tmp_path_factory.mktemp("pruned") / "data", n_train=300, n_test=100)


def tiny_run(space: str, data, out) -> str:
    netadjust.search(
        space=space, dataset="mnist", data_dir=str(data), width_mult=0.25, train_limit=300,
        val_limit=100, test_limit=100, epochs=1, iterations=1, repeats=1, k=2, out=str(out),
        log=lambda line: None,
    )  # fmt: skip
    return str(out)


def test_compare_trains_the_pruned_networks_widths_at_the_searched_cost(data, tmp_path):
    run_dir = tiny_run("resnet18", data, tmp_path / "run")
    result = cli("compare", run_dir, "--baseline", "pruned", "--seeds", "2", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    comparison = json.loads((tmp_path / "run/compare.json").read_text())
    pruned = json.loads((tmp_path / "run/compare/pruned.json").read_text())
    # the networks trained are the pruned widths: counted from the saved tensors themselves
    from netadjust.cost import count

    for seed in (0, 1):
        trained = netadjust.load(tmp_path / f"run/compare/pruned-seed{seed}.safetensors")
        assert count(trained, (1, 28, 28)).macs == measure(
            read_run(run_dir).final.model, pruned["widths"], "macs"
        )
    assert len(comparison["pruned"]["top1"]) == 2 and "searched_minus_pruned" in comparison["difference"]
    spec = read_run(run_dir).final.model
    budget = measure(spec, comparison["searched"]["widths"], "macs")
    assert abs(measure(spec, pruned["widths"], "macs") / budget - 1) <= 0.01
    # the wide network is the original at twice its widths, its stem widened with them
    original = read_run(run_dir).final.original_widths
    assert pruned["wide_widths"] == {name: 2 * width for name, width in original.items()}
    assert pruned["wide_width_mult"] == 0.5
    assert pruned["pruned_widths"] != pruned["wide_widths"] and 0 < pruned["pruning_ratio"] < 1
    assert "pruned" in result.stdout and "searched − pruned" in result.stdout
    assert cli("report", run_dir).returncode == 0
    assert "Searched − pruned" in (tmp_path / "run/report/report.md").read_text()
    again = cli("compare", run_dir, "--baseline", "pruned", "--seeds", "2", "--epochs", "1")
    assert again.returncode == 0 and "pruned: kept from" in again.stdout
    assert "pruned seed 1: kept from" in again.stdout


def test_a_cifar_resnet_is_refused_before_anything_is_written(data, tmp_path):
    run_dir = tiny_run("resnet20", data, tmp_path / "run")
    result = cli("compare", run_dir, "--baseline", "pruned", "--epochs", "1")
    assert_user_error(result, "--baseline pruned", "zero-padded shortcuts", "cannot be pruned")
    assert not (tmp_path / "run/compare").exists() and not (tmp_path / "run/compare.json").exists()


@pytest.mark.parametrize(
    ("space", "refused_for"),
    [
        ("plain20", None),
        ("resnet34", None),
        ("densenet40", None),
        ("pyramidnet20", "zero-padded shortcuts"),
        ("mobilenetv2", "a shared tap"),
    ],
)
def test_which_built_in_spaces_the_pruner_reads(space, refused_for):
    spec = ModelSpec(space, 10, 1, 28, 0.25)
    if refused_for is None:
        check_prunable(spec, base_widths(spec), width_grid(spec, 1))
    else:
        with pytest.raises(UserError, match=refused_for):
            check_prunable(spec, base_widths(spec), width_grid(spec, 1))
