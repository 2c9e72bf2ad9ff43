"""Several processes with PyTorch's own engine: real torchrun processes, gloo on the CPU."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import netadjust as cli
from conftest import write_mnist_like
from dist_worker import STEP_IMAGES, STEP_RECIPE, fur_job, step_job
from netadjust.config import DataConfig
from netadjust.data import prepare_data
from netadjust.distributed import SINGLE
from netadjust.export import save_weights
from netadjust.rundir import read_run
from netadjust.spaces import ModelSpec, base_widths
from netadjust.train import Recipe, train_network
from test_cli import assert_user_error

WORKER = Path(__file__).with_name("dist_worker.py")


def torchrun(*args, nproc=2):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        + [str(WORKER), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_mnist_like(tmp_path_factory.mktemp("dist") / "data", n_train=600, n_test=100)


def test_fur_of_two_processes_equals_one(data_dir, tmp_path):
    spec = ModelSpec(width_mult=0.25, in_channels=1, image_size=28)
    data = prepare_data(DataConfig(dataset="mnist", data_dir=str(data_dir)), 0, torch.device("cpu"), True)
    recipe = Recipe(epochs=2, batch_size=64, precision="fp32")
    model, _ = train_network(spec, base_widths(spec), data, recipe, seed=0, label="fit")
    save_weights(model, spec, base_widths(spec), tmp_path / "trained.safetensors")

    fur_job(str(data_dir), str(tmp_path / "trained.safetensors"), tmp_path / "one.json", SINGLE)
    torchrun("fur", data_dir, tmp_path / "trained.safetensors", tmp_path / "two.json")
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(data.val) % 2 == 0 and len(one["fur"]) == 18
    for name, value in one["fur"].items():
        assert two["fur"][name] == pytest.approx(value, rel=1e-5), name
    for half in range(2):
        for name, value in one["halves"][half].items():
            assert two["halves"][half][name] == pytest.approx(value, rel=1e-5), name
    for name, value in one["second_order"].items():
        assert two["second_order"][name] == pytest.approx(value, rel=1e-5), name
    assert two["val"] == pytest.approx(one["val"], rel=1e-6)


def test_one_step_on_two_half_batches_with_sync_bn_equals_one_full_batch(data_dir, tmp_path):
    step_job(str(data_dir), str(tmp_path / "one.pt"), tmp_path / "one.json", SINGLE)
    torchrun("step", data_dir, tmp_path / "two.pt", tmp_path / "two.json")
    assert json.loads((tmp_path / "two.json").read_text()) == {"processes": 2}
    one, two = (torch.load(tmp_path / f"{n}.pt") for n in ("one", "two"))
    assert STEP_RECIPE["sync_bn"] and STEP_IMAGES % 2 == 0
    moved = 0
    for name, value in one.items():
        assert torch.allclose(two[name].double(), value.double(), rtol=1e-5, atol=1e-5), name
        moved += name.endswith("running_mean") and bool(value.abs().sum() > 0)
    assert moved > 0  # the step really ran: batch statistics entered the running means

    # without synchronised batch norm each process normalises by its own half: not equal
    torchrun("step-unsynced", data_dir, tmp_path / "unsynced.pt", tmp_path / "unsynced.json")
    unsynced = torch.load(tmp_path / "unsynced.pt")
    assert not torch.allclose(unsynced["stem.conv.weight"], one["stem.conv.weight"], rtol=1e-3, atol=1e-4)


def search_args(out, *extra):
    return [
        "search",
        "--nproc",
        2,
        "--width-mult",
        0.25,
        "--train-limit",
        400,
        "--val-limit",
        120,
        "--test-limit",
        100,
        "--epochs",
        2,
        "--iterations",
        1,
        "--repeats",
        2,
        "--k",
        2,
        "--out",
        out,
        *extra,
    ]


def test_two_process_search_writes_a_run_and_resumes_exactly(data_dir, tmp_path):
    # a second iteration that inherits the first's weights: every process carries the same
    common = ["--dataset", "mnist", "--data-dir", data_dir, "--iterations", 2, "--inherit", 1]
    whole = cli(*search_args(tmp_path / "whole", *common))
    assert whole.returncode == 0, whole.stderr
    assert "2 processes, batch 128 per process = 256" in whole.stdout
    assert whole.stdout.count("search: resnet20") == 1  # only rank 0 prints
    run = read_run(tmp_path / "whole")
    assert run.settings["processes"] == 2 and len(run.history) == 2 and run.final is not None
    assert "iter 2/2: starts from iteration 1's weights" in whole.stdout
    assert (tmp_path / "whole" / "checkpoint.pt").exists()  # an inheriting search keeps it to be extended

    # stop the launcher with SIGTERM once the first epoch's checkpoint exists, then resume
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "netadjust", *map(str, search_args(out, *common))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert f"--resume {out} --nproc 2" in stderr and stderr.count("interrupted") == 1

    assert_user_error(cli("search", "--resume", out), "differing: processes")  # one process
    resumed = cli("search", "--resume", out, "--nproc", 2)
    assert resumed.returncode == 0, resumed.stderr
    finished = read_run(out)
    assert finished.final == run.final
    for a, b in zip(finished.history, run.history, strict=True):
        assert dataclasses.replace(a, seconds={}) == dataclasses.replace(b, seconds={})


def test_a_process_that_dies_stops_the_others_with_a_message(data_dir, tmp_path):
    out = tmp_path / "run"
    args = search_args(out, "--dataset", "mnist", "--data-dir", data_dir, "--dist-timeout", 20)
    args[args.index("--epochs") + 1] = 50
    launcher = subprocess.Popen(
        [sys.executable, "-m", "netadjust", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    assert len(children) == 2
    os.kill(int(children[-1]), signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)  # not forever
    assert launcher.returncode == 1, stderr
    # the survivor notices first (lost contact), or the launcher stops it first and says so
    assert "lost contact with the others" in stderr or "was killed by signal 9" in stderr, stderr
    assert "--nproc 2" in stderr
    assert "Traceback" not in stderr
