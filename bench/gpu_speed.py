"""GPU throughput against the device's peak, in one run (issue #21's figures).

Prints: the bf16 matrix-multiply peak it measures (TFLOP/s); ResNet-20 x1 and ResNet-56
training images/s and achieved TFLOP/s (3 x forward MACs x 2 FLOPs per image) for one epoch
of 50,000 32x32 images with the project's pipeline at batch 128 (the paper's) and 512, and
with a plain per-sample DataLoader + fp32 loop at 128; FUR seconds for ResNet-20 on 10,000
images at T = 5 (fast path and reference); and the quick search's wall time. The images
are random uint8 (speed does not depend on their content), written in the real file
formats where a command reads files, so the device machine needs no dataset.

CUDA only: on a machine without CUDA it says so and exits 0. ``--device cpu --small``
runs every step at toy sizes, to test the script itself before a GPU is lent.

    python bench/gpu_speed.py [--device cuda] [--small]
"""

from __future__ import annotations

import argparse
import gzip
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from netadjust.config import FurConfig, Recipe
from netadjust.cost import model_cost, sensitivities
from netadjust.data import dataset_info
from netadjust.data.datasets import ImageSet
from netadjust.fur import estimate_fur
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import fit
from train_speed import PerSampleDataset, conventional_epoch


def matmul_peak(device: torch.device, n: int, seconds: float = 1.0) -> float:
    """TFLOP/s of an n x n x n bf16 matrix product."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    synchronize(device)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    synchronize(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e12


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_images(n: int, channels: int, size: int, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)
    return ImageSet(images, torch.randint(0, 10, (n,), generator=generator))


def write_fashion_like(folder: Path, train: int, test: int) -> Path:
    """Random images in Fashion-MNIST's IDX files (gzipped, as distributed)."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, shape in (("images-idx3", (n, 28, 28)), ("labels-idx1", (n,))):
            high = 256 if kind.startswith("images") else 10
            array = rng.integers(0, high, shape, dtype=np.uint8)
            header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="toy sizes: a test of the script")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench/gpu_speed.py: no CUDA device here; nothing measured "
            "(--device cpu --small tests the script)"
        )
        return
    device = torch.device(args.device)
    images, fur_images, peak_n = (2_000, 500, 512) if args.small else (50_000, 10_000, 8192)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    driver = torch.version.cuda if device.type == "cuda" else "-"
    print(f"{name}, torch {torch.__version__}, CUDA {driver}, Python {platform.python_version()}")
    peak = matmul_peak(device, peak_n)
    print(f"bf16 matmul peak: {peak:.1f} TFLOP/s")

    info = dataset_info("cifar10")
    train = random_images(images, 3, 32).to(device)
    for space in ("resnet20", "resnet56"):
        spec = ModelSpec(space, 10, 3, 32)
        flop = 3 * model_cost(spec).macs * 2
        for batch in (128, 512):
            recipe = Recipe(epochs=1, batch_size=batch, lr=0.1 * batch / 128)
            fit(build(spec).to(device), train.subset(slice(0, 4 * batch)), info, recipe, seed=0)  # warm-up
            seconds = fit(build(spec).to(device), train, info, recipe, seed=0)["seconds"]
            rate = len(train) / seconds
            print(
                f"{space} project pipeline, batch {batch}: one epoch of {len(train)} images in "
                f"{seconds:.2f} s, {rate:,.0f} images/s, {rate * flop / 1e12:.2f} TFLOP/s "
                f"({rate * flop / 1e12 / peak:.1%} of peak)"
            )
        cpu_train = random_images(images // 10, 3, 32)
        model = build(spec).to(device)
        dataset = PerSampleDataset(cpu_train.images, cpu_train.labels, info)
        seconds = conventional_epoch(model, dataset, 128, 0.1, device=device)
        rate = len(dataset) / seconds
        print(
            f"{space} per-sample DataLoader + fp32, batch 128 ({len(dataset)} images): {rate:,.0f} images/s, "
            f"{rate * flop / 1e12:.2f} TFLOP/s"
        )

    spec = ModelSpec("resnet20", 10, 3, 32)
    model = build(spec).to(device).eval()
    val = random_images(fur_images, 3, 32, seed=1).to(device)
    f = sensitivities(spec, base_widths(spec))
    for method in ("fast", "reference"):
        config = FurConfig(repeats=5, method=method)
        estimate_fur(model, val.subset(slice(0, 256)), info, f, config, seed=0)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        estimate_fur(model, val, info, f, config, seed=0, batch_size=1024)
        synchronize(device)
        print(f"FUR, ResNet-20, {len(val)} images, T = 5, {method} path: {time.perf_counter() - start:.2f} s")

    with tempfile.TemporaryDirectory() as folder:
        data = write_fashion_like(
            Path(folder), 6_000 if args.small else 60_000, 1_000 if args.small else 10_000
        )
        limits = ["--train-limit", "2000", "--epochs", "1", "--iterations", "1"] if args.small else []
        command = [
            sys.executable, "-m", "netadjust", "search", "--preset", "quick", "--dataset", "fashion-mnist",
            "--data-dir", str(data), "--device", args.device, "--out", str(Path(folder) / "run"), *limits,
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        cut = " (cut short by --small)" if args.small else ""
        print(f"quick search{cut}: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
