"""Datasets as uint8 tensors in memory, and their splits.

Readers take the official file formats: IDX (MNIST, Fashion-MNIST; gzipped or not) and the
pickled batches of CIFAR's "python version" (extracted, or read straight out of the
``.tar.gz``). A truncated or malformed file is a ``UserError`` naming the file.
ImageNet-style folders, too large for memory, are ``folders.FolderSet``s: the functions
here that take a set (split, batches, hashes) accept both kinds.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import math
import pickle
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..store import user_path
from . import folders
from .folders import FolderSet

DEFAULT_DATA_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    crop_padding: int  # random crop after zero padding by this many pixels per side
    flip: bool  # random horizontal flip (not for digits)
    how_to_get: str  # shown when the files are missing


DATASETS = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        10,
        1,
        28,
        (0.2860,),
        (0.3530,),
        2,
        True,
        "install Debian's package (apt-get install dataset-fashion-mnist), pass --data-dir to "
        "a folder with the four IDX files, or add --download",
    ),
    "mnist": DatasetInfo(
        "mnist",
        10,
        1,
        28,
        (0.1307,),
        (0.3081,),
        2,
        False,
        "pass --data-dir to a folder with the four MNIST IDX files, or add --download",
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        10,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        4,
        True,
        "pass --data-dir to a folder holding cifar-10-python.tar.gz or its extracted "
        "cifar-10-batches-py, or add --download",
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        4,
        True,
        "pass --data-dir to a folder holding cifar-100-python.tar.gz or its extracted "
        "cifar-100-python, or add --download",
    ),
    # any ImageNet-style folder: the class count comes from its folders, the size from --image-size
    "imagenet": DatasetInfo(
        "imagenet",
        1000,
        3,
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        0,  # training crops are random resized crops instead (folders.py)
        True,
        "pass --data-dir to a folder with train/ and val/, each holding one sub-folder of images per class",
    ),
}
FOLDER_DATASETS = ("imagenet",)


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


@dataclass
class ImageSet:
    """Images (N, C, H, W) uint8 and labels (N,) int64, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    @property
    def device(self) -> torch.device:
        return self.images.device


ImageData = ImageSet | FolderSet  # what training, evaluation and FUR accept


# ---------------------------------------------------------------------------------- IDX

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (magic 0x00000801 or 0x00000803), gzipped or not."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read {path}: {error}; replace the file with a good copy") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise UserError(f"{path} is not an IDX file of bytes (bad magic number); replace it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated (header); replace it with a good copy")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = math.prod(shape)
    if len(raw) != header + size:
        raise UserError(
            f"{path} holds {len(raw) - header} data bytes, its header says {size}; "
            "the file is truncated or corrupt, replace it"
        )
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)


def find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dataset(info: DatasetInfo, directory: Path) -> tuple[ImageSet, ImageSet]:
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = find_idx(directory, stem)
        if path is None:
            raise UserError(f"{info.name}: {stem}[.gz] not found in {directory}; {info.how_to_get}")
        arrays[key] = read_idx(path)
    sets = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"{info.name} {split}: {images.shape[0]} images of shape {images.shape[1:]} "
                f"and {labels.shape} labels do not match; replace the files"
            )
        sets.append(_image_set(info, f"{split} split in {directory}", images[:, None], labels))
    return sets[0], sets[1]


def _image_set(info: DatasetInfo, where: str, images: np.ndarray, labels: np.ndarray) -> ImageSet:
    """Check sizes and label range, then wrap the arrays as tensors."""
    expected = (info.in_channels, info.image_size, info.image_size)
    if tuple(images.shape[1:]) != expected:
        raise UserError(
            f"{info.name} {where}: images of shape {tuple(images.shape[1:])}, expected {expected}; "
            "the files are not this dataset"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise UserError(f"{info.name} {where}: labels outside 0..{info.num_classes - 1}; replace the files")
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
    )


# -------------------------------------------------------------------------------- CIFAR

CIFAR_LAYOUT = {
    # dataset: (archive, folder inside it, train members, test member, label key)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        b"labels",
    ),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", b"fine_labels"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle CIFAR batches only: numpy arrays and builtins, no arbitrary code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # protocol-2 pickles carry raw bytes this way
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _read_batch(raw: bytes, where: str, label_key: bytes, info: DatasetInfo):
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except Exception as error:  # any malformed pickle: the file is not a CIFAR batch
        raise UserError(f"{where} is not a CIFAR python batch ({error}); replace it") from None
    pixels = info.in_channels * info.image_size**2
    if data.ndim != 2 or data.shape[1] != pixels or len(data) != len(labels):
        raise UserError(
            f"{where}: data of shape {data.shape} with {len(labels)} labels, expected "
            f"(N, {pixels}) with N labels; replace the file"
        )
    return data.reshape(-1, info.in_channels, info.image_size, info.image_size), labels


