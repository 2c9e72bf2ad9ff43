"""Shared helpers: small dataset files written in the real formats."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI (CI=true) replays the same examples on every run, so a landing never hinges on luck;
# locally each run explores new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# With pytest-xdist's workers (make test runs two), every worker and every process its tests
# start computes on one thread: two torch processes of two threads each on two cores slow
# each other many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def netadjust(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """The command line as a real subprocess: for what depends on the process itself."""
    return subprocess.run(
        [sys.executable, "-m", "netadjust", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def in_process(*args, cwd=None) -> subprocess.CompletedProcess:
    """The command line's own main() in this interpreter, its output captured: what a
    subprocess would return, without paying for a new interpreter and torch's import each
    time. The entry point itself, signals, kills and environments run as real subprocesses
    (``netadjust`` above)."""
    from netadjust.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        contextlib.chdir(cwd or os.getcwd()),
    ):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's --help and its own usage errors
            code = stop.code if isinstance(stop.code, int) else 2
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``compress``."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist_like(
    directory: Path, n_train: int = 64, n_test: int = 32, compress: bool = True, seed: int = 0
) -> Path:
    """A tiny MNIST-format dataset: random 28x28 images, labels 0..9."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            directory / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            compress,
        )
        write_idx(
            directory / f"{prefix}-labels-idx1-ubyte",
            rng.integers(0, 10, n, dtype=np.uint8),
            compress,
        )
    return directory


def cifar_batch(n: int, classes: int, label_key: bytes, rng) -> bytes:
    batch = {
        b"batch_label": b"test batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, classes, n).tolist(),
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar(
    directory: Path, dataset: str, per_batch: int = 8, archive: bool = False, seed: int = 0
) -> Path:
    """A tiny CIFAR python-version dataset, extracted or as the official .tar.gz."""
    rng = np.random.default_rng(seed)
    if dataset == "cifar10":
        folder, members, key, classes = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            b"labels",
            10,
        )
        archive_name = "cifar-10-python.tar.gz"
    else:
        folder, members, key, classes = "cifar-100-python", ["train", "test"], b"fine_labels", 100
        archive_name = "cifar-100-python.tar.gz"
    source = directory / folder
    source.mkdir(parents=True, exist_ok=True)
    for member in members:
        (source / member).write_bytes(cifar_batch(per_batch, classes, key, rng))
    if archive:
        with tarfile.open(directory / archive_name, "w:gz") as tar:
            tar.add(source, arcname=folder)
        for member in members:
            (source / member).unlink()
        source.rmdir()
    return directory


@pytest.fixture
def fashion_dir() -> Path:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return FASHION_DIR
