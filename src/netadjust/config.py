"""Every setting of netadjust, as typed dataclasses: the one source of defaults, help texts
and validation. The command line's flags are generated from these fields, the presets are
partial overrides of them (``presets.py``), and a configuration is built from defaults, a
preset and the values a user gave (``settings.py``: ``flags``, ``configured``).

The defaults are the reference's CIFAR search and final training (danczs/
NetworkAdjustment), except for what the project changed on purpose: Fashion-MNIST, which
needs no download, and FUR's control variate (docs/fur-noise.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError

Widths = dict[str, int]
BUDGET_TOLERANCE = 0.01  # a rescaled network's cost lies within 1% of the budget (the reference's)

BUDGETS = ("macs", "params", "latency")
UNITS = {"macs": "MACs", "params": "params", "latency": "ns"}  # latency is held in nanoseconds
LATENCY_MODES = ("infer", "train")
STEP_BASES = ("initial", "current", "lesser")  # what the adjustment's step is a share of
LATENCY_PRECISIONS = ("fp32", "bf16", "fp16", "training")  # training: the recipe's own autocast
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
FUR_METHODS = ("auto", "fast", "reference", "second-order")
CURVATURES = ("exact", "sampled", "empirical")


def setting(
    default: Any, help: str, *, flag: str | None = None, kind: type | None = None, choices=None, was=None
):
    """A field the user sets: ``flag`` (default: ``--`` and the field's name with dashes),
    ``kind`` where the default is None, ``help`` without the default (flags add it); ``was``:
    the flag's former name, still accepted."""
    metadata = {"help": help, "flag": flag, "kind": kind or type(default), "choices": choices, "was": was}
    return field(default=default, metadata=metadata)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


@dataclass(frozen=True)
class ModelSpec:
    """Everything besides the widths that decides the architecture and its cost."""

    space: str = setting("resnet20", "search space, e.g. resnet20 (see `netadjust spaces`)")
    num_classes: int = 10  # from the dataset
    in_channels: int = 3  # from the dataset
    image_size: int = 32  # square inputs, pixels per side; from the dataset
    width_mult: float = setting(1.0, "scale of the base widths and the (unsearched) stem")
    padding: str = setting(
        "max", "residual shortcut mode when widths differ (CIFAR ResNets)", choices=("max", "local")
    )
    model: str | None = setting(
        None,
        "your own network instead of a space: pkg.module:factory or path/to/file.py:factory, or a "
        "zoo's by name, torchvision:NAME or timm:NAME (README, 'Your own model'; --space, "
        "--width-mult and --padding do not apply)",
        kind=str,
    )
    model_args: str | None = setting(
        None, "JSON object of further keyword arguments for --model's factory", kind=str
    )

    def __post_init__(self) -> None:
        if self.model is not None:  # a user's model: the space settings do not apply; record so
            for name, value in (("space", "model"), ("width_mult", 1.0), ("padding", "max")):
                object.__setattr__(self, name, value)
        check(0 < self.width_mult <= 64, f"--width-mult is {self.width_mult}; give a value in (0, 64]")
        check(self.padding in ("max", "local"), f"--padding is {self.padding!r}; choose max or local")
        for name in ("num_classes", "in_channels", "image_size"):
            value = getattr(self, name)
            check(value >= 1, f"--{name.replace('_', '-')} is {value}; give at least 1")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting(
        "fashion-mnist",
        "fashion-mnist, mnist, cifar10, cifar100, or imagenet: any folder with train/ and val/, "
        "one sub-folder of images per class",
    )
    data_dir: str | None = setting(
        None, "folder with the dataset's files (default: the dataset's own)", kind=str
    )
    val_fraction: float = setting(0.1, "share of the training set held out for FUR")
    train_limit: int | None = setting(None, "use only the first N training images", kind=int)
    val_limit: int | None = setting(None, "use only the first N validation images", kind=int)
    test_limit: int | None = setting(None, "use only the first N test images", kind=int)
    image_size: int | None = setting(
        None,
        "side the images are resized to (to fit a network made for larger ones); imagenet: of the "
        "training and test crops (224)",
        kind=int,
    )
    workers: int | None = setting(
        None,
        "imagenet: processes decoding images (0: the main one; default: by the cores per process)",
        kind=int,
    )

    def validate(self) -> None:
        check(self.workers is None or self.workers >= 0, f"--workers is {self.workers}; give 0 or more")
        check(0 < self.val_fraction < 1, f"--val-fraction is {self.val_fraction}; give a value in (0, 1)")
        for name in ("train_limit", "val_limit", "test_limit"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"--{name.replace('_', '-')} is {value}; give at least 1")


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters: the reference's CIFAR recipe."""

    epochs: int = setting(200, "training epochs")
    batch_size: int = setting(128, "images per step, per process")
    lr: float = setting(0.15, "peak learning rate at this batch size")
    lr_min: float = setting(1e-3, "final learning rate of the cosine")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(3e-4, "SGD weight decay")
    warmup_epochs: float = setting(0.0, "linear warm-up from 0 over this many epochs")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    drop_rate: float = setting(
        0.05,
        "channel-dropout regulariser at the last epoch and deepest layer (0: off)",
        flag="--train-drop-rate",
    )
    drop_depth_ramp: bool = setting(
        True,
        "the regulariser's rate grows with depth, (i+1)/L for width i (the reference's ImageNet search: off)",
    )
    precision: str = setting(
        "auto",
        "autocast precision (auto: bf16 where the device has it; fp32 for depthwise convolutions on a CPU)",
        choices=PRECISIONS,
    )
    channels_last: bool = setting(True, "train in NHWC memory format")
    compile: bool = setting(False, "torch.compile the model for training (measured: docs/performance.md)")
    augment: bool = setting(True, "the dataset's random crop and flip")
    sync_bn: bool = setting(False, "with several processes: batch-norm statistics over the global batch")

    def validate(self) -> None:
        e = self
        check(e.epochs >= 1, f"--epochs is {e.epochs}; give at least 1")
        check(e.batch_size >= 1, f"--batch-size is {e.batch_size}; give at least 1")
        check(0 < e.lr < 100, f"--lr is {e.lr}; give a learning rate in (0, 100)")
        check(0 <= e.lr_min <= e.lr, f"--lr-min is {e.lr_min}; give a value in [0, lr]")
        check(0 <= e.momentum < 1, f"--momentum is {e.momentum}; give a value in [0, 1)")
        check(0 <= e.weight_decay < 1, f"--weight-decay is {e.weight_decay}; give a value in [0, 1)")
        check(
            0 <= e.warmup_epochs < e.epochs or e.warmup_epochs == 0,
            f"--warmup-epochs is {e.warmup_epochs}; give a value in [0, epochs)",
        )
        check(0 <= e.label_smoothing < 1, f"--label-smoothing is {e.label_smoothing}; give a value in [0, 1)")
        check(0 <= e.drop_rate < 1, f"--train-drop-rate is {e.drop_rate}; give a value in [0, 1)")
        check(e.precision in PRECISIONS, f"--precision is {e.precision!r}; choose one of {PRECISIONS}")


@dataclass(frozen=True)
class FurConfig:
    base_rate: float = setting(
        0.05, "p0, FUR's drop rate of the width of mean sensitivity", flag="--drop-rate"
    )
    repeats: int = setting(5, "T, masks per width in FUR")
    max_rate: float = setting(0.9, "FUR drop rates are clipped here", flag="--max-drop-rate")
    method: str = setting(
        "auto",
        "auto: the fast path where the space exposes its blocks; second-order: no masks, the "
        "expected loss rise from the loss curvature (docs/fur-noise.md)",
        flag="--fur-method",
        choices=FUR_METHODS,
    )
    curvature: str = setting(
        "exact",
        "second-order FUR's curvature: exact (one backward pass per class), sampled (--repeats "
        "label draws from the model), empirical (the true labels)",
        flag="--fur-curvature",
        choices=CURVATURES,
    )
    control_variate: bool = setting(
        True,
        "Monte Carlo FUR less each mask's first-order loss change, whose mean is 0: the same "
        "quantity with less mask noise, for one backward pass per batch (docs/fur-noise.md)",
        flag="--fur-control-variate",
    )
    bf16: bool | None = setting(
        None,
        "estimate FUR under bf16 autocast (default: where the device has native bf16; "
        "bench/fur_bf16_ranking.py: rank correlation with fp32 FUR 0.988-1.000 on 8 networks)",
        flag="--fur-bf16",
        kind=bool,
    )

    def validate(self) -> None:
        check(0 < self.base_rate < 1, f"--drop-rate is {self.base_rate}; give a value in (0, 1)")
        check(self.repeats >= 1, f"--repeats is {self.repeats}; give at least 1")
        check(
            self.base_rate <= self.max_rate < 1,
            f"--max-drop-rate is {self.max_rate}; give a value in [drop rate, 1)",
        )
        check(
            self.method in FUR_METHODS,
            f"--fur-method is {self.method!r}; choose one of {', '.join(FUR_METHODS)}",
        )
        check(
            self.curvature in CURVATURES,
            f"--fur-curvature is {self.curvature!r}; choose one of {', '.join(CURVATURES)}",
        )


@dataclass(frozen=True)
class AdjustRule:
    k0: float = setting(
        6,
        "widths grown and shrunk at iteration 0 (unless given, at most half the model's widths)",
        flag="--k",
        kind=float,
    )
    k_decay: float = setting(0.5, "k falls by this per iteration")
    rate: float = setting(
        0.15, "a, share of the initial width a grown or shrunk width moves", flag="--adjust-rate"
    )
    step: str = setting(
        "initial",
        "what a is a share of: the width the search started from (the paper's), its current "
        "width (a width starved to 4 channels then moves by a share of 4, not of its start), or "
        "the lesser of the two (every step within x(1-a) and x(1+a): no shrink to a sliver)",
        choices=STEP_BASES,
    )
    rate_decay: float = setting(0.01, "d, a falls by this per rank in FUR order", flag="--adjust-rate-decay")
    min_width: int = setting(4, "no width falls below this")
    round_to: int = setting(
        1, "every width the search makes is a multiple of N (fast kernels favour 8 or 16; 1: the paper's)"
    )

    def validate(self, num_widths: int) -> None:
        check(
            0 <= self.k0 and 2 * round(self.k0) <= num_widths,
            f"--k is {self.k0:g}; with {num_widths} widths it must lie in [0, {num_widths // 2}] "
            "so that the grown and shrunk groups do not overlap",
        )
        check(self.k_decay >= 0, f"--k-decay is {self.k_decay}; give a value >= 0")
        check(0 <= self.rate < 1, f"--adjust-rate is {self.rate}; give a value in [0, 1)")
        check(self.rate_decay >= 0, f"--adjust-rate-decay is {self.rate_decay}; give a value >= 0")
        check(self.min_width >= 1, f"--min-width is {self.min_width}; give at least 1")
        check(self.round_to >= 1, f"--round-to is {self.round_to}; give at least 1 (1: any width)")
        check(self.step in STEP_BASES, f"--step is {self.step!r}; choose one of {', '.join(STEP_BASES)}")


@dataclass(frozen=True)
class LatencyConfig:
    """How ``--budget latency`` times a network (latency.py)."""

    batch: int = setting(1, "--budget latency: images per timed pass", flag="--latency-batch")
    mode: str = setting(
        "infer",
        "--budget latency: infer (forward, eval mode) or train (forward and backward)",
        flag="--latency-mode",
        choices=LATENCY_MODES,
    )
    table: str | None = setting(
        None,
        "--budget latency: the lookup table of layer times (default: one per device and torch "
        "version under ~/.cache/netadjust/latency)",
        flag="--latency-table",
        kind=str,
    )
    max_disagreement: float = setting(
        0.1,
        "--budget latency: refuse a device whose two repeated timings of the original network "
        "disagree by more than this, max/min - 1 (it slowed down while timed: other jobs running)",
        flag="--latency-max-disagreement",
        was="--latency-max-spread",
    )
    threads: int = setting(
        1,
        "--budget latency: CPU threads the timings use (1: one core, steady on a shared machine; "
        "0: torch's default, all cores)",
        flag="--latency-threads",
    )
    latency_precision: str = setting(
        "fp32",
        "--budget latency: the precision networks are timed in, as deployed (training: the "
        "recipe's autocast)",
        flag="--latency-precision",
        choices=LATENCY_PRECISIONS,
    )

    def validate(self) -> None:
        check(self.batch >= 1, f"--latency-batch is {self.batch}; give at least 1")
        check(self.mode in LATENCY_MODES, f"--latency-mode is {self.mode!r}; choose infer or train")
        check(
            self.max_disagreement >= 0,
            f"--latency-max-disagreement is {self.max_disagreement}; give a value >= 0",
        )
        check(self.threads >= 0, f"--latency-threads is {self.threads}; give 1 or more (0: torch's default)")
        check(
            self.latency_precision in LATENCY_PRECISIONS,
            f"--latency-precision is {self.latency_precision!r}; "
            f"choose one of {', '.join(LATENCY_PRECISIONS)}",
        )


@dataclass(frozen=True)
class SearchConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: Recipe = field(default_factory=Recipe)
    fur: FurConfig = field(default_factory=FurConfig)
    rule: AdjustRule = field(default_factory=AdjustRule)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    iterations: int = setting(10, "train-FUR-adjust rounds")
    budget: str = setting(
        "macs",
        "the cost held constant: MACs (the paper's), parameters, or latency measured on this device",
        choices=BUDGETS,
    )
    inherit: float | None = setting(
        None,
        "iterations after the first start from the previous one's trained weights carried into "
        "the new widths and train this many epochs (below 1: one pass over that share of the "
        "training images) instead of training from scratch (the paper's); what it saves and "
        "costs, measured: docs/inherit.md; 0: every iteration from scratch",
        kind=float,
    )
    initial_widths: Widths | None = None  # None: the space's base widths (--widths reads a file)
    seed: int = setting(0, "seed of weights, data order, augmentation and masks")
    device: str = setting("cpu", "cpu, cuda or cuda:N (the command line's default: cuda if present)")
    out: str = setting("runs/search", "run directory (the command line's default: runs/search-<time>)")

    def validate(self) -> None:
        """The checks that need no data, no model and no run directory."""
        self.recipe.validate()
        self.fur.validate()
        self.data.validate()
        self.latency.validate()
        check(self.iterations >= 1, f"--iterations is {self.iterations}; give at least 1")
        check(self.budget in BUDGETS, f"--budget is {self.budget!r}; choose one of {', '.join(BUDGETS)}")
        check(
            self.inherit is None
            or (
                math.isfinite(self.inherit)
                and (0 <= self.inherit < 1 or self.inherit == int(self.inherit) >= 1)
            ),
            f"--inherit is {self.inherit}; give whole epochs (e.g. 1), a share of one below 1 (e.g. 0.5) "
            "or 0 (from scratch)",
        )
