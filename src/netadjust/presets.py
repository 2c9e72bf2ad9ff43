"""Named groups of search settings. Flags given on the command line override them."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # A few minutes on a 2-core CPU: a half-width ResNet-20 on a slice of Fashion-MNIST.
    "quick": {
        "space": "resnet20",
        "dataset": "fashion-mnist",
        "width_mult": 0.5,
        "iterations": 3,
        "epochs": 3,
        "batch_size": 128,
        "lr": 0.1,
        "lr_min": 1e-3,
        "weight_decay": 3e-4,
        "train_limit": 20000,
        "val_limit": 2000,
        "test_limit": None,
        "drop_rate": 0.05,
        "repeats": 4,  # the fast path pays for T = 4 in the reference's T = 2 time
        "k": 3,
        "k_decay": 0.5,
        "adjust_rate": 0.15,
        "adjust_rate_decay": 0.0,
        "min_width": 2,
    },
    # The reference's CIFAR setting: 10 iterations of 200 epochs each; k 6 falling by 0.5 per
    # iteration, adjusting rate 0.15 falling by 0.01 per rank.
    "paper": {
        "space": "resnet20",
        "dataset": "cifar100",
        "width_mult": 1.0,
        "iterations": 10,
        "epochs": 200,
        "batch_size": 128,
        "lr": 0.15,
        "lr_min": 1e-3,
        "weight_decay": 3e-4,
        "train_limit": None,
        "val_limit": None,
        "test_limit": None,
        "drop_rate": 0.05,
        "repeats": 5,
        "k": 6,
        "k_decay": 0.5,
        "adjust_rate": 0.15,
        "adjust_rate_decay": 0.01,
        "min_width": 4,
    },
}

# --preset paper with --dataset imagenet: the reference's ImageNet setting (ResNet-18, 10
# epochs per iteration, lr 0.2 at batch 64 per process, weight decay 1e-5, FUR base drop
# rate 0.2, label smoothing 0.1); what it does not state stays as in the CIFAR setting.
PAPER_IMAGENET = {
    "space": "resnet18",
    "dataset": "imagenet",
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.2,
    "weight_decay": 1e-5,
    "drop_rate": 0.2,
    "label_smoothing": 0.1,
}


def preset_settings(name: str, dataset: str | None) -> dict:
    """The settings of preset ``name`` for ``dataset`` (the --dataset flag, None if not given)."""
    settings = PRESETS[name]
    if name == "paper" and (dataset or settings["dataset"]) == "imagenet":
        settings = {**settings, **PAPER_IMAGENET}
    return settings
