"""The command line as users and other tools call it: real subprocesses."""

import json
import subprocess
import sys

import pytest

from conftest import write_mnist_like


def netadjust(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "netadjust", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


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
    result = netadjust(
        "search",
        "--data-dir",
        fashion_dir,
        "--iterations",
        2,
        "--k",
        3,
        "--adjust-rate",
        0.5,
        "--min-width",
        1,
        "--out",
        out,
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final = json.loads((out / "final.json").read_text())
    assert config["iterations"] == 2 and config["model"]["in_channels"] == 1
    # FUR precision is decided once and recorded: bf16 where the CPU has native bf16
    from netadjust.train import cpu_has_fast_bf16

    assert config["fur"]["bf16"] is cpu_has_fast_bf16()
    assert config["provenance"]["torch"] and len(config["provenance"]["dataset_sha256"]) == 64
    assert [record["iteration"] for record in history] == [0, 1]
    names = list(final["original_widths"])
    for record in history:
        assert list(record["fur"]) == names
        assert set(record["drop_rates"]) == set(names)
        assert len(record["grown"]) == len(record["shrunk"]) == record["k"] == 3
        assert {"loss", "top1", "top5"} <= set(record["val"]) and {"top1", "top5"} <= set(record["test"])
        assert set(record["seconds"]) == {"train", "fur", "adjust"}
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

    # the searched widths feed the cost and train commands
    cost = json.loads(
        netadjust(
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
    trained = netadjust(
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
    assert 0 <= result["test"]["top1"] <= result["test"]["top5"] <= 1
    assert result["data_sizes"] == {"train": 500, "test": 200}


def test_cost_json_contract():
    result = netadjust("cost", "resnet20", "--num-classes", 100, "--json")
    assert result.returncode == 0
    cost = json.loads(result.stdout)
    assert cost["macs"] == 40_556_800 and cost["params"] == 278_324 - 2752
    assert list(cost["widths"])[0] == "stage1.block0.conv1"


def test_spaces_lists_every_space():
    result = netadjust("spaces", "--json")
    rows = json.loads(result.stdout)
    assert {"resnet20", "resnet32", "resnet56", "resnet110", "plain20"} <= {r["space"] for r in rows}
    assert all(r["macs"] > 0 and r["params"] > 0 for r in rows)


def test_bad_input_gets_one_line_and_status_2(tmp_path):
    assert_user_error(netadjust("cost", "resnet21"), "resnet21", "6n+2")
    assert_user_error(netadjust("cost", "vgg11"), "vgg11", "resnet20")
    assert_user_error(netadjust("search", "--space", "vgg"), "vgg")
    assert_user_error(netadjust("search", "--dataset", "imagenet9"), "imagenet9")
    assert_user_error(netadjust("search", "--epochs", 0, "--data-dir", tmp_path), "--epochs")
    assert_user_error(netadjust("search", "--lr", -1), "--lr")
    assert_user_error(netadjust("search", "--epochs", "many"), "--epochs")
    assert_user_error(netadjust("search", "--data-dir", tmp_path / "absent"), "does not exist")
    assert_user_error(netadjust("search", "--data-dir", tmp_path), "not found", "--download")
    assert_user_error(netadjust("search", "--device", "cuda:7"), "cuda")
    bad = tmp_path / "w.json"
    bad.write_text("{not json")
    assert_user_error(netadjust("cost", "resnet20", "--widths", bad), "not JSON")
    bad.write_text(json.dumps({"stage1.block0.conv1": 3}))
    assert_user_error(netadjust("cost", "resnet20", "--widths", bad), "miss")
    assert_user_error(netadjust("cost", "resnet20", "--widths", tmp_path / "nope.json"), "does not exist")


def test_bad_search_settings_write_nothing(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = tmp_path / "run"
    base = ["search", "--dataset", "mnist", "--data-dir", data, "--out", out, *TINY]
    assert_user_error(netadjust(*base, "--k", 12), "--k")
    assert_user_error(netadjust(*base, "--repeats", 0), "--repeats")
    assert_user_error(netadjust(*base, "--drop-rate", 1.5), "--drop-rate")
    assert_user_error(netadjust(*base, "--min-width", 50), "budget")
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_is_refused(tmp_path, fashion_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = netadjust("search", "--data-dir", fashion_dir, "--out", blocker / "run", *TINY)
    assert_user_error(result, "cannot write", "--out")
    assert blocker.read_text() == "x"


def test_search_refuses_a_directory_that_holds_a_run(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = tmp_path / "run"
    out.mkdir()
    (out / "final.json").write_text("{}")
    result = netadjust("search", "--dataset", "mnist", "--data-dir", data, "--out", out, *TINY)
    assert_user_error(result, "holds files of a search", "--force")
    assert (out / "final.json").read_text() == "{}"


def test_help_works():
    result = netadjust("search", "--help")
    assert result.returncode == 0 and "--iterations" in result.stdout


def test_a_params_budget_holds_params_while_macs_move(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=500, n_test=60)
    out = tmp_path / "run"
    args = ["--dataset", "mnist", "--data-dir", data, "--iterations", 2, "--k", 3, "--adjust-rate", 0.5]
    result = netadjust("search", "--budget", "params", "--out", out, *args, *TINY)
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

    printed = json.loads(netadjust("cost", "resnet20", "--budget", "params", "--json").stdout)
    assert printed["budget"] == {"measure": "params", "value": printed["params"]}
    assert "budget" not in json.loads(netadjust("cost", "resnet20", "--json").stdout)


def test_the_paper_preset_follows_the_dataset():
    from netadjust.cli import build_parser, search_config

    def config(*flags):
        return search_config(build_parser().parse_args(["search", "--preset", "paper", *flags]))

    cifar = config()
    assert (cifar.model.space, cifar.data.dataset, cifar.recipe.epochs) == ("resnet20", "cifar100", 200)
    assert (cifar.recipe.lr, cifar.recipe.batch_size, cifar.fur.base_rate) == (0.15, 128, 0.05)
    assert (cifar.rule.k0, cifar.rule.rate, cifar.rule.rate_decay, cifar.recipe.label_smoothing) == (
        6,
        0.15,
        0.01,
        0,
    )
    imagenet = config("--dataset", "imagenet")
    assert (imagenet.model.space, imagenet.recipe.epochs, imagenet.iterations) == ("resnet18", 10, 10)
    assert (imagenet.recipe.lr, imagenet.recipe.batch_size, imagenet.recipe.weight_decay) == (0.2, 64, 1e-5)
    assert (imagenet.fur.base_rate, imagenet.recipe.label_smoothing) == (0.2, 0.1)
    mine = config("--dataset", "imagenet", "--space", "mobilenetv2", "--lr", "0.05", "--label-smoothing", "0")
    assert (mine.model.space, mine.recipe.lr, mine.recipe.label_smoothing) == ("mobilenetv2", 0.05, 0.0)
    help_text = build_parser()._subparsers._group_actions[0].choices["search"].format_help()
    assert "label smoothing 0.1" in help_text and "lr 0.2 at batch 64" in help_text
