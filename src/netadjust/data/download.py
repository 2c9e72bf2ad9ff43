"""Fetch a dataset's official files, only when asked (``--download``), checking their MD5.

A file is written under a temporary name and renamed only after its checksum matched, so a
failed or corrupt download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..store import user_path, write_through_path
from .datasets import CIFAR_LAYOUT, DEFAULT_DATA_DIRS, IDX_FILES, dataset_info, find_idx


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str  # as published by the dataset's authors


OFFICIAL = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        [
            RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ],
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        [
            RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ],
    ),
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/",
        [
            RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ],
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/",
        [
            RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
        ],
    ),
}


def is_present(dataset: str, directory: Path) -> bool:
    if dataset in CIFAR_LAYOUT:
        archive, folder = CIFAR_LAYOUT[dataset][:2]
        return (directory / archive).is_file() or (directory / folder).is_dir()
    return all(find_idx(directory, stem) for stem in IDX_FILES.values())


def fetch(files: list[RemoteFile], base_url: str, directory: Path, timeout: float = 60.0) -> list[Path]:
    """Download each file from ``base_url`` into ``directory``, verifying its MD5."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for remote in files:
        target = directory / remote.name
        if target.is_file():
            continue
        url = base_url.rstrip("/") + "/" + remote.name

        def download(temporary: Path, url=url, remote=remote) -> None:
            digest = hashlib.md5()
            with temporary.open("wb") as file, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    file.write(chunk)
            if digest.hexdigest() != remote.md5:
                raise UserError(
                    f"{url}: MD5 {digest.hexdigest()} differs from the published {remote.md5}; "
                    "the download is corrupt or not the official file, try again or another --mirror"
                )

        try:
            write_through_path(target, download, hold_signals=False)
            written.append(target)
        except (urllib.error.URLError, OSError) as error:
            raise UserError(f"cannot download {url} ({error}); check the network or --mirror") from None
    return written


def ensure_downloaded(dataset: str, data_dir: str | None, mirror: str | None) -> Path:
    """Make sure ``dataset``'s files are in ``data_dir``, downloading the missing ones."""
    info = dataset_info(dataset)
    if dataset not in OFFICIAL:
        raise UserError(f"--download cannot fetch {dataset}; {info.how_to_get}")
    if data_dir is None:
        data_dir = DEFAULT_DATA_DIRS.get(dataset)
        if data_dir is None or not user_path(data_dir).is_dir():
            raise UserError(f"--download needs --data-dir (where to put {dataset}'s files)")
    directory = user_path(data_dir)
    if not is_present(dataset, directory):
        base_url, files = OFFICIAL[dataset]
        fetch(files, mirror or base_url, directory)
    return directory
