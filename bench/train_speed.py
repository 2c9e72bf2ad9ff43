"""Training throughput against the machine's peak and against a conventional pipeline.

Measures, in one run: a matrix-multiply peak in the precision the project trains in
(GFLOP/s); ResNet-20 (width-mult 1) training on Fashion-MNIST with the project's pipeline
(uint8 tensors in memory, batches augmented on the device, autocast, channels-last), as
images/s and achieved GFLOP/s counting 3 x forward MACs x 2 FLOPs per image; and the same
model trained with a conventional per-sample DataLoader (Python transforms per image,
num_workers=0 on this 2-core machine) in fp32; and, for scale, the project's pipeline on a
searched ResNet-20 of the same MACs, whose widths (not multiples of 16) run slower kernels,
and the same searched shape held to multiples of N (``--round-to``: each N in the list) as a
search with ``--round-to N`` makes it, each against the original's rate.
Each figure is measured ``--repeats`` times and the fastest run counts, as ``timeit`` does:
on a shared VM the slower runs measure interference, not the code (the median is printed
beside it). Last line:
``achieved/peak=<x> speedup=<y> searched/original@<N>=<z> ...``.

    .venv/bin/python bench/train_speed.py [--data-dir DIR] [--images 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from statistics import median

import torch
import torch.nn.functional as F

from netadjust.adjust import rescale
from netadjust.cost import model_cost
from netadjust.data import load
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import Recipe, autocast_dtype, fit


def matmul_peak(dtype: torch.dtype | None, seconds: float = 1.0, n: int = 2048) -> float:
    """GFLOP/s of an n x n x n matrix product in ``dtype`` (float32 when None)."""
    a = torch.randn(n, n, dtype=dtype or torch.float32)
    b = torch.randn(n, n, dtype=dtype or torch.float32)
    a @ b
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


class PerSampleDataset(torch.utils.data.Dataset):
    """The conventional way: one image at a time, crop/flip/normalise in Python."""

    def __init__(self, images, labels, info):
        self.images, self.labels, self.info = images, labels, info

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        pad = self.info.crop_padding
        image = F.pad(self.images[index].float() / 255, (pad,) * 4)
        dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        size = self.info.image_size
        image = image[:, dy : dy + size, dx : dx + size]
        if self.info.flip and torch.rand(()) < 0.5:
            image = image.flip(2)
        mean = torch.tensor(self.info.mean).view(-1, 1, 1)
        std = torch.tensor(self.info.std).view(-1, 1, 1)
        return (image - mean) / std, self.labels[index]


# Widths a quick search (``make demo``, ResNet-20 x0.5) ended with, in forward order.
SEARCHED_HALF_WIDTHS = (11, 9, 9, 9, 7, 8, 16, 12, 16, 16, 14, 14, 31, 26, 41, 31, 26, 26)


def searched_widths(spec: ModelSpec, round_to: int = 1) -> dict[str, int]:
    """The quick search's widths scaled to the MACs of ``spec`` (ResNet-20 at any multiplier),
    held to multiples of ``round_to`` by the rescale a search with ``--round-to`` ends with."""
    names = list(base_widths(spec))
    widths = dict(zip(names, SEARCHED_HALF_WIDTHS, strict=True))
    cost = lambda w: model_cost(spec, w).macs  # noqa: E731
    return rescale(widths, cost, model_cost(spec).macs, min_width=round_to, round_to=round_to)


def conventional_epoch(model, dataset, batch_size: int, lr: float, device: str = "cpu") -> float:
    """One fp32 epoch through a DataLoader, each batch copied to ``device``; returns seconds."""
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=3e-4)
    model.train()
    start = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the fastest counts")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument(
        "--round-to",
        type=int,
        nargs="+",
        default=[1, 8, 16],
        help="width grids to time the searched shape on",
    )
    args = parser.parse_args()
    repeats = range(args.repeats)

    train, _, info = load("fashion-mnist", args.data_dir)
    train = train.subset(slice(0, args.images))
    spec = ModelSpec("resnet20", info.num_classes, info.in_channels, info.image_size, args.width_mult)
    flop_per_image = 3 * model_cost(spec).macs * 2
    recipe = Recipe(epochs=1, batch_size=args.batch_size, lr=0.1)
    dtype = autocast_dtype(recipe.precision, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(train)} images, "
        f"batch {args.batch_size}, precision {dtype or torch.float32}, "
        f"{flop_per_image / 1e6:.0f} MFLOP per training image"
    )

    torch.manual_seed(0)
    warm = build(spec)
    fit(warm, train.subset(slice(0, 1024)), info, recipe, seed=0)  # oneDNN kernel set-up

    def project_rates(widths: dict[str, int] | None) -> list[float]:
        """Images/s of one epoch with the project's pipeline, from fresh weights, per repeat."""
        rates = []
        for _ in repeats:
            torch.manual_seed(0)
            rates.append(len(train) / fit(build(spec, widths), train, info, recipe, seed=0)["seconds"])
        return rates

    rates = project_rates(None)
    ours = max(rates)
    achieved = ours * flop_per_image / 1e9
    print(f"project pipeline: {ours:.0f} images/s (median {median(rates):.0f}), {achieved:.0f} GFLOP/s")

    searched_rates = {}
    for round_to in args.round_to:
        searched = searched_widths(spec, round_to)
        rates = project_rates(searched)
        searched_rates[round_to] = max(rates) / ours
        print(
            f"searched widths, --round-to {round_to}: {list(searched.values())}, "
            f"{model_cost(spec, searched).macs / model_cost(spec).macs:.3f} of the original MACs: "
            f"{max(rates):.0f} images/s (median {median(rates):.0f}), "
            f"{searched_rates[round_to]:.2f} of the original's rate"
        )

    torch.manual_seed(0)
    model = build(spec)
    conventional_epoch(
        model, PerSampleDataset(train.images[:1024], train.labels[:1024], info), args.batch_size, 0.1
    )
    dataset = PerSampleDataset(train.images, train.labels, info)
    rates = [len(train) / conventional_epoch(model, dataset, args.batch_size, 0.1) for _ in repeats]
    theirs = max(rates)
    print(
        f"conventional DataLoader + fp32: {theirs:.0f} images/s (median {median(rates):.0f}), "
        f"{theirs * flop_per_image / 1e9:.0f} GFLOP/s"
    )
    peak = max(matmul_peak(dtype) for _ in repeats)
    print(f"matmul peak ({dtype or torch.float32}): {peak:.0f} GFLOP/s")
    grids = " ".join(f"searched/original@{n}={ratio:.2f}" for n, ratio in searched_rates.items())
    print(f"achieved/peak={achieved / peak:.2f} speedup={ours / theirs:.2f} {grids}")


if __name__ == "__main__":
    main()
