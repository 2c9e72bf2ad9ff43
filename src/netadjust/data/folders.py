"""ImageNet-style folder datasets: ``train/`` and ``val/``, one sub-folder per class.

Too large for memory, so images are decoded with Pillow in DataLoader worker processes,
a batch at a time: for training the Inception-style random resized crop (8-100% of the
area, aspect ratio 3/4-4/3) and a horizontal flip; for evaluation the short side resized
to size / 0.875 and the centre cropped. Workers hand over uint8 tensors; normalisation
runs on the training device as for the in-memory sets. Each image's crop and flip come
from a generator keyed by (epoch seed, sample index), so they do not depend on which
worker or process decodes it.

torchvision's transforms would do the same, but no torchvision wheel on PyPI imports
beside the CPU torch build this project pins, so the two transforms are written here.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import UserError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
CROP_FRACTION = 0.875  # evaluation: centre crop of this share of the resized short side
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # random resized crop: area share, aspect ratio


@dataclass
class FolderSet:
    """Image files and their labels; decoded to ``size`` x ``size`` RGB on demand."""

    root: Path
    paths: np.ndarray  # relative to root, str
    labels: torch.Tensor  # (N,) int64
    size: int
    workers: int
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> FolderSet:
        picked = self.paths[index.cpu().numpy() if isinstance(index, torch.Tensor) else index]
        return replace(self, paths=picked, labels=self.labels[index])

    def to(self, device: torch.device) -> FolderSet:
        return replace(self, device=torch.device(device))


def default_workers(device: torch.device) -> int:
    """Decoding processes when not given: the cores this process may use (torchrun's
    LOCAL_WORLD_SIZE processes share the machine) less those that train. On a CPU the
    training needs the cores itself: with 2 cores, decoding in the main process ran
    fastest here (1,194 images/s against 988-1,042 with 1-4 workers)."""
    cores = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cpu":
        return max(0, min(8, cores - 2))
    return max(1, min(8, cores - 1))


def scan(directory: Path, size: int, workers: int) -> tuple[FolderSet, FolderSet, list[str]]:
    """The train and val splits of an ImageNet-style folder, and the class names.

    Files are listed in a fixed shuffled order, so that the first N images (``--*-limit``)
    are a mix of classes rather than the first class alone.
    """
    for split in ("train", "val"):
        if not (directory / split).is_dir():
            raise UserError(
                f"{directory} has no {split}/ folder; an ImageNet-style dataset needs train/ and val/, "
                "each with one sub-folder of images per class"
            )
    classes = sorted(p.name for p in (directory / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{directory / 'train'} has {len(classes)} class folders; give at least 2")
    sets = []
    for split in ("train", "val"):
        folders = [p.name for p in (directory / split).iterdir() if p.is_dir()]
        unknown = sorted(name for name in folders if name not in classes)
        if unknown:
            raise UserError(
                f"{directory / split} has class folders {unknown[:3]} that train/ lacks; "
                "both splits need the same classes"
            )
        paths, labels = [], []
        for label, name in enumerate(classes):
            folder = directory / split / name
            if not folder.is_dir():
                continue
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
            paths += [str(p.relative_to(directory)) for p in files]
            labels += [label] * len(files)
        if not paths:
            raise UserError(f"{directory / split} holds no images ({', '.join(sorted(EXTENSIONS))})")
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0)).numpy()
        sets.append(FolderSet(directory, np.array(paths)[order], torch.tensor(labels)[order], size, workers))
    return sets[0], sets[1], classes


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> tuple[float, ...]:
    """A crop box of a random share of the area and aspect ratio; the centred largest box
    of a clamped ratio when ten draws do not fit."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            x, y = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            return (x, y, x + w, y + h)
    ratio = min(max(width / height, RATIO[0]), RATIO[1])
    w, h = (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
    x, y = (width - w) // 2, (height - h) // 2
    return (x, y, x + w, y + h)


def centre_box(width: int, height: int, size: int) -> tuple[float, ...]:
    """The box that, resized to ``size``, is the centre crop of the image resized to short
    side ``size / CROP_FRACTION``."""
    side = min(width, height) * CROP_FRACTION
    return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)


class _Decode(torch.utils.data.Dataset):
    """Decodes one image to a (3, size, size) uint8 array, randomly cropped and flipped when
    ``seed`` is given. A file Pillow cannot read gives an error line instead of an image."""

    def __init__(self, data: FolderSet, seed: int | None):
        self.root, self.paths, self.labels = data.root, data.paths, data.labels
        self.size, self.seed = data.size, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.root / self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if self.seed is None:
                    box, flip = centre_box(*image.size, self.size), False
                else:
                    rng = np.random.default_rng([self.seed, index])
                    box, flip = random_resized_box(*image.size, rng), rng.random() < 0.5
                image = image.resize((self.size, self.size), Image.BILINEAR, box=box)
                if flip:
                    image = image.transpose(Image.FLIP_LEFT_RIGHT)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            return None, f"cannot decode {path} ({error}); remove or replace the file"
        return np.asarray(image).transpose(2, 0, 1), None


def _collate(items):
    errors = [error for _, error in items if error is not None]
    if errors:
        return None, errors[0]
    return torch.from_numpy(np.stack([image for image, _ in items])), None


def decoded_batches(data: FolderSet, index_batches: list[torch.Tensor], seed: int | None) -> Iterator:
    """(uint8 images on ``data.device``, labels) for each batch of indices into ``data``."""
    loader = torch.utils.data.DataLoader(
        _Decode(data, seed),
        batch_sampler=[batch.tolist() for batch in index_batches],
        num_workers=data.workers,
        collate_fn=_collate,
        pin_memory=data.device.type == "cuda",
    )
    for index, (images, error) in zip(index_batches, loader, strict=True):
        if error is not None:
            raise UserError(error)
        yield images.to(data.device, non_blocking=True), data.labels[index].to(data.device)


def fingerprint(*sets: FolderSet) -> str:
    """SHA-256 of the sets' file names, sizes and labels: decoding every image to hash it
    would take as long as an epoch."""
    digest = hashlib.sha256()
    for data in sets:
        for path, label in zip(data.paths, data.labels.tolist(), strict=True):
            digest.update(f"{path}\0{(data.root / path).stat().st_size}\0{label}\n".encode())
    return digest.hexdigest()
