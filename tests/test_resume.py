"""A search killed at any moment continues to the same result: real processes, real signals."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import in_process, netadjust
from test_cli import assert_user_error

SEARCH = (
    "--width-mult 0.25 --train-limit 800 --val-limit 200 --test-limit 100 --epochs 3 "
    "--repeats 2 --iterations 2 --k 2 --batch-size 100 --inherit 0"
).split()  # every iteration from scratch (the paper's); INHERIT below: the default's carry


def start(out: Path, fashion_dir: Path, *extra) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "netadjust",
        "search",
        "--data-dir",
        fashion_dir,
        "--out",
        out,
        *SEARCH,
        *extra,
    ]
    return subprocess.Popen(
        [str(a) for a in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# a search that kills itself (SIGKILL, no clean-up) at a point named in the code: where the
# test means it to die, however fast the machine runs, with no polling race
KILLED_AT = {
    # as iteration 0's FUR begins: its training checkpointed, nothing recorded yet
    "fur": "search.estimate_fur = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
    # once iteration 1 (an inheriting one) has checkpointed its first epoch of training
    "inheriting training": (
        "saving = search.save_checkpoint\n"
        "def save(out, iteration, widths, phase, state):\n"
        "    saving(out, iteration, widths, phase, state)\n"
        "    if iteration == 1 and phase == 'train':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "search.save_checkpoint = save"
    ),
}


def killed_at(point: str, out: Path, fashion_dir: Path, *extra) -> subprocess.CompletedProcess:
    arguments = ["search", "--data-dir", str(fashion_dir), "--out", str(out), *SEARCH, *extra]
    code = (
        "import importlib, os, signal\n"
        "search = importlib.import_module('netadjust.search')\n"
        f"{KILLED_AT[point]}\n"
        "from netadjust.cli import main\n"
        f"main({arguments!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def wait_for_checkpoint(out: Path, process: subprocess.Popen, epochs: int, iteration: int = 0) -> dict:
    """Poll until ``iteration``'s checkpoint holds ``epochs`` epochs (writes are atomic)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        path = out / "checkpoint.pt"
        if path.exists():
            saved = torch.load(path, weights_only=True)
            if saved["iteration"] == iteration and len(saved["train"]["history"]) >= epochs:
                return saved
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def results(out: Path) -> tuple[dict, list[dict]]:
    final = json.loads((out / "final.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return final, history


def whole_search(tmp_path_factory, *extra):
    fashion = Path("/usr/share/datasets/fashion-mnist")
    if not (fashion / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed")
    out = tmp_path_factory.mktemp("whole") / "run"
    process = start(out, fashion, *extra)
    assert process.wait(timeout=300) == 0, process.communicate()
    return results(out)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return whole_search(tmp_path_factory)


# the second iteration starts from the first's weights and trains 2 epochs; widths on a grid of 2
INHERIT = ("--inherit", "2", "--round-to", "2")


@pytest.fixture(scope="module")
def uninterrupted_inheriting(tmp_path_factory):
    return whole_search(tmp_path_factory, *INHERIT)


def assert_same_search(out: Path, uninterrupted, inheriting: bool = False):
    final, history = results(out)
    final_ref, history_ref = uninterrupted
    assert final == final_ref
    # every recorded number equal, timings apart: widths, FUR, accuracies, losses, drop rates
    without_timings = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert without_timings(history) == without_timings(history_ref)
    # the checkpoint goes when the search ends, but for an inheriting one (its extension needs it)
    assert (out / "checkpoint.pt").exists() == inheriting


def test_killed_during_training_resumes_to_the_same_result(tmp_path, fashion_dir, uninterrupted):
    out = tmp_path / "run"
    process = start(out, fashion_dir)
    wait_for_checkpoint(out, process, epochs=1)
    process.kill()  # SIGKILL: no chance to clean up
    process.wait()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(saved["train"]["history"]) < 3 and not (out / "history.jsonl").exists()
    assert saved["phase"] == "train"
    resumed = netadjust("search", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing the training" in resumed.stdout
    assert_same_search(out, uninterrupted)


def test_killed_during_fur_resumes_to_the_same_result_and_carries_the_weights_from_the_disk(
    tmp_path, fashion_dir, uninterrupted, uninterrupted_inheriting
):
    # an inheriting search: its first iteration trains as a from-scratch search's does
    final, history = uninterrupted_inheriting
    assert history[0]["val"] == uninterrupted[1][0]["val"]
    assert history[1]["train"]["epoch"] == 2 and uninterrupted[1][1]["train"]["epoch"] == 3
    assert all(width % 2 == 0 for width in final["widths"].values())
    out = tmp_path / "run"
    killed_at("fur", out, fashion_dir, *INHERIT)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["phase"] == "fur"
    assert not (out / "history.jsonl").exists()  # it died before iteration 0 was recorded
    # a plain re-run with the same settings continues too; the next iteration's carry reads
    # iteration 0's weights from the disk, not from the process that trained them
    resumed = netadjust("search", "--data-dir", fashion_dir, "--out", out, *SEARCH, *INHERIT)
    assert resumed.returncode == 0, resumed.stderr
    assert "iter 2/2: starts from iteration 1's weights" in resumed.stdout
    assert_same_search(out, uninterrupted_inheriting, inheriting=True)


def test_killed_during_an_inheriting_iterations_training_resumes_to_the_same_result(
    tmp_path, fashion_dir, uninterrupted_inheriting
):
    # the carried weights were trained on for an epoch when it died: the resume continues
    # that training from its checkpoint, not from a fresh carry
    out = tmp_path / "run"
    killed_at("inheriting training", out, fashion_dir, *INHERIT)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (saved["iteration"], saved["phase"], len(saved["train"]["history"])) == (1, "train", 1)
    resumed = netadjust("search", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "iter 2/2: continuing the training from its checkpoint after epoch 1" in resumed.stdout
    assert_same_search(out, uninterrupted_inheriting, inheriting=True)


# both signals end in the same clause, which keeps the checkpoint; the resume is checked once
@pytest.mark.parametrize("signum, status, resume", [(signal.SIGTERM, 143, True), (signal.SIGINT, 130, False)])
def test_a_signal_stops_the_search_and_says_how_to_resume(
    tmp_path, fashion_dir, uninterrupted, signum, status, resume
):
    out = tmp_path / "run"
    process = start(out, fashion_dir)
    wait_for_checkpoint(out, process, epochs=1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status
    assert f"--resume {out}" in stderr and "Traceback" not in stderr
    assert (out / "checkpoint.pt").exists() and not (out / "final.json").exists()
    if resume:
        assert netadjust("search", "--resume", out).returncode == 0
        assert_same_search(out, uninterrupted)


def test_other_settings_or_a_finished_run_are_refused_unless_forced(tmp_path, fashion_dir):
    out = tmp_path / "run"
    quick = ["--data-dir", fashion_dir, "--out", out, *SEARCH, "--iterations", 1, "--epochs", 1]  # last wins
    assert in_process("search", *quick).returncode == 0
    before = (out / "final.json").read_text()
    assert_user_error(in_process("search", *quick), "finished search", "--force")
    refused = in_process("search", *quick, "--lr", 0.2)  # another than the default's
    assert_user_error(refused, "other settings", "recipe")
    assert (out / "final.json").read_text() == before
    forced = in_process("search", *quick, "--lr", 0.2, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / "config.json").read_text())["recipe"]["lr"] == 0.2
    absent = in_process("search", "--resume", tmp_path / "nothing")
    assert_user_error(absent, "no config.json")


def test_resume_ignores_the_worker_count_and_fills_settings_older_runs_lack(tmp_path):
    import dataclasses

    from netadjust.config import SearchConfig
    from netadjust.errors import UserError
    from netadjust.rundir import IterationRecord, completed_iterations

    settings = json.loads(json.dumps(dataclasses.asdict(SearchConfig())))
    older = json.loads(json.dumps(settings))
    del older["data"]["image_size"], older["data"]["workers"], older["inherit"]  # written before they existed
    (tmp_path / "config.json").write_text(json.dumps(older))
    done = IterationRecord(
        iteration=0, widths={}, macs=0, params=0, train={}, val={}, test={}, fur={}, fur_method="fast", k=0,
        fur_stability={}, grown=[], shrunk=[], next_widths={}, next_macs=0, seconds={},
    )  # fmt: skip
    (tmp_path / "history.jsonl").write_text(json.dumps(done.to_json()) + "\n")
    assert completed_iterations(tmp_path, settings, force=False) == [done]
    settings["data"]["workers"] = 0
    assert completed_iterations(tmp_path, settings, force=False) == [done]
    settings["data"]["image_size"] = 64
    with pytest.raises(UserError, match="differing: data"):
        completed_iterations(tmp_path, settings, force=False)
