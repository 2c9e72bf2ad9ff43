"""What the FUR benchmarks share: the trained network they measure on, top-k overlap."""

from __future__ import annotations

import torch

from netadjust.cost import sensitivities
from netadjust.data import DatasetInfo, ImageSet, load, split
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import Recipe, fit


def trained_network(
    data_dir: str | None,
    width_mult: float,
    train_images: int,
    epochs: int,
    val_images: int,
    space: str = "resnet20",
) -> tuple[torch.nn.Module, ImageSet, DatasetInfo, dict[str, float]]:
    """A network of ``space`` (ResNet-20 unless named) trained from seed 0 on the first
    ``train_images`` of Fashion-MNIST's 90% split; returns it, ``val_images`` of the 10%
    split, the dataset info and f_i."""
    train, _, info = load("fashion-mnist", data_dir)
    train, val = split(train, 0.1, seed=0)
    spec = ModelSpec(space, info.num_classes, info.in_channels, info.image_size, width_mult)
    torch.manual_seed(0)
    model = build(spec)
    fit(model, train.subset(slice(0, train_images)), info, Recipe(epochs=epochs, lr=0.1), seed=0)
    return model, val.subset(slice(0, val_images)), info, sensitivities(spec, base_widths(spec))


def overlap(a: dict[str, float], b: dict[str, float], top: bool, k: int) -> int:
    """How many of the k widths with the highest (``top``) or lowest FUR in ``a`` are among
    those of ``b``."""
    pick = lambda fur: set(sorted(fur, key=fur.get, reverse=top)[:k])  # noqa: E731
    return len(pick(a) & pick(b))
