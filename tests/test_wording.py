import os
import sys
from pathlib import Path

from netadjust.cli import main
from netadjust.wording import invocation, plural


def test_counts_of_one_take_the_singular():
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]


def test_a_widths_file_missing_one_layer_says_layer(tmp_path, capsys):
    from netadjust.spaces import ModelSpec, base_widths

    widths = base_widths(ModelSpec())
    widths.pop("stage3.block2.conv2")
    (tmp_path / "w.json").write_text(str(widths).replace("'", '"'))
    assert main(["cost", "resnet20", "--widths", str(tmp_path / "w.json")]) == 2
    assert "widths miss 1 layer of space" in capsys.readouterr().err


def test_suggested_commands_are_runnable_as_typed(monkeypatch):
    script = Path(sys.executable).parent / "netadjust"  # the installed entry point
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.chdir(script.parent.parent.parent)  # where `make` made .venv
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the virtual environment not activated
    assert invocation() == os.path.relpath(script)  # .venv/bin/netadjust
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert invocation() == "netadjust"
    monkeypatch.setattr(sys, "argv", ["/somewhere/__main__.py"])  # python -m netadjust (--nproc's workers)
    assert invocation() == "netadjust"  # inside the activated environment: its own netadjust
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert invocation() == f"{sys.executable} -m netadjust"


def test_counts_and_durations_read_as_words():
    from netadjust.compare import seed_range
    from netadjust.outcome import duration

    assert [duration(s) for s in (0.6, 1.2, 45, 600)] == ["1 second", "1 second", "45 seconds", "10 minutes"]
    assert (seed_range([0]), seed_range([0, 1, 2])) == ("seed 0", "seeds 0-2")
