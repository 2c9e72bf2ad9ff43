"""Named groups of settings: partial overrides of the defaults in ``config.py``, by the
names of their flags (``train_drop_rate`` for ``--train-drop-rate``). Flags given on the
command line override them.

A preset has two parts: the search's settings (``PRESETS``, for ``netadjust search``) and
the final training of a network found by it (``FINAL_TRAINING``, for ``netadjust train``
and ``netadjust compare``). The ``paper`` values are the reference's (danczs/
NetworkAdjustment): the commands of its README, and for every flag a command leaves out,
the argparse default of its ``channel_search_distributed.py``.
"""

from __future__ import annotations

from .config import Recipe
from .errors import UserError
from .settings import as_settings, configured

# A few minutes on a 2-core CPU: a half-width ResNet-20 on a slice of Fashion-MNIST (`make
# demo`). It shows the tool working; it found nothing at equal MACs (README).
QUICK = {
    "width_mult": 0.5,
    "iterations": 3,
    "epochs": 3,
    "lr": 0.1,
    "train_limit": 20000,
    "val_limit": 2000,
    "repeats": 4,  # the fast path pays for T = 4 in the reference's T = 2 time
    "k": 3,
    "adjust_rate_decay": 0.0,
    "min_width": 2,
}

# The search behind the README's results table (bench/quality.py): a half-width ResNet-20
# on all of Fashion-MNIST's training split, 6 iterations of 4 epochs, k = 3 throughout,
# a = 0.5 (0.15 moved a starved 4-channel width one channel per iteration), FUR with T = 4
# on 6,000 held-out images. About 25 minutes on 2 cores. It repaired a starved start
# (+0.66 ± 0.26 points); from these original widths it found no gain (−0.06 ± 0.17).
FMNIST = {
    **QUICK,
    "dataset": "fashion-mnist",
    "train_limit": None,
    "val_limit": 6000,
    "iterations": 6,
    "epochs": 4,
    "k_decay": 0.0,
    "adjust_rate": 0.5,
}

DEFAULT_PRESET = "standard"

PRESETS: dict[str, dict] = {
    "quick": QUICK,
    "fmnist": FMNIST,
    # The default (no --preset): the search that gained where any did (equal parameters, the
    # README's first lines), in its cheap form: later iterations fine-tune the previous one's
    # weights on a quarter of the training images (--inherit 0.25), FUR with T = 2. At lr 0.1
    # it took 0.50-0.57 of one final training per search there and kept +0.41 of its +0.50; at
    # equal MACs no setting tried gained robustly. lr 0.05, not the other presets' 0.1: 0.1
    # trained torchvision's MobileNetV2 x0.5 to 74-83% where 0.05 reached 88%, and 0.05 lost
    # nothing on ResNet-18 x0.25 or MobileNetV3-Small (bench/lr_stability.py, docs/results.md).
    # The dataset is --dataset's (Fashion-MNIST unless given). --step lesser, not the reference's
    # initial-width step: the reference's cut widths to slivers of themselves and grew them straight
    # back (21 and 22 of 90 moves undone on ResNet-18 x0.25 and MobileNetV3-Small, 2 and 9 with
    # lesser) for the same gain within its noise (bench/step_rules.py, docs/results.md).
    "standard": {
        **{key: value for key, value in FMNIST.items() if key != "dataset"},
        "lr": 0.05,
        "repeats": 2,
        "inherit": 0.25,
        "step": "lesser",
    },
    # The reference's CIFAR search (README, "Single GPU on CIFAR-100"): --batch_size=128
    # --learning_rate=0.15 --epochs=200 --depth=20 --drop_rate=0.05 --base_drop_rate=0.05
    # --update_num=6 --update_num_decay=0.5 --arch_learning_rate=0.15
    # --arch_learning_rate_decay=0.01; argparse defaults: --learning_rate_min=1e-3
    # --weight_decay=3e-4 --iters=10 --times=5 --train_portion=0.9 --layerd=True, minimum
    # width 4 (channel_config.update_channel). Those are the defaults (config.py) but for:
    "paper": {
        "dataset": "cifar100",
        "fur_control_variate": False,  # the reference's plain Monte Carlo (same mean, noisier)
    },
}

# --preset paper with --dataset imagenet: the reference's ImageNet search (README, "Multi-GPU
# on ImageNet"): --batch_size=64 (per process, 8 processes) --learning_rate=0.2 --epochs=10
# --depth=18 --drop_rate=0.05 --base_drop_rate=0.2 --layerd=F --weight_decay=4e-5
# --update_num=6; left at the argparse defaults: --update_num_decay=0 --arch_learning_rate=0.1
# --arch_learning_rate_decay=0 --label_smoothing=0 --learning_rate_min=1e-3 --times=5 --iters=10.
PAPER_IMAGENET = {
    "space": "resnet18",
    "dataset": "imagenet",
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.2,
    "weight_decay": 4e-5,
    "drop_rate": 0.2,
    "label_smoothing": 0.0,
    "k": 6,
    "k_decay": 0.0,
    "adjust_rate": 0.1,
    "adjust_rate_decay": 0.0,
    "train_drop_rate": 0.05,
    "drop_depth_ramp": False,
}

FINAL_TRAINING: dict[str, dict] = {
    # the search's own recipe, on every training image
    "quick": {key: PRESETS["quick"][key] for key in ("epochs", "lr")},
    # the results table's comparison: 5 epochs on all 60,000 training images
    "fmnist": {"epochs": 5, "lr": PRESETS["fmnist"]["lr"]},
    "standard": {"epochs": 5, "lr": PRESETS["standard"]["lr"]},
    # README, "Network evaluation on CIFAR-100": --batch_size=128 --learning_rate=0.15
    # --epochs=200 --drop_rate=0.05 --train_portion=1.0 (every training image): the defaults
    "paper": {},
}

# README, "Network evaluation on ImageNet (8 GPU)": --batch_size=128 (per process)
# --learning_rate=0.4 --epochs=90 --weight_decay=4e-5 --label_smoothing=0.1 --warmup=T
# --warmup_epochs=5 --warmup_lr=1e-3; --drop_rate left at its default, 0 (no channel dropout)
PAPER_IMAGENET_FINAL = {
    "epochs": 90,
    "batch_size": 128,
    "lr": 0.4,
    "lr_min": 1e-3,
    "weight_decay": 4e-5,
    "label_smoothing": 0.1,
    "warmup_epochs": 5.0,
    "train_drop_rate": 0.0,
    "drop_depth_ramp": False,
}


def preset_settings(name: str, dataset: str | None) -> dict:
    """The search settings of preset ``name`` for ``dataset`` (the --dataset flag, None if not given)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    settings = PRESETS[name]
    if name == "paper" and (dataset or settings["dataset"]) == "imagenet":
        settings = {**settings, **PAPER_IMAGENET}
    return settings


# what a final training sets (every recipe setting but those of the hardware)
TRAINING = ("epochs", "batch_size", "lr", "lr_min", "weight_decay", "warmup_epochs", "label_smoothing")
TRAINING += ("train_drop_rate", "drop_depth_ramp")


def final_training(name: str, dataset: str) -> dict:
    """The training recipe with which preset ``name`` trains a found network for ``dataset``:
    every setting of ``TRAINING``, the preset's or the default."""
    chosen = PAPER_IMAGENET_FINAL if name == "paper" and dataset == "imagenet" else FINAL_TRAINING[name]
    recipe = as_settings(configured(Recipe, chosen))
    return {key: recipe[key] for key in TRAINING}
