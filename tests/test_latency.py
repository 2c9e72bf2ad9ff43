"""--budget latency: the layer table, the timed rescale and the refusals. Timings vary from
run to run, so these tests check what holds whatever the machine's speed: the table's
bookkeeping, that the rescale never exceeds the band it measured, and the records."""

import json
import math

import pytest
import torch

from conftest import in_process, write_mnist_like
from netadjust.adjust import widest_within
from netadjust.config import LatencyConfig, ModelSpec
from netadjust.errors import UserError
from netadjust.latency import LatencyTable, device_description, latency_model
from netadjust.spaces import base_widths
from test_cli import assert_user_error

CPU = torch.device("cpu")
# a spread limit no machine reaches: these tests are about the records, not the refusal
# (a loaded machine's timings spread by several times their median)
NEVER = 1000
SPEC = ModelSpec("resnet20", num_classes=10, in_channels=1, image_size=28, width_mult=0.25)


def model_on(table, **settings):
    config = LatencyConfig(table=str(table), max_spread=NEVER, **settings)
    return latency_model(SPEC, config, CPU, "fp32", channels_last=False)


def test_the_table_times_each_layer_shape_once_and_keeps_it_on_disk(tmp_path):
    table = tmp_path / "latency.json"
    first = model_on(table)
    original = base_widths(SPEC)
    measured, _ = first.calibrate(original)
    # the estimate is the layers' sum plus what they miss on the original: exact there
    assert first.estimate(original) == pytest.approx(measured)
    assert first.layers_sum(original) + first.overhead == pytest.approx(measured)
    recorded = json.loads(table.read_text())
    assert recorded["device"] == device_description(CPU) and recorded["torch"] == torch.__version__
    # one entry per distinct layer call: ResNet-20's 19 convs, 19 batch norms, ... share shapes
    calls = first._traced(original)
    assert len(recorded["entries"]) == len({key for key, _, _ in calls}) < len(calls)
    assert all(seconds > 0 for seconds in recorded["entries"].values())

    second = model_on(table)  # another search on this device: nothing timed again
    assert second.layers_sum(original) == first.layers_sum(original)
    assert second.table.added == 0
    wider = {name: width + 2 for name, width in original.items()}
    second.layers_sum(wider)
    assert second.table.added > 0
    second.table.save()
    assert len(json.loads(table.read_text())["entries"]) > len(recorded["entries"])


def test_sensitivities_come_from_the_table_one_per_width_and_positive(tmp_path):
    model = model_on(tmp_path / "t.json", mode="train", batch=8)
    original = base_widths(SPEC)
    model.calibrate(original)
    f = model.sensitivities(original)
    assert set(f) == set(original) and all(value > 0 for value in f.values())
    # a difference of table sums: the same table gives the same f
    assert model_on(tmp_path / "t.json", mode="train", batch=8).sensitivities(original) == f


def test_a_table_of_another_device_or_a_damaged_one_is_refused(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": 1, "device": "Apple M9", "torch": "9.0", "entries": {}}))
    with pytest.raises(UserError, match="measured on Apple M9 with torch 9.0, not on this"):
        LatencyTable(other, CPU)
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"entries": [1, 2]}')
    with pytest.raises(UserError, match="not a latency table"):
        LatencyTable(damaged, CPU)


def test_a_device_that_times_unreliably_is_refused(tmp_path):
    # no two rounds of timings are ever equal, so a limit of 0 refuses any device
    config = LatencyConfig(table=str(tmp_path / "t.json"), max_spread=0.0)
    model = latency_model(SPEC, config, CPU, "fp32", channels_last=False)
    with pytest.raises(UserError, match="cannot be timed reliably"):
        model.calibrate(base_widths(SPEC))


