"""What a user takes away from a search: the Python API, the report, the comparison with
the original and the uniform baseline, exported weights and ONNX, TensorBoard scalars."""

import json
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

import netadjust
from conftest import in_process as cli
from conftest import write_mnist_like
from netadjust.adjust import closest_scaling
from netadjust.config import DataConfig
from netadjust.cost import model_cost
from netadjust.data import prepare_data
from netadjust.errors import UserError
from netadjust.export import load_weights, save_onnx, save_weights
from netadjust.planning import iteration_recipe
from netadjust.report import write_report
from netadjust.rundir import read_run
from netadjust.spaces import ModelSpec, base_widths
from netadjust.train import evaluate
from test_cli import assert_user_error

SEARCH = dict(
    dataset="mnist",
    width_mult=0.25,
    train_limit=300,
    val_limit=150,
    test_limit=100,
    epochs=2,
    iterations=2,
    repeats=2,
    k=2,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-iteration search on a tiny MNIST-format dataset, through the API."""
    root = tmp_path_factory.mktemp("results")
    data = write_mnist_like(root / "data", n_train=500, n_test=200)
    result = netadjust.search(
        **SEARCH, data_dir=str(data), out=str(root / "run"), tensorboard=True, log=lambda line: None
    )
    return result


def test_search_api_returns_what_the_run_directory_holds(run):
    assert run.final == json.loads((run.out / "final.json").read_text())
    lines = (run.out / "history.jsonl").read_text().splitlines()
    assert run.history == [json.loads(line) for line in lines]
    assert len(run.history) == SEARCH["iterations"]
    assert run.widths == run.history[-1]["next_widths"]
    assert run.config.recipe.epochs == SEARCH["epochs"]


def test_a_final_json_builds_the_network_of_its_run(run):
    # the run's data are 1-channel 28x28 images at width multiplier 0.25 (not build's defaults)
    final = run.out / "final.json"
    model = netadjust.build("resnet20", final)
    assert model.stem.conv.in_channels == 1
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert netadjust.cost("resnet20", final).macs == run.final["macs"]
    assert netadjust.build("resnet20", final, in_channels=3).stem.conv.in_channels == 3  # arguments win


def test_search_api_refuses_unknown_options():
    with pytest.raises(TypeError, match="epoch"):
        netadjust.search(epoch=3)


def test_tensorboard_scalars_match_the_history(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    search = EventAccumulator(str(run.out / "tensorboard" / "search"))
    search.Reload()
    logged = [event.value for event in search.Scalars("val/top1")]
    assert logged == pytest.approx([record["val"]["top1"] for record in run.history], rel=1e-6)
    assert [event.value for event in search.Scalars("cost/macs")] == [r["macs"] for r in run.history]
    for record in run.history:
        curves = EventAccumulator(str(run.out / "tensorboard" / f"iter{record['iteration'] + 1}"))
        curves.Reload()
        losses = curves.Scalars("train/loss")
        epochs = iteration_recipe(run.config, record["iteration"])[0].epochs  # the default inherits
        assert [event.step for event in losses] == list(range(1, epochs + 1))
        assert losses[-1].value == pytest.approx(record["train"]["loss"], rel=1e-6)


def test_cost_api_is_what_the_cli_prints(tmp_path):
    report = netadjust.cost("resnet20", num_classes=100)
    assert report.macs == 40_556_800
    printed = cli("cost", "resnet20", "--dataset", "cifar100", "--json")
    assert json.loads(printed.stdout) == asdict(report)
    widths = {**report.widths, "stage3.block2.conv2": 32}
    (tmp_path / "w.json").write_text(json.dumps(widths))
    assert netadjust.cost("resnet20", tmp_path / "w.json", num_classes=100).macs < report.macs
    model = netadjust.build("resnet20", widths, num_classes=100)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(TypeError, match="classes"):
        netadjust.build("resnet20", classes=100)


def test_report_writes_valid_figures_and_a_summary(run, tmp_path):
    from PIL import Image

    paths = write_report(run.out)
    assert [path.name for path in paths] == ["widths.png", "fur.png", "progress.png", "report.md"]
    for path in paths[:3]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
            # a plot, not an empty canvas: many distinct colours
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
            assert len(np.unique(pixels, axis=0)) > 50
        assert width >= 600 and height >= 300, (path, width, height)
    text = paths[3].read_text()
    for image in ("widths.png", "fur.png", "progress.png"):
        assert f"]({image})" in text
    for name, before in run.final["original_widths"].items():
        assert f"| `{name}` | {before} | {run.final['widths'][name]} |" in text
    assert f"{run.final['original_macs']:,} → {run.final['macs']:,}" in text
    assert text.startswith("# Network Adjustment: resnet20 ×0.25 on mnist")  # the multiplier is named
    assert "## Did it pay off?" in text and "netadjust compare" in text
    printed = cli("report", run.out)
    assert printed.returncode == 0, printed.stderr
    assert 'rebuild it in Python with: netadjust.build("resnet20", ' in printed.stdout

    # the three panels of progress.png share one x-axis, whose last tick is the result
    from netadjust.figures import progress_figure

    figure = progress_figure(read_run(run.out))
    assert len({axes.get_xlim() for axes in figure.axes}) == 1
    assert all(axes.get_xticklabels()[-1].get_text() == "final" for axes in figure.axes)

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run.out, unfinished)
    (unfinished / "final.json").unlink()
    shutil.rmtree(unfinished / "report")
    text = write_report(unfinished)[3].read_text()
    assert "(unfinished)" in text


def test_report_and_export_refuse_runs_without_results(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run.out / "config.json").read_text())
    assert_user_error(cli("report", empty), "no completed iteration")
    assert_user_error(cli("export", empty, "--out", tmp_path / "x"), "no finished search")
    assert_user_error(cli("compare", empty), "no finished search")
    assert_user_error(cli("report", tmp_path / "nowhere"), "no config.json")
    # damaged files are named, with the line of a JSON error and the keys a record lacks
    damaged = tmp_path / "damaged"
    shutil.copytree(run.out, damaged)
    lines = (damaged / "history.jsonl").read_text().splitlines()
    (damaged / "history.jsonl").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    assert_user_error(cli("report", damaged), "history.jsonl is not valid JSON (line 2:")
    (damaged / "history.jsonl").write_text("\n".join(lines) + "\n")
    final = json.loads((damaged / "final.json").read_text())
    del final["macs"]
    (damaged / "final.json").write_text(json.dumps(final))
    assert_user_error(cli("export", damaged, "--out", tmp_path / "y"), "final.json lacks macs")


def test_uniform_baseline_keeps_every_share_and_meets_the_cost():
    spec = ModelSpec(width_mult=0.5)
    original = base_widths(spec)
    target = int(0.8 * model_cost(spec, original).macs)
    uniform = closest_scaling(original, lambda w: model_cost(spec, w).macs, target, min_width=1)
    assert abs(model_cost(spec, uniform).macs - target) <= 0.01 * target
    assert len({uniform[name] / original[name] for name in original if name.startswith("stage3")}) == 1


def test_compare_trains_three_networks_and_keeps_its_results(run):
    flags = ["--seeds", 2, "--epochs", 1, "--train-limit", 200, "--test-limit", 100]
    first = cli("compare", run.out, *flags)
    assert first.returncode == 0, first.stderr
    comparison = json.loads((run.out / "compare.json").read_text())
    for name, widths in (("original", run.final["original_widths"]), ("searched", run.final["widths"])):
        row = comparison[name]
        assert row["widths"] == widths
        assert len(row["top1"]) == 2 and row["top1_mean"] == pytest.approx(statistics.fmean(row["top1"]))
        assert row["top1_std"] == pytest.approx(statistics.stdev(row["top1"]))
        assert {"top1_mean", "top1_std", "top1", "macs", "params", "widths"} <= set(row)
        assert row["train_images_per_s"] > 0 and row["latency_ms"] > 0 and row["speed_spread"] >= 0
    assert "train img/s" in first.stdout and "latency ms" in first.stdout and "spread" in first.stdout
    assert (
        f"timed in {comparison['latency_precision']} on 1 thread" in first.stdout
        and comparison["latency_precision"] == "fp32"
        and comparison["latency_threads"] == 1  # the run's --latency-threads default
    )
    assert comparison["searched"]["macs"] == run.final["macs"]
    uniform = comparison["uniform"]
    assert abs(uniform["macs"] - run.final["macs"]) <= 0.01 * run.final["macs"]
    assert comparison["difference"]["searched_minus_original"]["top1"] == pytest.approx(
        comparison["searched"]["top1_mean"] - comparison["original"]["top1_mean"]
    )
    paired = [
        s - o for s, o in zip(comparison["searched"]["top1"], comparison["original"]["top1"], strict=True)
    ]
    se = comparison["difference"]["searched_minus_original"]["top1_se"]
    assert se == pytest.approx(statistics.stdev(paired) / 2**0.5)
    # each result is the saved network's real accuracy
    data = prepare_data(
        DataConfig(dataset="mnist", data_dir=run.config.data.data_dir, train_limit=200, test_limit=100),
        0,
        torch.device("cpu"),
        hold_out=False,
    )
    model = netadjust.load(run.out / "compare" / "searched-seed1.safetensors")
    assert evaluate(model, data.test, data.info)["top1"] == comparison["searched"]["top1"][1]

    again = cli("compare", run.out, *flags)
    assert again.returncode == 0 and again.stdout.count("kept from") >= 4, again.stdout

    # one seed: no spread is defined, none is printed or written, and the table says so
    single = cli("compare", run.out, "--seeds", 1, *flags[2:])
    assert single.returncode == 0, single.stderr
    one = json.loads((run.out / "compare.json").read_text())
    assert (
        one["original"]["top1_std"] is None
        and one["difference"]["searched_minus_original"]["top1_se"] is None
    )
    assert "±" not in single.stdout and "no spread can be measured" in single.stdout
    before = (run.out / "compare.json").read_bytes()
    changed = cli("compare", run.out, *flags[:2], "--epochs", 2, *flags[4:])
    assert_user_error(changed, "other settings", "--force")
    assert (run.out / "compare.json").read_bytes() == before


def test_compare_with_a_preset_trains_with_its_final_training(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.out, copy, ignore=shutil.ignore_patterns("compare", "compare.json"))
    flags = ["--seeds", 1, "--epochs", 1, "--train-limit", 100, "--test-limit", 50]
    result = cli("compare", copy, "--preset", "paper", *flags)
    assert result.returncode == 0, result.stderr
    recipe = json.loads((copy / "compare.json").read_text())["recipe"]
    # the reference's CIFAR evaluation recipe (the run's own lr is 0.1), flags winning over it
    assert [recipe[key] for key in ("lr", "weight_decay", "drop_rate", "epochs")] == [0.15, 3e-4, 0.05, 1]


def test_train_on_a_final_json_takes_the_runs_recipe_and_dataset(run, tmp_path):
    out = tmp_path / "t.json"
    result = cli("train", "--widths", run.out / "final.json", "--test-limit", 50, "--lr", 0.05, "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"the recipe of the search in {run.out}" in result.stdout.splitlines()[0]
    trained = json.loads(out.read_text())
    # the run's dataset (all of it) and epochs; the flag's learning rate
    assert (trained["dataset"], trained["data_sizes"]["train"]) == ("mnist", 500)
    assert (trained["recipe"]["epochs"], trained["recipe"]["lr"]) == (SEARCH["epochs"], 0.05)
    assert trained["widths"] == run.final["widths"]


def test_an_interrupted_compare_says_how_to_continue_and_continues(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.out, copy, ignore=shutil.ignore_patterns("compare", "compare.json"))
    flags = ["--seeds", 3, "--epochs", 2, "--train-limit", 300, "--test-limit", 50]
    # a real SIGINT, sent by the process to itself once the first training is recorded (a
    # record is written with the signals held, so it arrives right after): no polling race
    interrupted_after_first_record = (
        "import importlib, os, signal\n"
        "compare = importlib.import_module('netadjust.compare')\n"
        "written = compare.write_json\n"
        "def write_json(path, value):\n"
        "    written(path, value)\n"
        "    if path.name == 'original-seed0.json':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "compare.write_json = write_json\n"
        "from netadjust.cli import main\n"
        f"raise SystemExit(main({['compare', str(copy), *map(str, flags)]!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", interrupted_after_first_record], capture_output=True, text=True, timeout=300
    )
    stderr = done.stderr
    assert done.returncode == 130 and "Traceback" not in stderr, stderr
    assert sorted(path.name for path in (copy / "compare").glob("*.json")) == ["original-seed0.json"]
    assert "run the same command again to continue" in stderr.strip().splitlines()[-1]
    again = cli("compare", copy, *flags)
    assert again.returncode == 0 and "original seed 0: kept from" in again.stdout, again.stderr


def test_export_writes_widths_weights_and_a_valid_onnx(run, tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    if not (run.out / "compare").exists():
        cli("compare", run.out, "--epochs", 1, "--train-limit", 100, "--test-limit", 50)
    out = tmp_path / "export"
    result = cli("export", run.out, "--out", out, "--onnx")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "widths.json").read_text())["widths"] == run.final["widths"]
    assert 'netadjust.build("resnet20"' in result.stdout

    exported = netadjust.load(out / "model.safetensors")
    trained = netadjust.load(sorted((run.out / "compare").glob("searched-seed*.safetensors"))[0])
    images = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(exported(images), trained(images))
    graph = onnx.load(out / "model.onnx")
    onnx.checker.check_model(graph, full_check=True)
    (logits,) = ReferenceEvaluator(graph).run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, trained(images).detach().numpy(), rtol=1e-4, atol=1e-5)

    assert_user_error(cli("export", run.out, "--out", out), "already exist")
    other = tmp_path / "other.safetensors"
    spec = ModelSpec(**run.final["model"])
    save_weights(
        netadjust.build("resnet20", **{k: v for k, v in asdict(spec).items() if k != "space"}),
        spec,
        base_widths(spec),
        other,
    )
    assert_user_error(cli("export", run.out, "--out", tmp_path / "o", "--weights", other), "another network")


def test_export_without_a_trained_network_writes_widths_only(run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run.out, bare, ignore=shutil.ignore_patterns("compare", "compare.json"))
    refused = cli("export", bare, "--out", tmp_path / "a", "--onnx")
    assert_user_error(refused, "--onnx needs")
    assert not (tmp_path / "a").exists()
    result = cli("export", bare, "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["widths.json"]
    assert "netadjust compare" in result.stdout
    # an --out that is a file, or lies under one, is one line and status 2, the file untouched
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert_user_error(cli("export", bare, "--out", blocker), "is a file")
    refused = cli("export", bare, "--out", blocker / "sub")
    assert_user_error(refused, "cannot write")
    assert blocker.read_text() == "mine"


def test_weights_round_trip_with_batch_norm_statistics(tmp_path):
    spec = ModelSpec(width_mult=0.25, num_classes=7, in_channels=2, image_size=12)
    widths = {**base_widths(spec), "stage2.block1.conv1": 3}
    torch.manual_seed(0)
    model = netadjust.build("resnet20", widths, num_classes=7, in_channels=2, image_size=12, width_mult=0.25)
    model.train()
    model(torch.randn(16, 2, 12, 12))  # moves the running statistics off their initial values
    model.eval()
    save_weights(model, spec, widths, tmp_path / "m.safetensors")
    loaded, loaded_spec, loaded_widths = load_weights(tmp_path / "m.safetensors")
    assert loaded_spec == spec and loaded_widths == widths
    images = torch.randn(4, 2, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    save_onnx(model, spec, tmp_path / "m.onnx")  # odd widths and input sizes export too

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a safetensors"):
        netadjust.load(tmp_path / "junk.safetensors")


def test_train_saves_the_network_it_reports(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=200, n_test=80)
    out = tmp_path / "t.json"
    result = cli(
        "train", "--dataset", "mnist", "--data-dir", data, "--width-mult", 0.25, "--epochs", 1, "--out", out
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    model = netadjust.load(tmp_path / "t.safetensors")
    loaded = prepare_data(DataConfig(dataset="mnist", data_dir=str(data)), 0, torch.device("cpu"), False)
    assert evaluate(model, loaded.test, loaded.info) == record["test"]
    assert_user_error(cli("train", "--dataset", "mnist", "--data-dir", data, "--out", out), "already exists")


def test_a_searched_network_is_called_slower_only_beyond_the_noise():
    from netadjust.speed import relative_spread, slower

    original = {"train_images_per_s": 1000.0, "latency_ms": 2.0, "spread": 0.02}
    assert not slower({**original, "train_images_per_s": 960.0}, original)  # 4%: within 5%
    assert slower({**original, "train_images_per_s": 900.0}, original)
    assert slower({**original, "latency_ms": 2.3}, original)
    assert not slower({**original, "train_images_per_s": 900.0, "spread": 0.09}, original)  # noisier
    assert relative_spread([1.0, 1.0, 1.0, 1.0, 1.0]) == 0
    assert relative_spread([0.9, 1.0, 1.0, 1.0, 1.1]) > 0


def test_speeds_that_are_noise_are_marked_as_noise(run):
    from netadjust.compare import comparison_table

    cli("compare", run.out, "--epochs", 1, "--train-limit", 200, "--test-limit", 100)
    comparison = json.loads((run.out / "compare.json").read_text())
    for name, spread in (("original", 0.91), ("searched", 3.85), ("uniform", 0.05)):
        comparison[name]["speed_spread"] = spread  # as a newcomer's busy machine recorded them
    lines = comparison_table(comparison).splitlines()
    rows = {line.split()[0]: line for line in lines[1:4]}  # the three networks' rows
    assert rows["original"].rstrip().endswith(" 91%*") and rows["searched"].rstrip().endswith(" 385%*")
    assert rows["uniform"].split("(")[0].rstrip().endswith(" 5%")
    assert any(line.startswith("* speed rounds spread") for line in lines)
    for row in ("original", "searched", "uniform"):
        comparison[row]["speed_spread"] = 0.05
    assert "* speed rounds" not in comparison_table(comparison)