def load_cifar(info: DatasetInfo, directory: Path) -> tuple[ImageSet, ImageSet]:
    archive_name, folder, train_members, test_member, label_key = CIFAR_LAYOUT[info.name]
    members = train_members + [test_member]
    extracted = directory / folder
    if not extracted.is_dir() and directory.name == folder:
        extracted = directory
    archive = directory / archive_name
    raws: dict[str, bytes] = {}
    if extracted.is_dir():
        for member in members:
            path = extracted / member
            if not path.is_file():
                raise UserError(f"{info.name}: {path} not found; {info.how_to_get}")
            raws[member] = path.read_bytes()
        where = str(extracted)
    elif archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in members:
                    handle = tar.extractfile(f"{folder}/{member}")
                    if handle is None:
                        raise KeyError(member)
                    raws[member] = handle.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError) as error:
            raise UserError(f"cannot read {archive} ({error}); replace it with a good copy") from None
        where = str(archive)
    else:
        raise UserError(f"{info.name}: neither {extracted} nor {archive} exists; {info.how_to_get}")
    parts = [_read_batch(raws[m], f"{where}/{m}", label_key, info) for m in members]
    train_images = np.concatenate([p[0] for p in parts[:-1]])
    train_labels = np.concatenate([p[1] for p in parts[:-1]])
    train = _image_set(info, f"train split in {where}", train_images, train_labels)
    test = _image_set(info, f"test split in {where}", *parts[-1])
    return train, test


def data_folder(name: str, data_dir: str | Path | None, image_size: int | None = None) -> Path:
    """The folder dataset ``name`` is read from, refused in one line where it, or the files a
    dataset of fixed files needs, are missing: what ``load`` checks before reading (a dry
    run checks it too)."""
    info = dataset_info(name)
    if image_size is not None and image_size < 8:
        raise UserError(f"--image-size is {image_size}; give at least 8 pixels")
    if data_dir is None:
        data_dir = DEFAULT_DATA_DIRS.get(name)
        if data_dir is None:
            raise UserError(f"{name}: no default data folder; {info.how_to_get}")
    directory = user_path(data_dir)
    if not directory.is_dir():
        raise UserError(f"data folder {directory} does not exist; {info.how_to_get}")
    if info.name in CIFAR_LAYOUT:
        archive_name, folder = CIFAR_LAYOUT[info.name][:2]
        extracted, archive = directory / folder, directory / archive_name
        if not (extracted.is_dir() or directory.name == folder or archive.is_file()):
            raise UserError(f"{info.name}: neither {extracted} nor {archive} exists; {info.how_to_get}")
    elif info.name not in FOLDER_DATASETS:
        for stem in IDX_FILES.values():
            if find_idx(directory, stem) is None:
                raise UserError(f"{info.name}: {stem}[.gz] not found in {directory}; {info.how_to_get}")
    return directory


def load(
    name: str, data_dir: str | Path | None, image_size: int | None = None, workers: int = 0
) -> tuple[ImageData, ImageData, DatasetInfo]:
    """Train and test sets of dataset ``name`` from ``data_dir`` (or its default place).

    ``image_size``: for folder datasets (default 224) the side images are cropped to; for
    the others, the side their images are resized to (bilinear, antialiased), so a network
    made for larger images can run on them. ``workers``: the DataLoader processes that
    decode a folder dataset's images (0: in this process)."""
    info = dataset_info(name)
    directory = data_folder(name, data_dir, image_size)
    if info.name in FOLDER_DATASETS:
        size = info.image_size if image_size is None else image_size
        train, test, classes = folders.scan(directory, size, workers)
        return train, test, dataclasses.replace(info, num_classes=len(classes), image_size=size)
    train, test = (
        load_cifar(info, directory) if info.name in CIFAR_LAYOUT else load_idx_dataset(info, directory)
    )
    if image_size is not None and image_size != info.image_size:
        train, test = resized(train, image_size), resized(test, image_size)
        info = dataclasses.replace(info, image_size=image_size)
    return train, test, info


def resized(data: ImageSet, side: int, chunk: int = 4096) -> ImageSet:
    """``data`` with every image resized to ``side`` x ``side`` (uint8 kept), in chunks."""
    parts = []
    for start in range(0, len(data), chunk):
        images = data.images[start : start + chunk].float()
        scaled = torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
        parts.append(scaled.round().clamp(0, 255).to(torch.uint8))
    empty = torch.empty(0, data.images.shape[1], side, side, dtype=torch.uint8)
    return ImageSet(torch.cat(parts) if parts else empty, data.labels)


def content_hash(*sets: ImageData) -> str:
    """SHA-256 of the decoded images and labels: names the data whatever its compression.
    (Of folder datasets: of file names, sizes and labels.)"""
    if isinstance(sets[0], FolderSet):
        return folders.fingerprint(*sets)
    digest = hashlib.sha256()
    for data in sets:
        for tensor in (data.images, data.labels):
            digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def split(data: ImageData, val_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Seeded random split of the training set into (train, validation)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    n_val = int(round(len(data) * val_fraction))
    return data.subset(order[n_val:]), data.subset(order[:n_val])