def test_the_timed_rescale_takes_the_widest_widths_within_the_band():
    widths = {"a": 8, "b": 16, "c": 32}
    linear = lambda w: 100 * sum(w.values())  # noqa: E731
    budget = linear(widths)
    grown = {"a": 12, "b": 20, "c": 40}
    result = widest_within(grown, linear, budget, min_width=1, tolerance=0.03)
    assert linear(result) <= 1.03 * budget
    # one more channel on every width would break the band: it is the widest scaling
    assert linear({name: width + 1 for name, width in result.items()}) > 1.03 * budget
    # a time that does not depend on the widths over a range: the widest end of the range,
    # not the first factor that happens to lie within the band
    flat = lambda w: budget if max(w.values()) <= 64 else 2 * budget  # noqa: E731
    widest = widest_within(widths, flat, budget, min_width=1, tolerance=0.03)
    assert 56 <= max(widest.values()) <= 64
    on_grid = widest_within(grown, linear, budget, min_width=1, tolerance=0.03, round_to=8)
    assert all(width % 8 == 0 for width in on_grid.values()) and linear(on_grid) <= 1.03 * budget


def test_a_latency_search_holds_the_timed_budget_and_records_it(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=300, n_test=40)
    out, table = tmp_path / "run", tmp_path / "latency.json"
    result = in_process(
        "search", "--dataset", "mnist", "--data-dir", data, "--width-mult", 0.25, "--epochs", 1,
        "--repeats", 1, "--iterations", 1, "--k", 2, "--batch-size", 100, "--precision", "fp32",
        "--budget", "latency", "--latency-mode", "train", "--latency-batch", 32,
        "--latency-table", table, "--latency-max-spread", NEVER, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "latency: original" in result.stdout and "latency measured: original" in result.stdout
    (record,) = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final = json.loads((out / "final.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["budget"] == "latency"
    recorded = {"batch": 32, "mode": "train", "table": str(table), "max_spread": NEVER}
    assert config["latency"] == recorded
    # the rescale keeps the next widths' timed ratio to the original within the 3% band
    assert record["next_latency"] <= 1.03 * record["latency"]
    assert record["next_excess"] <= 0.03
    assert final["budget"] == "latency" and final["latency_table"] == str(table)
    for key in ("latency", "original_latency"):
        assert 0 < final[key] < 1, key  # seconds per training pass of 32 images
    # the table's estimate is only as good as the machine was quiet while it timed layers
    assert math.isfinite(final["latency_estimate"])
    assert json.loads(table.read_text())["entries"]


def test_latency_refusals_are_one_line(tmp_path):
    assert_user_error(
        in_process("cost", "resnet20", "--budget", "latency", "--latency-batch", 0),
        "--latency-batch is 0",
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": 1, "device": "Apple M9", "torch": "9.0", "entries": {}}))
    result = in_process("cost", "resnet20", "--budget", "latency", "--latency-table", other)
    assert_user_error(result, "Apple M9", "--latency-table")
    result = in_process(
        "cost", "resnet20", "--budget", "latency", "--latency-table", tmp_path / "t.json",
        "--latency-max-spread", 0,
    )  # fmt: skip
    assert_user_error(result, "cannot be timed reliably", "--budget macs")
    assert not (tmp_path / "t.json").exists()  # nothing written by a refused timing


def test_cost_prints_the_tables_estimate_beside_the_measured_time(tmp_path):
    result = in_process(
        "cost", "resnet20", "--width-mult", 0.25, "--budget", "latency",
        "--latency-table", tmp_path / "t.json", "--latency-max-spread", NEVER, "--precision", "fp32",
        "--json",
    )  # fmt: skip
    printed = json.loads(result.stdout)
    timing = printed["latency"]
    assert printed["budget"] == {"measure": "latency", "value": timing["estimate"]}
    assert timing["estimate"] == pytest.approx(timing["layers_sum"] + timing["overhead"])
    assert timing["measured"] > 0 and timing["mode"] == "infer" and timing["batch"] == 1
    assert set(printed["sensitivities"]) == set(printed["widths"])
