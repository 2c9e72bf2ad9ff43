"""What a newcomer met on the first hour (issue 47): an exported widths file that must
rebuild the searched network, a resume that says what it ignores and can extend a search,
a closed output pipe, and a dry run that refuses what the run would."""

import json
import subprocess
import sys

import pytest

import netadjust
from conftest import in_process, write_mnist_like
from conftest import netadjust as run_netadjust
from test_cli import assert_user_error

# a search that moves widths at x0.5 (stem 8 channels, not the default multiplier's 16)
SMALL = [
    "--dataset", "mnist", "--width-mult", 0.5, "--epochs", 1, "--train-limit", 150, "--val-limit", 50,
    "--test-limit", 40, "--repeats", 1, "--batch-size", 50, "--k", 3, "--adjust-rate", 0.5,
]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-iteration search on a small MNIST-format dataset: (run, data folder)."""
    root = tmp_path_factory.mktemp("newcomer")
    data = write_mnist_like(root / "data", n_train=200, n_test=40)
    run = root / "run"
    result = in_process("search", *SMALL, "--data-dir", data, "--iterations", 1, "--out", run)
    assert result.returncode == 0, result.stderr
    return run, data


def test_an_exported_widths_file_rebuilds_exactly_the_searched_network(finished, tmp_path):
    run, data = finished
    final = json.loads((run / "final.json").read_text())
    assert final["widths"] != final["original_widths"] and final["model"]["width_mult"] == 0.5
    exported = in_process("export", run, "--out", tmp_path / "exp")
    assert exported.returncode == 0, exported.stderr
    widths_file = tmp_path / "exp" / "widths.json"
    for given in (widths_file, run / "final.json"):
        cost = json.loads(in_process("cost", "resnet20", "--widths", given, "--json").stdout)
        assert (cost["macs"], cost["params"]) == (final["macs"], final["params"]), given
        model = netadjust.build("resnet20", given)
        assert sum(p.numel() for p in model.parameters()) == final["params"]
        assert netadjust.cost("resnet20", given).macs == final["macs"]
        out = tmp_path / f"trained-{given.name}"
        trained = in_process(
            "train", "--widths", given, "--dataset", "mnist", "--data-dir", data, "--epochs", 1,
            "--train-limit", 50, "--test-limit", 20, "--out", out,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        result = json.loads(out.read_text())
        assert (result["macs"], result["params"]) == (final["macs"], final["params"])
        assert "width multiplier 0.5" in trained.stdout
    # the bare widths at the default multiplier are another network: what the file must prevent
    assert netadjust.cost("resnet20", final["widths"], in_channels=1, image_size=28).params != final["params"]
    # a multiplier set on purpose builds the other network; a file changed by hand is refused
    wider = json.loads(
        in_process("cost", "resnet20", "--widths", widths_file, "--width-mult", 1, "--json").stdout
    )
    assert wider["model"]["width_mult"] == 1.0 and wider["macs"] > final["macs"]
    record = json.loads(widths_file.read_text())
    record["model"]["width_mult"] = 1.0
    (tmp_path / "edited.json").write_text(json.dumps(record))
    refused = in_process("cost", "resnet20", "--widths", tmp_path / "edited.json")
    assert_user_error(refused, "records a network of", f"{final['macs']:,} MACs")
    refused = in_process(
        "train", "--widths", tmp_path / "edited.json", "--data-dir", data, "--dataset", "mnist",
        "--out", tmp_path / "never.json",
    )  # fmt: skip
    assert_user_error(refused, "records a network of")
    assert not (tmp_path / "never.json").exists()
    with pytest.raises(netadjust.errors.UserError, match="records space 'resnet20'"):
        netadjust.build("plain20", widths_file)


def test_resume_says_what_it_ignores_and_extends_a_finished_search(finished, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    before = (run / "final.json").read_text()
    # a finished search: nothing to resume, and the advice is about this run, not an --out
    refused = in_process("search", "--resume", run, "--epochs", 5)
    assert_user_error(refused, "finished search of 1 iteration", f"--resume {run} --iterations N")
    assert (run / "final.json").read_text() == before
    extended = in_process("search", "--resume", run, "--iterations", 2, "--epochs", 5, "--lr", 0.3)
    assert extended.returncode == 0, extended.stderr
    ignored = next(line for line in extended.stderr.splitlines() if "ignores" in line)
    assert "--epochs" in ignored and "--lr" in ignored and "--iterations" not in ignored.split("(")[0]
    assert "1 iteration set, now 2" in extended.stderr and "final-1.json" in extended.stderr
    assert (run / "final-1.json").read_text() == before
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    config = json.loads((run / "config.json").read_text())
    assert [record["iteration"] for record in history] == [0, 1] and config["iterations"] == 2
    assert history[1]["train"]["epoch"] == 1  # trained for the recorded epochs, not --epochs 5
    # the default search inherits: the finished search kept its last weights for this
    assert "iter 2/2: starts from iteration 1's weights" in extended.stdout
    assert config["recipe"]["epochs"] == 1 and config["recipe"]["lr"] != 0.3  # ignored, as said
    final = json.loads((run / "final.json").read_text())
    assert final["iterations"] == 2 and final["widths"] == history[1]["next_widths"]
    assert_user_error(in_process("search", "--resume", run, "--iterations", 1), "has run 2")


def test_a_closed_output_pipe_ends_the_search_quietly_and_it_resumes(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=200, n_test=40)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "netadjust", "search", *map(str, SMALL), "--data-dir", str(data)]
    process = subprocess.Popen(
        [*command, "--iterations", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().startswith("search:")  # `| head -1`
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert (out / "config.json").exists() and not (out / "final.json").exists()
    resumed = run_netadjust("search", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "final.json").read_text())["iterations"] == 2


def test_a_dry_run_refuses_missing_data_as_the_run_would(tmp_path):
    assert_user_error(in_process("search", "--dataset", "cifar10", "--dry-run"), "no default data folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(
        in_process("search", "--dataset", "cifar10", "--data-dir", empty, "--dry-run"),
        "cifar-10-python.tar.gz",
    )
    assert_user_error(
        in_process("search", "--dataset", "mnist", "--data-dir", empty, "--dry-run"), "not found in"
    )
    assert_user_error(
        in_process("search", "--dataset", "mnist", "--data-dir", tmp_path / "absent", "--dry-run"),
        "does not exist",
    )
    data = write_mnist_like(tmp_path / "data", n_train=10, n_test=10)
    planned = in_process("search", "--dataset", "mnist", "--data-dir", data, "--dry-run")
    assert planned.returncode == 0 and json.loads(planned.stdout)["data"]["dataset"] == "mnist"


def test_an_nn_sequential_names_its_widths_by_layer_kind_and_stops_when_nothing_can_move(tmp_path):
    (tmp_path / "two.py").write_text(
        "from torch import nn\n\ndef net(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))\n"
    )
    inspected = in_process("inspect", "--model", tmp_path / "two.py:net", "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert list(json.loads(inspected.stdout)["widths"]) == ["conv0", "conv3"]  # not bare "0", "3"
    data = write_mnist_like(tmp_path / "data", n_train=120, n_test=20)
    out = tmp_path / "run"
    # two widths: k is capped at 1, and a decay of 0.5 makes it 1, 0, 0
    result = in_process(
        "search", "--model", tmp_path / "two.py:net", "--dataset", "mnist", "--data-dir", data,
        "--epochs", 1, "--repeats", 1, "--batch-size", 40, "--iterations", 3, "--k-decay", 0.5, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "iter 2/3: k is 0 from here on" in result.stdout and "ends after 1 iteration" in result.stdout
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert (
        len(history) == 1 and len(history[0]["grown"]) == 1 and history[0]["grown"][0] in ("conv0", "conv3")
    )
    final = json.loads((out / "final.json").read_text())
    assert final["iterations"] == 1 and final["widths"] == history[0]["next_widths"]
    refused = in_process("search", "--resume", out)
    assert_user_error(refused, "finished search of 3 iterations")


def test_a_misspelled_width_name_is_answered_with_the_closest_one(tmp_path):
    from netadjust.spaces import ModelSpec, base_widths

    widths = base_widths(ModelSpec("resnet20"))
    widths["stage3.blok2.conv2"] = widths.pop("stage3.block2.conv2")
    (tmp_path / "w.json").write_text(json.dumps(widths))
    refused = in_process("cost", "resnet20", "--widths", tmp_path / "w.json")
    assert_user_error(refused, "did you mean 'stage3.block2.conv2' for 'stage3.blok2.conv2'?")
