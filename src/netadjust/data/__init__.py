"""Data: the official file formats read into memory (``datasets``), ImageNet-style folders
decoded on the fly (``folders``), batches augmented on the device (``batches``), the
download of the official files (``download``) and the preparation a command needs
(``prepare``)."""

from .batches import Normalize, augment, batches, training_batches
from .datasets import (
    DATASETS,
    FOLDER_DATASETS,
    DatasetInfo,
    ImageData,
    ImageSet,
    content_hash,
    data_folder,
    dataset_info,
    load,
    read_idx,
    split,
)
from .prepare import PreparedData, model_spec_for, prepare_data

__all__ = [
    "DATASETS",
    "FOLDER_DATASETS",
    "DatasetInfo",
    "ImageData",
    "ImageSet",
    "Normalize",
    "PreparedData",
    "augment",
    "batches",
    "content_hash",
    "data_folder",
    "dataset_info",
    "load",
    "model_spec_for",
    "prepare_data",
    "read_idx",
    "split",
    "training_batches",
]
