"""GPU throughput against the device's peak, in one run (issue #21's figures).

Prints, and writes as JSON (``--json``) after every step so that a run cut short keeps
what it measured:

- the bf16 matrix-multiply peak it measures (TFLOP/s);
- ResNet-20 x1 training images/s and achieved TFLOP/s (3 x forward MACs x 2 FLOPs per
  image) with the project's pipeline (``fit``) over a second epoch of 50,000 32x32 images
  (the first warms up; the channel-dropout regulariser is off in epoch 1 and on in epoch 2),
  for batch sizes 128 (the paper's) to 2048, compiled by ``torch.compile`` with and without
  CUDA graphs (the epochs before the last pay for compiling), with and without cuDNN's
  autotuner, bf16 vs fp32, NHWC vs NCHW, the regulariser off, fused SGD, and a searched
  network's odd widths;
- FUR seconds for ResNet-20 on 10,000 images at T = 5, first call (meeting every shape,
  as a search's iteration does) and second: the fast path at several batch sizes, in
  bf16, without the control variate, the reference path and the second-order estimate;
- the quick search's wall time, and one iteration of the fmnist search at 30 epochs and
  batch 512 (on Fashion-MNIST's files with ``--data-dir``, else on random images written
  in its file format), and a profile of the training step;
- ResNet-56 the same way, and a plain per-sample DataLoader + fp32 loop for both;
- with ``--data-dir``: test accuracy after 5 epochs at batch 128 (lr 0.1) against batch
  1024 (lr 0.8, the linear scaling rule, 1 warm-up epoch), 3 seeds each, then at other
  batch sizes and learning rates, 2 seeds each.

Steps run in that order while ``--budget`` seconds last. The images are random uint8 where
accuracy is not measured (speed does not depend on their content).

CUDA only: on a machine without CUDA it says so and exits 0. ``--device cpu --small``
runs every step at toy sizes, to test the script itself before a GPU is lent.

    python bench/gpu_speed.py [--device cuda] [--small] [--data-dir DIR] [--json FILE] [--budget S]
        [--steps "NAME,NAME"]   (names as printed, e.g. "resnet20 b128,fur fast b4096,quick search")
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from batch_accuracy import trained_top1
from netadjust.config import FurConfig, Recipe
from netadjust.cost import model_cost, sensitivities
from netadjust.data import dataset_info, load
from netadjust.data.datasets import ImageSet
from netadjust.fur import estimate_fur
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import fit
from train_speed import PerSampleDataset, conventional_epoch, searched_widths


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


@contextlib.contextmanager
def with_defaults(owner, name: str, **defaults):
    """``owner.name`` called with ``defaults`` while inside, e.g. ``fit``'s SGD with
    fused=True or its ``torch.compile`` with mode="reduce-overhead" (CUDA graphs)."""
    plain = getattr(owner, name)
    setattr(owner, name, functools.partial(plain, **defaults))
    try:
        yield
    finally:
        setattr(owner, name, plain)


def epoch_seconds(model, train, info, recipe: Recipe) -> list[float]:
    """Seconds of each epoch of ``fit`` (each ends with a host sync: the epoch's sums)."""
    marks = [time.perf_counter()]
    fit(model, train, info, recipe, seed=0, on_epoch=lambda record: marks.append(time.perf_counter()))
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


class Bench:
    """Steps run while the budget lasts; every figure is printed and saved at once."""

    def __init__(self, budget: float, json_path: Path | None, only: set[str] | None):
        self.budget, self.json_path, self.only = budget, json_path, only
        self.start = time.perf_counter()
        self.results: dict = {"steps_skipped": []}
        self.names: list[str] = []

    def step(self, name: str, work) -> None:
        self.names.append(name)
        if self.only is not None and name not in self.only:
            return
        if time.perf_counter() - self.start > self.budget:
            print(f"[{name}: skipped, over the {self.budget:.0f} s budget]", flush=True)
            self.results["steps_skipped"].append(name)
        else:
            try:
                work()
            except Exception as error:  # a figure that fails must not cost the others
                print(f"[{name}: failed: {type(error).__name__}: {error}]", flush=True)
                self.results.setdefault("failures", {})[name] = f"{type(error).__name__}: {error}"
        self.save()

    def record(self, key: str, value, line: str) -> None:
        self.results[key] = value
        print(line, flush=True)
        self.save()

    def unknown_steps(self) -> list[str]:
        """Names given to ``--steps`` that are no step of this script."""
        return sorted((self.only or set()) - set(self.names))

    def save(self) -> None:
        if self.json_path is not None:
            self.json_path.write_text(json.dumps(self.results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="toy sizes: a test of the script")
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST's IDX files: accuracy and a real search")
    parser.add_argument("--json", type=Path, help="write the figures here as they come")
    parser.add_argument("--budget", type=float, default=1e9, help="seconds; later steps are skipped")
    parser.add_argument(
        "--steps", help="comma-separated step names to run (default: all; no name holds a comma)"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench/gpu_speed.py: no CUDA device here; nothing measured "
            "(--device cpu --small tests the script)"
        )
        return
    device = torch.device(args.device)
    small = args.small
    bench = Bench(args.budget, args.json, set(args.steps.split(",")) if args.steps else None)
    images, fur_images, peak_n = (1_000, 300, 512) if small else (50_000, 10_000, 8192)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        cuda = f"CUDA {torch.version.cuda}, driver {driver}, cuDNN {torch.backends.cudnn.version()}"
    else:
        name, cuda = platform.processor() or platform.machine(), "no CUDA"
    bench.record(
        "machine",
        {"device": name, "torch": torch.__version__, "cuda": cuda, "python": platform.python_version()},
        f"{name}, torch {torch.__version__}, {cuda}, Python {platform.python_version()}",
    )
    peak = matmul_peak(device, peak_n)
    bench.record("bf16_matmul_peak_tflops", peak, f"bf16 matmul peak: {peak:.1f} TFLOP/s")

    info = dataset_info("cifar10")
    train = random_images(images, 3, 32).to(device)

    def pipeline(
        key,
        batch,
        *,
        space="resnet20",
        widths=None,
        autotune=True,
        fused=False,
        mode=None,
        epochs=2,
        **changes,
    ):
        def work():
            torch.backends.cudnn.benchmark = autotune
            spec = ModelSpec(space, 10, 3, 32)
            flop = 3 * model_cost(spec, widths).macs * 2
            recipe = Recipe(epochs=epochs, batch_size=batch, lr=0.1 * batch / 128, **changes)
            fused_sgd = with_defaults(torch.optim, "SGD", fused=True) if fused else contextlib.nullcontext()
            with fused_sgd, with_defaults(torch, "compile", mode=mode):
                torch.manual_seed(0)
                seconds = epoch_seconds(build(spec, widths).to(device), train, info, recipe)
            rate = len(train) / seconds[-1]
            bench.record(
                key,
                {
                    "batch": batch,
                    "epoch_seconds": seconds,
                    "images_per_s": rate,
                    "tflops": rate * flop / 1e12,
                },
                f"{key}: epoch {epochs} of {len(train)} images in {seconds[-1]:.2f} s (epochs: "
                f"{', '.join(f'{s:.2f}' for s in seconds)} s), "
                f"{rate:,.0f} images/s, {rate * flop / 1e12:.2f} TFLOP/s "
                f"({rate * flop / 1e12 / peak:.2%} of peak)",
            )

        bench.step(key, work)

    r20 = ModelSpec("resnet20", 10, 3, 32)
    pipeline("resnet20 b128 as before (no cuDNN autotune)", 128, autotune=False)
    for batch in (128, 512, 1024, 2048):
        pipeline(f"resnet20 b{batch}", batch)
    # compiled: epoch 1 compiles the step without the regulariser, epoch 2 with it (one graph
    # each, bench/compile_graphs.py), epoch 3 is the figure
    for batch in (128, 1024):
        pipeline(f"resnet20 b{batch} compiled", batch, compile=True, epochs=3)
        pipeline(
            f"resnet20 b{batch} compiled (CUDA graphs)", batch, compile=True, mode="reduce-overhead", epochs=3
        )
    pipeline("resnet20 b128 fp32", 128, precision="fp32")
    pipeline("resnet20 b1024 fp32", 1024, precision="fp32")
    pipeline("resnet20 b1024 NCHW", 1024, channels_last=False)
    pipeline("resnet20 b128 no regulariser", 128, drop_rate=0.0)
    pipeline("resnet20 b1024 no regulariser", 1024, drop_rate=0.0)
    pipeline("resnet20 b128 fused SGD", 128, fused=True)
    pipeline("resnet20 b1024 fused SGD", 1024, fused=True)
    pipeline("resnet20 b1024 searched widths", 1024, widths=searched_widths(r20))
    pipeline("resnet20 b1024 searched widths (multiples of 8)", 1024, widths=searched_widths(r20, 8))
    torch.backends.cudnn.benchmark = True

    fur_model = build(r20).to(device).eval()
    fur_val = random_images(fur_images, 3, 32, seed=1).to(device)

    def fur(method, batch, *, nhwc=False, bf16=False, control_variate=True):
        key = (
            f"fur {method} b{batch}"
            + " NHWC" * nhwc
            + " bf16" * bf16
            + " no control variate" * (not control_variate)
        )

        def work():
            model = fur_model.to(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
            f = sensitivities(r20, base_widths(r20))
            config = FurConfig(repeats=5, method=method, bf16=bf16, control_variate=control_variate)
            seconds = []  # the first call meets every shape (cuDNN autotuning), as a search does
            for _ in range(2):
                synchronize(device)
                start = time.perf_counter()
                estimate_fur(model, fur_val, info, f, config, seed=0, batch_size=batch)
                synchronize(device)
                seconds.append(time.perf_counter() - start)
            bench.record(
                key,
                seconds,
                f"FUR, ResNet-20, {len(fur_val)} images, T = 5, {key}: first call {seconds[0]:.2f} s, "
                f"second {seconds[1]:.2f} s",
            )

        bench.step(key, work)

    fur("fast", 128)
    fur("fast", 4096)  # the default on CUDA (fur.default_batch_size)
    fur("fast", 4096, bf16=True)  # and the default precision where the device has bf16
    fur("fast", 4096, bf16=True, control_variate=False)
    fur("fast", 4096, nhwc=True, bf16=True)
    fur("fast", 16384, bf16=True)
    fur("reference", 4096, bf16=True)
    fur("second-order", 4096, bf16=True)

    def search(key: str, flags: list[str]):
        def work():
            with tempfile.TemporaryDirectory() as folder:
                data = args.data_dir or write_fashion_like(
                    Path(folder), 6_000 if small else 60_000, 1_000 if small else 10_000
                )
                limits = ["--train-limit", "2000", "--epochs", "1", "--warmup-epochs", "0"]
                limits = [*limits, "--iterations", "1"] if small else []
                command = [
                    sys.executable, "-m", "netadjust", "search", *flags,
                    "--dataset", "fashion-mnist", "--data-dir", str(data), "--device", args.device,
                    "--out", str(Path(folder) / "run"), *limits,
                ]  # fmt: skip
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                print(done.stderr[-3000:], flush=True)
                history = Path(folder) / "run" / "history.jsonl"
                parts = (
                    [json.loads(line)["seconds"] for line in history.read_text().splitlines()]
                    if history.exists()
                    else []
                )
                kind = "Fashion-MNIST" if args.data_dir else "random images"
                bench.record(
                    key,
                    {"seconds": seconds, "data": kind, "exit": done.returncode, "iterations": parts},
                    f"{key} on {kind}{' (cut short by --small)' if small else ''}: {seconds:.1f} s, "
                    f"exit {done.returncode}; per iteration "
                    + "; ".join(
                        ", ".join(f"{name} {value:.1f} s" for name, value in part.items()) for part in parts
                    ),
                )

        bench.step(key, work)

    search("quick search", ["--preset", "quick"])
    # one iteration of the 10-iteration x 30-epoch search, at batch 512 (its accuracy
    # after 15 epochs: bench/batch_accuracy.py); x 10 is the search's time
    search(
        "search iteration (30 epochs at b512)",
        "--preset fmnist --iterations 1 --epochs 30 --batch-size 512 --lr 0.2 --warmup-epochs 1".split(),
    )

    def profile():
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        for batch in (128, 1024):
            part = train.subset(slice(0, min(len(train), 20 * batch)))
            recipe = Recipe(epochs=2, batch_size=batch, lr=0.1)
            fit(build(r20).to(device), part, info, recipe, seed=0)
            with profiler(activities=activities) as prof:
                fit(build(r20).to(device), part, info, recipe, seed=0)
            sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            table = prof.key_averages().table(sort_by=sort, row_limit=14, max_name_column_width=50)
            bench.record(
                f"profile b{batch}", table, f"profile, ResNet-20, batch {batch}, 2 x 20 steps:\n{table}"
            )

    bench.step("profile", profile)

    pipeline("resnet56 b128", 128, space="resnet56")
    pipeline("resnet56 b1024", 1024, space="resnet56")

    def per_sample(space):
        def work():
            spec = ModelSpec(space, 10, 3, 32)
            flop = 3 * model_cost(spec).macs * 2
            cpu_train = random_images(images // 10, 3, 32)
            dataset = PerSampleDataset(cpu_train.images, cpu_train.labels, info)
            seconds = conventional_epoch(build(spec).to(device), dataset, 128, 0.1, device=device)
            rate = len(dataset) / seconds
            bench.record(
                f"{space} per-sample DataLoader fp32 b128",
                rate,
                f"{space} per-sample DataLoader + fp32, batch 128 ({len(dataset)} images): "
                f"{rate:,.0f} images/s, "
                f"{rate * flop / 1e12:.2f} TFLOP/s",
            )

        return work

    bench.step("resnet20 per-sample", per_sample("resnet20"))
    bench.step("resnet56 per-sample", per_sample("resnet56"))

    def accuracy(choices: list[tuple[int, float, float]], seeds: int):
        """Fashion-MNIST test top-1 of ResNet-20 after 5 epochs, per (batch, lr, warm-up)."""

        def work():
            train_set, test_set, fashion = load("fashion-mnist", args.data_dir)
            if small:
                train_set, test_set = train_set.subset(slice(0, 2000)), test_set.subset(slice(0, 500))
            train_set, test_set = train_set.to(device), test_set.to(device)
            spec = ModelSpec("resnet20", 10, 1, 28)
            epochs = 1 if small else 5
            found = bench.results.setdefault("accuracy", {})
            for seed in range(1 if small else seeds):
                for batch, lr, warmup in choices:
                    name = f"b{batch} lr {lr}" + (f" warm-up {warmup}" if warmup else "")
                    recipe = Recipe(
                        epochs=epochs, batch_size=batch, lr=lr, warmup_epochs=warmup if epochs > 1 else 0
                    )
                    top1, seconds = trained_top1(spec, train_set, test_set, fashion, recipe, seed)
                    found.setdefault(name, []).append({"seed": seed, "top1": top1, "seconds": seconds})
                    print(
                        f"  accuracy after {epochs} epochs, {name}, seed {seed}: "
                        f"{top1:.2f}% in {seconds:.1f} s"
                    )
                    bench.save()
            for name, runs in found.items():
                tops = [run["top1"] for run in runs]
                spread = statistics.stdev(tops) if len(tops) > 1 else 0.0
                print(
                    f"  {name}: {statistics.mean(tops):.2f} ± {spread:.2f}% over {len(tops)} seeds",
                    flush=True,
                )

        return work

    pipeline("resnet20 b1024 compiled (no regulariser)", 1024, compile=True, drop_rate=0.0, epochs=3)
    if args.data_dir is not None:
        bench.step("accuracy", accuracy([(128, 0.1, 0), (1024, 0.8, 1)], seeds=3))
        choices = [(512, 0.2, 0), (512, 0.4, 0), (1024, 0.3, 0), (1024, 0.5, 0.5)]
        bench.step("accuracy at larger batches", accuracy(choices, seeds=2))

    if bench.unknown_steps():
        print(
            "not run: no such step (names as printed), or it needs --data-dir: "
            + ", ".join(bench.unknown_steps()),
            flush=True,
        )
    print(f"total {time.perf_counter() - bench.start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
