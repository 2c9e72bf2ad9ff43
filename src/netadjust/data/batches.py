"""Batches of images on their device: standardised, and for training shuffled and augmented
(random crop by padding, horizontal flip) from seeded generators, so that a run repeats."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from . import folders
from .datasets import DatasetInfo, ImageData
from .folders import FolderSet


class Normalize:
    """uint8 (N, C, H, W) -> float, standardised per channel, on the batch's device."""

    def __init__(self, info: DatasetInfo, device: torch.device):
        self.scale = (1.0 / (255.0 * torch.tensor(info.std, device=device))).view(1, -1, 1, 1)
        self.shift = (torch.tensor(info.mean, device=device) / torch.tensor(info.std, device=device)).view(
            1, -1, 1, 1
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.scale - self.shift


def augment(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, for a whole batch at once."""
    n, _, h, w = images.shape
    device = images.device
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]  # (N, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]  # (N, 1, 1, W)
        images = padded[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(images.shape[1], device=device)[None, :, None, None],
            rows,
            cols,
        ]
    if flip:
        flipped = torch.rand(n, generator=generator, device=device) < 0.5
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    return images


def batches(
    data: ImageData, batch_size: int, normalize: Normalize
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float images, labels) in order: evaluation and FUR."""
    if isinstance(data, FolderSet):
        chunks = list(torch.arange(len(data)).split(batch_size))
        for images, labels in folders.decoded_batches(data, chunks, seed=None):
            yield normalize(images), labels
        return
    for start in range(0, len(data), batch_size):
        yield normalize(data.images[start : start + batch_size]), data.labels[start : start + batch_size]


def training_batches(
    data: ImageData,
    batch_size: int,
    normalize: Normalize,
    info: DatasetInfo | None,
    order_generator: torch.Generator,
    augment_generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Yield (images, labels, global batch size): shuffled, augmented unless ``info`` is None.

    Every process draws the same order; global batch s is ``order[s*B*W : (s+1)*B*W]``
    (B per process, W processes) and process r takes the r-th of its W near-equal parts, so
    the union over processes is the batch one process of batch B*W would see. A last global
    batch smaller than W is dropped (some process would get no image).
    Folder datasets are cropped and flipped while decoding (``folders.py``) instead.
    """
    step = batch_size * world_size
    order = torch.randperm(len(data), generator=order_generator, device=order_generator.device)
    parts = []  # (this process's indices, global batch size)
    for start in range(0, len(data), step):
        global_batch = order[start : start + step]
        if len(global_batch) < world_size:
            break
        parts.append((torch.tensor_split(global_batch, world_size)[rank], len(global_batch)))
    if isinstance(data, FolderSet):
        seed = None
        if info is not None:
            draw = torch.randint(2**62, (1,), generator=augment_generator, device=augment_generator.device)
            seed = int(draw)
        decoded = folders.decoded_batches(data, [index.cpu() for index, _ in parts], seed)
        for (images, labels), (_, total) in zip(decoded, parts, strict=True):
            yield normalize(images), labels, total
        return
    for index, total in parts:
        images = data.images[index]
        if info is not None:
            images = augment(images, info.crop_padding, info.flip, augment_generator)
        yield normalize(images), data.labels[index], total
