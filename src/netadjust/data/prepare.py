"""The data a command trains and measures on: loaded, split, limited, moved to the device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import DataConfig, ModelSpec
from .datasets import DatasetInfo, ImageData, content_hash, load, split
from .folders import default_workers


@dataclass
class PreparedData:
    info: DatasetInfo
    train: ImageData
    val: ImageData
    test: ImageData
    sha256: str  # of the whole dataset as loaded, before splits and limits

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def prepare_data(config: DataConfig, seed: int, device: torch.device, hold_out: bool) -> PreparedData:
    """Load, split off the validation set when ``hold_out``, apply limits, move to device."""
    workers = config.workers if config.workers is not None else default_workers(device)
    train, test, info = load(config.dataset, config.data_dir, config.image_size, workers)
    sha256 = content_hash(train, test)
    if hold_out:
        train, val = split(train, config.val_fraction, seed)
    else:
        val = train.subset(slice(0, 0))
    limit = lambda data, n: data if n is None else data.subset(slice(0, n))  # noqa: E731
    return PreparedData(
        info,
        limit(train, config.train_limit).to(device),
        limit(val, config.val_limit).to(device),
        limit(test, config.test_limit).to(device),
        sha256,
    )


def model_spec_for(spec: ModelSpec, info: DatasetInfo) -> ModelSpec:
    """The spec with the dataset's classes, channels and image size."""
    return dataclasses.replace(
        spec, num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size
    )
