"""The command line as users and other tools call it: main() in this process (conftest.in_process),
and real subprocesses where the process itself matters (entry point, environment, search end to end)."""

import json
import os
from pathlib import Path

import pytest

from conftest import in_process, netadjust, write_cifar, write_mnist_like
from netadjust.config import Recipe
from netadjust.presets import TRAINING, final_training
from netadjust.settings import as_settings
from netadjust.spaces import ModelSpec, base_widths
from test_cost import REFERENCE_RESNET20_CIFAR100

REPO = Path(__file__).resolve().parents[1]


def assert_user_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netadjust: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


TINY = [
    "--width-mult",
    "0.25",
    "--train-limit",
    600,
    "--val-limit",
    300,
    "--test-limit",
    300,
    "--epochs",
    1,
    "--repeats",
    1,
    "--batch-size",
    100,
]


def test_search_end_to_end(tmp_path, fashion_dir):
    out = tmp_path / "run"
    flags = ["--data-dir", fashion_dir, "--iterations", 2, "--k", 3, "--adjust-rate", 0.5, "--min-width", 1]
    flags += ["--inherit", 0]  # the paper's loop, every iteration from scratch
    planned = dry_run(*flags, "--out", out, *TINY)
    assert not out.exists()
    result = netadjust("search", *flags, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    # the dry run printed what config.json holds, less what needs the data, plus k per iteration
    assert planned.pop("k_schedule") == [3, 3]  # the default preset: k = 3 throughout
    assert planned == {k: v for k, v in config.items() if k not in ("provenance", "data_sizes")}
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final = json.loads((out / "final.json").read_text())
    assert config["iterations"] == 2 and config["model"]["in_channels"] == 1
    # FUR precision is decided once and recorded: bf16 where the CPU has native bf16
    from netadjust.train import cpu_has_fast_bf16

    assert config["fur"]["bf16"] is cpu_has_fast_bf16()
    assert config["fur"]["control_variate"] is True  # the default outside the paper preset
    assert config["provenance"]["torch"] and len(config["provenance"]["dataset_sha256"]) == 64
    assert [record["iteration"] for record in history] == [0, 1]
    names = list(final["original_widths"])
    for record in history:
        assert list(record["fur"]) == names
        assert set(record["drop_rates"]) == set(names)
        assert len(record["grown"]) == len(record["shrunk"]) == record["k"] == 3
        assert {"loss", "top1", "top5"} <= set(record["val"]) and {"top1", "top5"} <= set(record["test"])
        assert set(record["seconds"]) == {"train", "fur", "adjust"}
        budget = final["original_macs"]
        assert record["next_excess"] == pytest.approx((record["next_macs"] - budget) / record["next_macs"])
        assert -1 <= record["fur_stability"]["spearman"] <= 1
        assert 0 <= record["fur_stability"]["grow_overlap"] <= 1
        assert len(record["fur_halves"]) == 2 and list(record["fur_halves"][0]) == names
    assert history[1]["widths"] == history[0]["next_widths"]
    assert final["widths"] == history[1]["next_widths"]
    assert final["widths"] != final["original_widths"]
    assert abs(final["macs"] - final["original_macs"]) <= 0.01 * final["original_macs"]
    for key in ("params", "original_params"):
        assert final[key] > 0
    assert "stage1.block0.conv1" in result.stdout  # the original -> searched table
    # how long it will take, said after the first epoch and after the first iteration
    assert (
        "iter 1/2: the first epoch took" in result.stdout
        and "2 epochs of training will take" in result.stdout
    )
    assert "iter 1/2: about " in result.stdout and " more for the other 1 iteration" in result.stdout
    assert f"netadjust compare {out} --seeds 5" in result.stdout and "Spearman" in result.stdout

    # the searched widths feed the cost and train commands
    cost = json.loads(
        in_process(
            "cost",
            "resnet20",
            "--widths",
            out / "final.json",
            "--in-channels",
            1,
            "--image-size",
            28,
            "--json",
        ).stdout
    )
    assert cost["macs"] == final["macs"] and cost["widths"] == final["widths"]
    trained = in_process(
        "train",
        "--data-dir",
        fashion_dir,
        "--widths",
        out / "final.json",
        "--epochs",
        1,
        "--train-limit",
        500,
        "--test-limit",
        200,
        "--out",
        tmp_path / "t.json",
    )
    assert trained.returncode == 0, trained.stderr
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["widths"] == final["widths"] and result["macs"] == final["macs"]
    # and start a new search, with the run's network settings (a final.json's keys are the
    # model's fields: its input size is no --image-size, refused for this dataset)
    again = tmp_path / "again"
    started = in_process(
        "search", "--widths", out / "final.json", "--data-dir", fashion_dir, "--iterations", 1,
        "--out", again, *TINY[2:],
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    config = json.loads((again / "config.json").read_text())
    assert config["initial_widths"] == final["widths"] and config["model"]["width_mult"] == 0.25
    assert 0 <= result["test"]["top1"] <= result["test"]["top5"] <= 1
    assert result["data_sizes"] == {"train": 500, "test": 200}


def test_cost_json_contract():
    result = in_process("cost", "resnet20", "--dataset", "cifar100", "--json")
    assert result.returncode == 0
    cost = json.loads(result.stdout)
    assert cost["macs"] == 40_556_800 and cost["params"] == 278_324 - 2752
    # the input given in parts is the same input
    parts = ["--num-classes", 100, "--in-channels", 3, "--image-size", 32, "--json"]
    assert json.loads(in_process("cost", "resnet20", *parts).stdout) == cost
    assert list(cost["widths"])[0] == "stage1.block0.conv1"
    # the reference's f_i at ResNet-20's base widths for CIFAR-100, in width order
    assert list(cost["sensitivities"]) == list(cost["widths"])
    assert list(cost["sensitivities"].values()) == REFERENCE_RESNET20_CIFAR100


def test_spaces_lists_every_space():
    result = in_process("spaces", "--json")
    rows = json.loads(result.stdout)
    assert {"resnet20", "resnet32", "resnet56", "resnet110", "plain20"} <= {r["space"] for r in rows}
    assert all(r["macs"] > 0 and r["params"] > 0 for r in rows)


def test_bad_input_gets_one_line_and_status_2(tmp_path):
    unknown = in_process("compare", tmp_path, "--bogus", 3)
    assert_user_error(unknown, "unrecognized arguments: --bogus 3", "see netadjust compare --help")
    assert unknown.stderr.count("netadjust:") == 1  # no doubled prefix

    assert_user_error(in_process("search", "--epochs", "x"), "--epochs", "see netadjust search --help")
    assert_user_error(in_process("cost", "resnet21"), "resnet21", "6n+2")
    assert_user_error(in_process("cost", "vgg11"), "vgg11", "resnet20")
    assert_user_error(in_process("search", "--space", "vgg"), "vgg")
    assert_user_error(in_process("search", "--dataset", "imagenet9"), "imagenet9")
    assert_user_error(in_process("search", "--epochs", 0, "--data-dir", tmp_path), "--epochs")
    assert_user_error(in_process("search", "--lr", -1), "--lr")
    assert_user_error(in_process("search", "--epochs", "many"), "--epochs")
    assert_user_error(in_process("search", "--data-dir", tmp_path / "absent"), "does not exist")
    assert_user_error(in_process("search", "--data-dir", tmp_path), "not found", "--download")
    assert_user_error(in_process("search", "--device", "cuda:7"), "cuda")
    bad = tmp_path / "w.json"
    bad.write_text("{not json")
    assert_user_error(in_process("cost", "resnet20", "--widths", bad), "not JSON")
    bad.write_text(json.dumps({"stage1.block0.conv1": 3}))
    assert_user_error(in_process("cost", "resnet20", "--widths", bad), "miss")
    assert_user_error(in_process("cost", "resnet20", "--widths", tmp_path / "nope.json"), "does not exist")


def test_paths_starting_with_a_tilde_are_the_home_folder(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    write_mnist_like(tmp_path / "data")
    (tmp_path / "w.json").write_text(json.dumps(base_widths(ModelSpec(width_mult=0.25))))
    cost = netadjust("cost", "resnet20", "--widths", "~/w.json", "--width-mult", 0.25, "--json", env=env)
    assert cost.returncode == 0, cost.stderr
    flags = ["--dataset", "mnist", "--width-mult", 0.25, "--epochs", 2, "--batch-size", 32]
    trained = netadjust("train", "--data-dir", "~/data", *flags, "--out", "~/r.json", env=env)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "r.json").exists() and (tmp_path / "r.safetensors").exists()
    assert not (tmp_path / "~").exists()
    # output to a file, not a terminal: a start line, then one plain line per epoch
    assert trained.stdout.startswith(
        "train: resnet20 (width multiplier 0.25, base widths) on mnist, 2 epochs"
    )
    epochs = [line for line in trained.stderr.splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split()[0] for line in epochs] == ["1/2", "2/2"]
    assert all("images/s, ETA" in line for line in epochs), epochs


def test_bad_search_settings_write_nothing(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = tmp_path / "run"
    base = ["search", "--dataset", "mnist", "--data-dir", data, "--out", out, *TINY]
    assert_user_error(in_process(*base, "--k", 12), "--k")
    assert_user_error(in_process(*base, "--repeats", 0), "--repeats")
    assert_user_error(in_process(*base, "--drop-rate", 1.5), "--drop-rate")
    assert_user_error(in_process(*base, "--min-width", 50), "budget")
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_is_refused(tmp_path, fashion_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = in_process("search", "--data-dir", fashion_dir, "--out", blocker / "run", *TINY)
    assert_user_error(result, "cannot write", "--out")
    assert blocker.read_text() == "x"


def test_search_refuses_a_directory_that_holds_a_run(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = tmp_path / "run"
    out.mkdir()
    (out / "final.json").write_text("{}")
    result = in_process("search", "--dataset", "mnist", "--data-dir", data, "--out", out, *TINY)
    assert_user_error(result, "holds files of a search", "--force")
    assert (out / "final.json").read_text() == "{}"


def test_version_and_help_speak_to_users():
    from netadjust import __version__

    assert netadjust("--version").stdout.strip() == f"netadjust {__version__}"
    top = netadjust("--help").stdout
    assert "channel widths" in top and "Thin" not in top
    search_help = netadjust("search", "--help")
    assert search_help.returncode == 0 and "--iterations" in search_help.stdout
    search_help = search_help.stdout
    for flag in ("--epochs", "--batch-size", "--seed", "--iterations", "--k", "--min-width", "--momentum"):
        described = search_help.split(f"  {flag} ")[1].split("\n  -")[0]
        assert "default" in described, (flag, described)


def test_a_params_budget_holds_params_while_macs_move(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=500, n_test=60)
    out = tmp_path / "run"
    args = ["--dataset", "mnist", "--data-dir", data, "--iterations", 2, "--k", 3, "--adjust-rate", 0.5]
    result = in_process("search", "--budget", "params", "--out", out, *args, *TINY)
    assert result.returncode == 0, result.stderr
    assert "params; run directory" in result.stdout  # the budget is stated in params
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final = json.loads((out / "final.json").read_text())
    budget = final["original_params"]
    assert final["budget"] == "params" and abs(final["params"] - budget) <= 0.01 * budget
    for record in history:
        assert abs(record["next_params"] - budget) <= 0.01 * budget
    # f_i counts parameters: at the base widths a stage-3 width takes part in 15.7 times the
    # parameters of a stage-1 width, while their MACs are equal (see test_cost)
    f = history[0]["sensitivities"]
    assert f["stage3.block1.conv1"] == pytest.approx(15.68 * f["stage1.block1.conv1"], rel=1e-3)
    assert abs(final["macs"] / final["original_macs"] - 1) > 0.01  # MACs were free to move

    printed = json.loads(in_process("cost", "resnet20", "--budget", "params", "--json").stdout)
    assert printed["budget"] == {"measure": "params", "value": printed["params"]}
    assert "budget" not in json.loads(in_process("cost", "resnet20", "--json").stdout)


def dry_run(*flags, cwd=None):
    result = in_process("search", "--dry-run", *flags, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_round_to_keeps_every_searched_width_on_the_grid(tmp_path):
    data = write_mnist_like(tmp_path / "mnist", n_train=300, n_test=50)
    out = tmp_path / "run"
    flags = ["--dataset", "mnist", "--data-dir", data, "--width-mult", 0.5, "--epochs", 1, "--repeats", 1]
    result = in_process("search", *flags, "--iterations", 2, "--k", 3, "--round-to", 8, "--out", out)
    assert result.returncode == 0, result.stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final = json.loads((out / "final.json").read_text())
    assert json.loads((out / "config.json").read_text())["rule"]["round_to"] == 8
    for widths in [record["next_widths"] for record in history] + [final["widths"]]:
        assert all(width % 8 == 0 for width in widths.values()), widths
    for record in history:  # a grid too coarse for the 1% band is said, not hidden
        if abs(record["next_excess"]) > 0.01:
            assert "no rounding of the adjusted widths lies within 1%" in result.stdout


def test_the_paper_preset_is_the_references_cifar_search(tmp_path, tmp_path_factory):
    # the reference's README command for CIFAR-100 and its argparse defaults (a dry run
    # looks for the data as the run would: small files in CIFAR-100's format)
    data = write_cifar(tmp_path_factory.mktemp("cifar100"), "cifar100")
    settings = dry_run("--preset", "paper", "--data-dir", data, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
    assert settings["model"] | {"width_mult": 1.0} == {
        "space": "resnet20", "num_classes": 100, "in_channels": 3, "image_size": 32,
        "width_mult": 1.0, "padding": "max", "model": None, "model_args": None,  # a space, not --model
    }  # fmt: skip
    recipe = settings["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["lr"], recipe["lr_min"]) == (200, 128, 0.15, 1e-3)
    assert (recipe["weight_decay"], recipe["drop_rate"], recipe["drop_depth_ramp"]) == (3e-4, 0.05, True)
    assert (settings["fur"]["base_rate"], settings["fur"]["repeats"], settings["data"]["val_fraction"]) == (
        0.05,
        5,
        0.1,
    )
    assert settings["fur"]["control_variate"] is False  # the reference's plain Monte Carlo
    assert settings["rule"] == {
        "k0": 6,
        "k_decay": 0.5,
        "rate": 0.15,
        "step": "initial",
        "rate_decay": 0.01,
        "min_width": 4,
        "round_to": 1,
    }
    assert settings["k_schedule"] == [6, 6, 5, 4, 4, 4, 3, 2, 2, 2]  # Python 3's round, halves to even
    assert "provenance" not in settings and "data_sizes" not in settings


def test_the_fmnist_preset_is_the_search_behind_the_results_table(tmp_path):
    """The README's results rows ran bench/quality.py's flags; the preset must be that search."""
    tabled = REPO / "bench" / "results" / "runs" / "resnet20-x0.5-a0.5"
    recorded = json.loads((tabled / "config.json").read_text())
    settings = dry_run("--preset", "fmnist", cwd=tmp_path)
    assert recorded["data_sizes"]["train"] == 54000 == recorded["data"].pop("train_limit")  # the whole split
    assert settings["data"].pop("train_limit") is None
    recorded["rule"].setdefault("step", "initial")  # the step's base, an option added since: the paper's
    for key in ("model", "data", "recipe", "fur", "rule", "iterations", "budget", "initial_widths"):
        assert settings[key] == recorded[key], key
    # and its final training is the comparison's (compare --epochs 5 on the run's recipe)
    trained = json.loads((tabled / "compare" / "searched-seed0.json").read_text())["recipe"]
    trained = as_settings(Recipe(**trained))
    assert final_training("fmnist", "fashion-mnist") == {key: trained[key] for key in TRAINING}


def test_the_default_search_is_the_results_tables_search_made_cheap(tmp_path):
    """No --preset: the fmnist search (the equal-parameter gain) with later iterations
    fine-tuning on a quarter of the images and FUR at T = 2, at lr 0.05, with the step a share
    of the lesser of a width's initial and current size (README's first lines)."""
    out = ("--out", tmp_path / "run")
    default = dry_run(*out)
    cheap = ("--inherit", "0.25", "--repeats", "2", "--lr", "0.05", "--step", "lesser")
    assert default == dry_run(*out, "--preset", "fmnist", *cheap)
    assert default == dry_run(*out, "--preset", "standard")
    assert default["data"]["dataset"] == "fashion-mnist" and default["iterations"] == 6


def test_the_paper_preset_on_imagenet_is_the_references_imagenet_search(tmp_path):
    # README "Multi-GPU on ImageNet": --batch_size=64 --learning_rate=0.2 --epochs=10
    # --drop_rate=0.05 --base_drop_rate=0.2 --layerd=F --weight_decay=4e-5 --update_num=6;
    # argparse defaults for the rest: no label smoothing, no k decay, adjusting rate 0.1
    settings = dry_run("--preset", "paper", "--dataset", "imagenet", "--data-dir", tmp_path)
    recipe, rule = settings["recipe"], settings["rule"]
    assert (settings["model"]["space"], settings["iterations"], recipe["epochs"]) == ("resnet18", 10, 10)
    assert (recipe["lr"], recipe["batch_size"], recipe["weight_decay"]) == (0.2, 64, 4e-5)
    assert (recipe["label_smoothing"], recipe["drop_rate"], recipe["drop_depth_ramp"]) == (0.0, 0.05, False)
    assert (settings["fur"]["base_rate"], settings["fur"]["repeats"]) == (0.2, 5)
    assert rule == {
        "k0": 6, "k_decay": 0.0, "rate": 0.1, "step": "initial", "rate_decay": 0.0, "min_width": 4,
        "round_to": 1,
    }  # fmt: skip
    assert settings["k_schedule"] == [6] * 10
    mine = dry_run(
        "--preset", "paper", "--dataset", "imagenet", "--data-dir", tmp_path, "--space", "mobilenetv2",
        "--lr", "0.05", "--drop-depth-ramp", "--k-decay", "0.5",
    )  # fmt: skip
    assert (mine["model"]["space"], mine["recipe"]["lr"], mine["recipe"]["drop_depth_ramp"]) == (
        "mobilenetv2",
        0.05,
        True,
    )
    assert mine["k_schedule"] == [6, 6, 5, 4, 4, 4, 3, 2, 2, 2]


def test_the_paper_final_trainings_are_the_references():
    from netadjust.cli import build_parser
    from netadjust.commands import recipe

    def final(*flags):
        args = build_parser().parse_args(["train", "--preset", "paper", *flags])
        return recipe(args, final_training("paper", args.dataset or "fashion-mnist"))

    # README "Network evaluation on ImageNet": 90 epochs, lr 0.4 at 128 per process, weight
    # decay 4e-5, label smoothing 0.1, 5 warm-up epochs, no channel dropout
    imagenet = final("--dataset", "imagenet")
    assert (imagenet.epochs, imagenet.batch_size, imagenet.lr, imagenet.weight_decay) == (90, 128, 0.4, 4e-5)
    assert (imagenet.label_smoothing, imagenet.warmup_epochs, imagenet.drop_rate) == (0.1, 5.0, 0.0)
    # "Network evaluation on CIFAR-100": 200 epochs, lr 0.15, batch 128, dropout 0.05
    cifar = final("--dataset", "cifar100", "--epochs", "3")
    assert (cifar.epochs, cifar.lr, cifar.batch_size, cifar.drop_rate, cifar.weight_decay) == (
        3,
        0.15,
        128,
        0.05,
        3e-4,
    )


def test_a_run_records_its_model_file_and_data_folder_as_absolute_paths(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(
        "from torch import nn\n\ndef net(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n"
    )
    write_mnist_like(tmp_path / "data")
    planned = dry_run("--model", "models/net.py:net", "--data-dir", "data", cwd=tmp_path)
    assert planned["model"]["model"] == f"{tmp_path / 'models' / 'net.py'}:net"
    assert planned["data"]["data_dir"] == str(tmp_path / "data")
