"""Random argument vectors and random bytes as dataset files never end in a traceback."""

import contextlib
import gzip
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_cifar, write_idx, write_mnist_like
from netadjust.cli import main

FLAGS = [
    "--space",
    "--dataset",
    "--epochs",
    "--lr",
    "--k",
    "--repeats",
    "--min-width",
    "--drop-rate",
    "--width-mult",
    "--device",
    "--batch-size",
    "--widths",
    "--padding",
    "--iterations",
    "--train-limit",
    "--image-size",
    "--num-classes",
    "--precision",
    "--json",
    "--preset",
    "--dataset",
    "--workers",
    "--nope",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "resnet20",
            "plain20",
            "resnet21",
            "mobilenetv2-small",
            "pyramidnet20",
            "mnasnet",
            "imagenet",
            "fashion-mnist",
            "cifar10",
            "mnist",
            "cuda",
            "cpu",
            "max",
            "local",
            "bf16",
            "paper",
            "quick",
            "",
            "-1",
            "0",
            "nan",
            "inf",
            "1e9",
            "/nonexistent",
            "{}",
        ]
    ),
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=8),
)


def run(argv: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:  # --help
            code = exit.code
    return code, stderr.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["search", "train", "cost", "spaces", "bogus"]),
    pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=5),
)
def test_random_argument_vectors(tmp_path, command, pairs):
    argv = [command] + [token for pair in pairs for token in pair]
    if command in ("search", "train"):
        argv += ["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]  # fails fast
    if command == "cost" and pairs and pairs[0][0] != "--space":
        argv.insert(1, "resnet20")
    code, stderr = run(argv)
    assert code in (0, 2), (argv, code, stderr)
    assert "Traceback" not in stderr
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1, stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=300), which=st.integers(0, 3), compress=st.booleans())
def test_random_bytes_as_idx_files(tmp_path, junk, which, compress):
    rng = np.random.default_rng(0)
    names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    folder = tmp_path / f"idx-{which}-{compress}-{len(junk)}"
    folder.mkdir(exist_ok=True)
    write_idx(folder / names[0], rng.integers(0, 256, (8, 28, 28), dtype=np.uint8))
    write_idx(folder / names[1], rng.integers(0, 10, 8, dtype=np.uint8))
    write_idx(folder / names[2], rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(folder / names[3], rng.integers(0, 10, 4, dtype=np.uint8))
    (folder / names[which]).write_bytes(gzip.compress(junk) if compress else junk)
    code, stderr = run(
        [
            "search",
            "--dataset",
            "mnist",
            "--data-dir",
            str(folder),
            "--out",
            str(tmp_path / "o"),
            "--epochs",
            "1",
            "--iterations",
            "1",
            "--width-mult",
            "0.25",
            "--repeats",
            "1",
            "--val-fraction",
            "0.5",
        ]
    )
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda v: pickle.dumps(v),
            st.recursive(
                st.none() | st.integers() | st.binary(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(st.binary(max_size=6), inner, max_size=3)
                ),
                max_leaves=6,
            ),
        ),
    )
)
def test_random_bytes_as_cifar_batches(tmp_path, junk):
    folder = tmp_path / f"cifar-{abs(hash(junk))}"
    write_cifar(folder, "cifar10", per_batch=2)
    (folder / "cifar-10-batches-py" / "data_batch_2").write_bytes(junk)
    code, stderr = run(
        [
            "train",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(folder),
            "--out",
            str(tmp_path / "o.json"),
            "--epochs",
            "1",
        ]
    )
    assert code == 2 and "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real finished search, small enough to make in seconds."""
    root = tmp_path_factory.mktemp("fuzz-run")
    data = write_mnist_like(root / "data", n_train=120, n_test=40)
    code, stderr = run(
        ["search", "--dataset", "mnist", "--data-dir", str(data), "--width-mult", "0.25", "--epochs", "1"]
        + ["--iterations", "1", "--repeats", "1", "--k", "1", "--out", str(root / "run")]
    )
    assert code == 0, stderr
    return root / "run"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["config.json", "history.jsonl", "final.json"]),
    damage=st.one_of(
        st.binary(max_size=60),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        st.integers(0, 40),  # drop this key (modulo the number of keys) of the file's object
    ),
    command=st.sampled_from(["report", "export"]),
)
def test_damaged_run_directories(tiny_run, tmp_path_factory, name, damage, command):
    copy = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(tiny_run, copy)
    path = copy / name
    if isinstance(damage, int):
        text = path.read_text()
        value = json.loads(text.splitlines()[0] if name.endswith(".jsonl") else text)
        del value[sorted(value)[damage % len(value)]]
        damage = json.dumps(value).encode()
    path.write_bytes(damage)
    argv = [command, str(copy)] + (["--out", str(copy / "export")] if command == "export" else [])
    code, stderr = run(argv)
    assert code in (0, 2), (argv, code, stderr)
    assert "Traceback" not in stderr
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1, stderr
