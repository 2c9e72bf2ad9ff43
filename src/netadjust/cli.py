"""The ``netadjust`` command. Thin: parses flags, calls one library function, prints.

Exit status: 0 success, 2 bad input (one line on stderr), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from dataclasses import asdict

from . import __version__
from .adjust import AdjustRule
from .api import cost
from .cost import model_cost
from .distributed import SharedError, launch, launched_by_torchrun, local_device, start
from .distributed import stop as stop_processes
from .errors import UserError
from .export import build_call
from .presets import FINAL_TRAINING, PRESETS, final_training, preset_settings
from .search import (
    DataConfig,
    FurConfig,
    SearchConfig,
    dry_run,
    read_run,
    read_run_settings,
    run_search,
    search_config_from_settings,
    validate,
)
from .spaces import ModelSpec, base_widths, get_space, space_names
from .store import read_widths_file, user_path
from .train import Recipe, default_device
from .wording import plural


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as a ``UserError`` (one line, exit 2)."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def add_model_flags(parser: argparse.ArgumentParser, space_positional: bool = False) -> None:
    group = parser.add_argument_group("network")
    if space_positional:
        group.add_argument("space", help="search space, e.g. resnet20 (see `netadjust spaces`)")
    else:
        group.add_argument("--space", default=None, help="search space (default resnet20)")
    group.add_argument("--width-mult", type=float, default=None, help="scale of the base widths")
    group.add_argument(
        "--padding",
        choices=["max", "local"],
        default=None,
        help="residual shortcut mode when widths differ (default max)",
    )
    group.add_argument("--widths", default=None, help="JSON file {width name: channels} or a final.json")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=None,
        help="fashion-mnist (default), mnist, cifar10, cifar100, or imagenet: any folder with train/ and "
        "val/, one sub-folder of images per class",
    )
    group.add_argument("--data-dir", default=None, help="folder with the dataset's files")
    group.add_argument(
        "--download",
        action="store_true",
        help="fetch the official files into --data-dir when missing (checksums verified)",
    )
    group.add_argument("--mirror", default=None, help="base URL to download from instead of the official one")
    group.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    group.add_argument("--val-limit", type=int, default=None, help="use only the first N validation images")
    group.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    group.add_argument(
        "--image-size", type=int, default=None, help="imagenet: side of the training and test crops (224)"
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="imagenet: processes decoding images (0: the main one; default: by the cores per process)",
    )


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    group.add_argument(
        "--batch-size", type=int, default=None, help="images per step, per process (default: the preset's)"
    )
    group.add_argument("--lr", type=float, default=None, help="peak learning rate")
    group.add_argument("--lr-min", type=float, default=None, help="final learning rate of the cosine")
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    group.add_argument("--weight-decay", type=float, default=None)
    group.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up from 0 (default 0)")
    group.add_argument("--label-smoothing", type=float, default=None)
    group.add_argument(
        "--train-drop-rate",
        type=float,
        default=None,
        help="channel-dropout regulariser at the last epoch and deepest layer (0: off; default 0.05)",
    )
    group.add_argument(
        "--drop-depth-ramp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the regulariser's rate grows with depth, (i+1)/L for width i (default on; the "
        "reference's ImageNet search turns it off)",
    )
    group.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="autocast precision of training (auto: bf16 where the device has it)",
    )
    group.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train in NHWC memory format (default on)",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the dataset's random crop and flip (default on)",
    )
    group.add_argument(
        "--sync-bn",
        action="store_true",
        help="with several processes: batch-norm statistics over the global batch",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed of weights, data order, augmentation and masks (default 0)"
    )
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="netadjust",
        description="Find better per-layer channel widths for a CNN at the same FLOPs budget "
        "(Network Adjustment, Chen et al., CVPR 2020).",
    )
    parser.add_argument("--version", action="version", version=f"netadjust {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    search = commands.add_parser("search", help="run the Network Adjustment search")
    search.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="group of defaults: quick (minutes on a CPU: half-width ResNet-20, Fashion-MNIST, "
        "3 iterations of 3 epochs) or paper (the reference's CIFAR setting: ResNet-20, CIFAR-100, "
        "10 iterations of 200 epochs, lr 0.15, batch 128, drop rate 0.05, T 5, k 6 decaying 0.5, "
        "adjust rate 0.15 decaying 0.01 per rank, min width 4; with --dataset imagenet its ImageNet "
        "setting: ResNet-18, 10 epochs per iteration, lr 0.2 at batch 64 per process, weight decay "
        "4e-5, FUR drop rate 0.2, k 6 without decay, adjust rate 0.1, regulariser without depth "
        "ramp); --dry-run prints every value",
    )
    add_model_flags(search)
    add_data_flags(search)
    add_training_flags(search)
    group = search.add_argument_group("search")
    group.add_argument(
        "--iterations", type=int, default=None, help="train-FUR-adjust rounds (default: the preset's)"
    )
    group.add_argument(
        "--budget",
        choices=["macs", "params"],
        default="macs",
        help="the cost held constant: MACs (default, the paper's) or parameters",
    )
    group.add_argument("--drop-rate", type=float, default=None, help="p0, FUR base drop rate")
    group.add_argument("--max-drop-rate", type=float, default=0.9, help="FUR drop rates are clipped here")
    group.add_argument("--repeats", type=int, default=None, help="T, masks per width in FUR")
    group.add_argument(
        "--fur-method",
        choices=["auto", "fast", "reference", "second-order"],
        default="auto",
        help="auto: the fast path where the space exposes its blocks; second-order: no masks, "
        "the expected loss rise from the loss curvature (docs/fur-noise.md)",
    )
    group.add_argument(
        "--fur-curvature",
        choices=["exact", "sampled", "empirical"],
        default="exact",
        help="second-order FUR's curvature: exact (one backward pass per class), sampled "
        "(--repeats label draws from the model), empirical (the true labels)",
    )
    group.add_argument(
        "--fur-control-variate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Monte Carlo FUR less each mask's first-order loss change, whose mean is 0: the "
        "same quantity with less mask noise, for one backward pass per batch (default: on, "
        "except in the paper preset; docs/fur-noise.md)",
    )
    group.add_argument(
        "--fur-bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="estimate FUR under bf16 autocast (default: where the device has native bf16; "
        "bench/fur_bf16_ranking.py: rank correlation with fp32 FUR 0.988-1.000 on 8 networks)",
    )
    group.add_argument(
        "--k", type=float, default=None, help="widths grown and shrunk at iteration 0 (default: the preset's)"
    )
    group.add_argument("--k-decay", type=float, default=None, help="k falls by this per iteration")
    group.add_argument("--adjust-rate", type=float, default=None, help="a, share of the initial width moved")
    group.add_argument("--adjust-rate-decay", type=float, default=None, help="d, a falls by this per rank")
    group.add_argument(
        "--min-width", type=int, default=None, help="no width falls below this (default: the preset's)"
    )
    group.add_argument(
        "--round-to",
        type=int,
        default=None,
        help="every width the search makes is a multiple of N (fast kernels favour multiples of "
        "8 or 16; default 1: any width, the paper's)",
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training set held out for FUR (default 0.1)",
    )
    group.add_argument("--out", default=None, help="run directory (default runs/search-<time>)")
    group.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the search in RUN_DIR with its recorded settings",
    )
    group.add_argument(
        "--force", action="store_true", help="start over in an --out that holds another or a finished search"
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved settings as JSON (config.json's, plus k per iteration) and stop: "
        "no data read, nothing written",
    )
    group.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="run as N processes on this machine (DDP; one per GPU on CUDA), as torchrun would",
    )
    group.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds a process waits for the others before it gives up (several processes)",
    )
    group.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN_DIR/tensorboard (needs the tensorboard package)",
    )

    train = commands.add_parser("train", help="train one configuration on the full training set")
    train.add_argument(
        "--preset",
        choices=sorted(FINAL_TRAINING),
        default=None,
        help="a preset's final training (paper: the reference's, 200 epochs on CIFAR, or with "
        "--dataset imagenet 90 epochs, lr 0.4, label smoothing 0.1, 5 warm-up epochs); flags override",
    )
    add_model_flags(train)
    add_data_flags(train)
    add_training_flags(train)
    train.add_argument(
        "--out",
        default=None,
        help="result file (default runs/train-<time>.json); the weights go beside it (.safetensors)",
    )
    train.add_argument("--onnx", action="store_true", help="also write the trained network as ONNX")

    cost = commands.add_parser("cost", help="MACs and parameters of a configuration")
    add_model_flags(cost, space_positional=True)
    cost.add_argument("--num-classes", type=int, default=10)
    cost.add_argument("--in-channels", type=int, default=3)
    cost.add_argument("--image-size", type=int, default=32)
    cost.add_argument("--budget", choices=["macs", "params"], default=None, help="name the budget measure")
    cost.add_argument("--json", action="store_true", help="print one JSON object")

    report = commands.add_parser("report", help="plots and a Markdown summary of a run directory")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory (finished or not)")

    compare = commands.add_parser(
        "compare", help="train original, searched and uniformly scaled widths; compare test accuracy"
    )
    compare.add_argument("run_dir", metavar="RUN_DIR", help="a finished search's run directory")
    compare.add_argument("--seeds", type=int, default=1, help="trainings per network (seeds 0..N-1)")
    compare.add_argument("--seed", type=int, default=0, help="first seed")
    compare.add_argument(
        "--preset",
        choices=sorted(FINAL_TRAINING),
        default=None,
        help="train with a preset's final training instead of the run's recipe (see train --help)",
    )
    group = compare.add_argument_group("training (default: the run's own recipe)")
    for flag, kind in RECIPE_FLAGS.items():
        group.add_argument(f"--{flag}", type=kind, default=None)
    group.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default=None)
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--drop-depth-ramp", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--device", default=None, help="default: the run's device")
    group = compare.add_argument_group("data (default: the run's dataset, all training and test images)")
    group.add_argument("--data-dir", default=None, help="default: the run's")
    group.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    group.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    group.add_argument("--workers", type=int, default=None, help="imagenet: processes decoding images")
    compare.add_argument("--force", action="store_true", help="retrain results kept with other settings")

    export = commands.add_parser("export", help="write a search's widths, weights and ONNX to a folder")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory")
    export.add_argument("--out", required=True, help="folder to write into")
    export.add_argument(
        "--weights",
        default=None,
        help="a .safetensors of the searched widths (default: the one `netadjust compare` trained)",
    )
    export.add_argument("--onnx", action="store_true", help="also write model.onnx")

    spaces = commands.add_parser("spaces", help="list the built-in search spaces")
    spaces.add_argument("--json", action="store_true")
    return parser


def pick(args: argparse.Namespace, defaults: dict, name: str, fallback=None):
    """A flag's value if given, else the defaults' (a preset or a widths file), else fallback."""
    value = getattr(args, name, None)
    if value is None:
        value = defaults.get(name)
    return fallback if value is None else value


def model_spec(args: argparse.Namespace, defaults: dict) -> ModelSpec:
    """Space, width multiplier and padding: flags first, then ``defaults`` (a preset or
    the model a widths file records)."""
    space = pick(args, defaults, "space", "resnet20")
    get_space(space)
    width_mult = pick(args, defaults, "width_mult", 1.0)
    if not 0 < width_mult <= 64:
        raise UserError(f"--width-mult is {width_mult}; give a value in (0, 64]")
    return ModelSpec(space=space, width_mult=width_mult, padding=pick(args, defaults, "padding", "max"))


def widths_and_model(args: argparse.Namespace) -> tuple[dict | None, dict]:
    """The ``--widths`` file's widths and recorded model settings (None, {} without one)."""
    return read_widths_file(args.widths) if args.widths else (None, {})


def recipe(args: argparse.Namespace, preset: dict) -> Recipe:
    defaults = Recipe()
    return Recipe(
        epochs=pick(args, preset, "epochs", defaults.epochs),
        batch_size=pick(args, preset, "batch_size", defaults.batch_size),
        lr=pick(args, preset, "lr", defaults.lr),
        lr_min=pick(args, preset, "lr_min", defaults.lr_min),
        momentum=args.momentum,
        weight_decay=pick(args, preset, "weight_decay", defaults.weight_decay),
        warmup_epochs=pick(args, preset, "warmup_epochs", defaults.warmup_epochs),
        label_smoothing=pick(args, preset, "label_smoothing", defaults.label_smoothing),
        drop_rate=pick(args, preset, "train_drop_rate", defaults.drop_rate),
        drop_depth_ramp=pick(args, preset, "drop_depth_ramp", defaults.drop_depth_ramp),
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        augment=args.augment,
        sync_bn=args.sync_bn,
    )


def data_config(args: argparse.Namespace, preset: dict) -> DataConfig:
    dataset = pick(args, preset, "dataset", "fashion-mnist")
    if args.download:
        from .download import ensure_downloaded

        ensure_downloaded(dataset, args.data_dir, args.mirror)
    return DataConfig(
        dataset=dataset,
        data_dir=pick(args, preset, "data_dir"),
        val_fraction=getattr(args, "val_fraction", 0.1),
        train_limit=pick(args, preset, "train_limit"),
        val_limit=pick(args, preset, "val_limit"),
        test_limit=pick(args, preset, "test_limit"),
        image_size=args.image_size,
        workers=args.workers,
    )


class Terminated(Exception):
    """SIGTERM, turned into an exception so that the search unwinds cleanly."""


def _raise_terminated(signum, frame):
    raise Terminated()


def command_search(args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.resume:
            config = search_config_from_settings(read_run_settings(user_path(args.resume)), args.resume)
        else:
            args.download = False  # a dry run touches nothing
            config = search_config(args)
        print(json.dumps(dry_run(config, args.nproc or 1), indent=1))
        return 0
    if args.nproc is not None and not launched_by_torchrun():
        if args.nproc < 1:
            raise UserError(f"--nproc is {args.nproc}; give at least 1")
        # refuse bad input here, in one line, before any process starts
        validate(
            search_config_from_settings(read_run_settings(user_path(args.resume)), args.resume)
            if args.resume
            else search_config(args)
        )
        return launch(args.nproc, without_flag(args.argv, "--nproc"))
    if args.dist_timeout <= 0:
        raise UserError(f"--dist-timeout is {args.dist_timeout}; give a positive number of seconds")
    processes = start(args.dist_timeout)
    if args.resume:  # rank 0 reads the run directory: other machines need not see it
        out = user_path(args.resume)
        config = search_config_from_settings(processes.agree(lambda: read_run_settings(out)), str(out))
        if args.device:
            config = dataclasses.replace(config, device=args.device)
    else:
        config = search_config(args)
        out = user_path(config.out)
    config = dataclasses.replace(config, device=local_device(config.device, processes))
    nproc_flag = f" --nproc {processes.world_size}" if processes.world_size > 1 else ""
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    finished = False
    try:
        run_search(config, force=args.force, tensorboard=args.tensorboard, processes=processes)
        finished = True
    except (KeyboardInterrupt, Terminated) as stop:
        if processes.is_main:
            print(
                f"{after_bar()}netadjust: interrupted; {out} keeps the last checkpoint, continue with: "
                f"netadjust search --resume {out}{nproc_flag}",
                file=sys.stderr,
            )
        return 143 if isinstance(stop, Terminated) else 130
    except RuntimeError as error:
        if processes.world_size == 1:
            raise
        # a peer process died or hung: collective operations fail (gloo) or time out
        reason = one_line(str(error).splitlines()[0] if str(error) else type(error).__name__)
        print(
            f"netadjust: error: process {processes.rank} lost contact with the others ({reason[:200]}); "
            f"{out} keeps the last checkpoint, continue with: netadjust search --resume {out}{nproc_flag}",
            file=sys.stderr,
        )
        return 1
    finally:
        stop_processes(clean=finished)
        # a SIGTERM from here on (the launcher stopping a survivor that is already exiting)
        # ends the process as by default, not with a traceback from an exit handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0


def without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag VALUE`` / ``flag=VALUE``."""
    result, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            result.append(token)
    return result


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The search settings from flags, the preset and a widths file."""
    preset = preset_settings(args.preset, args.dataset)
    widths, recorded = widths_and_model(args)
    spec = model_spec(args, {**preset, **recorded})
    return SearchConfig(
        model=spec,
        data=data_config(args, preset),
        recipe=recipe(args, preset),
        fur=FurConfig(
            base_rate=pick(args, preset, "drop_rate"),
            repeats=pick(args, preset, "repeats"),
            max_rate=args.max_drop_rate,
            method=args.fur_method,
            curvature=args.fur_curvature,
            control_variate=pick(args, preset, "fur_control_variate", True),
            bf16=args.fur_bf16,
        ),
        rule=AdjustRule(
            k0=pick(args, preset, "k"),
            k_decay=pick(args, preset, "k_decay"),
            rate=pick(args, preset, "adjust_rate"),
            rate_decay=pick(args, preset, "adjust_rate_decay"),
            min_width=pick(args, preset, "min_width"),
            round_to=pick(args, preset, "round_to", 1),
        ),
        iterations=pick(args, preset, "iterations"),
        budget=args.budget,
        initial_widths=widths,
        seed=args.seed,
        device=args.device or default_device(),
        out=args.out or time.strftime("runs/search-%Y%m%d-%H%M%S"),
    )


# the recipe fields `recipe` takes from defaults, under their flag names
PICKED_RECIPE = ("epochs", "batch_size", "lr", "lr_min", "weight_decay", "warmup_epochs", "label_smoothing")
PICKED_RECIPE += ("train_drop_rate", "drop_depth_ramp")


def run_defaults(args: argparse.Namespace) -> tuple[dict, dict, str | None]:
    """When ``--widths`` is a search's ``final.json``: that search's recipe and its dataset
    (every image of it, not the search's limits) as defaults, and its run directory."""
    path = user_path(args.widths) if args.widths else None
    if path is None or path.name != "final.json" or not (path.parent / "config.json").exists():
        return {}, {}, None
    settings = read_run_settings(path.parent)
    fields = {("train_drop_rate" if k == "drop_rate" else k): v for k, v in settings["recipe"].items()}
    data = {key: settings["data"].get(key) for key in ("dataset", "data_dir")}
    return {key: fields[key] for key in PICKED_RECIPE if key in fields}, data, str(path.parent)


def command_train(args: argparse.Namespace) -> int:
    from .retrain import train_and_test

    widths, recorded = widths_and_model(args)
    run_recipe, run_data, run_dir = run_defaults(args)
    data = data_config(args, run_data)
    spec = model_spec(args, recorded)
    if args.preset:
        training, source = recipe(args, final_training(args.preset, data.dataset)), f"preset {args.preset}"
    elif run_dir:
        training, source = recipe(args, run_recipe), f"the recipe of the search in {run_dir}"
    else:
        training, source = recipe(args, {}), "the reference's CIFAR final training"
    out = user_path(args.out or time.strftime("runs/train-%Y%m%d-%H%M%S.json"))
    print(
        f"train: {spec.space} (width multiplier {spec.width_mult}, "
        f"{'widths of ' + args.widths if args.widths else 'base widths'}) on {data.dataset}, "
        f"{plural(training.epochs, 'epoch')}, lr {training.lr}, batch {training.batch_size} ({source}, "
        f"flags overriding); result to {out}",
        flush=True,
    )
    result = train_and_test(
        spec,
        widths,
        data,
        training,
        seed=args.seed,
        device=args.device or default_device(),
        out=out,
        onnx=args.onnx,
    )
    test = result["test"]
    written = ", ".join(result[key] for key in ("path", "weights", "onnx") if key in result)
    print(
        f"test top-1 {100 * test['top1']:.2f}% top-5 {100 * test['top5']:.2f}% loss {test['loss']:.4f} "
        f"({result['macs']:,} MACs, {result['params']:,} params); wrote {written}"
    )
    return 0


def command_cost(args: argparse.Namespace) -> int:
    widths, recorded = widths_and_model(args)
    spec = model_spec(args, recorded)
    for flag, value in (
        ("--num-classes", args.num_classes),
        ("--in-channels", args.in_channels),
        ("--image-size", args.image_size),
    ):
        if value < 1:
            raise UserError(f"{flag} is {value}; give at least 1")
    report = cost(
        spec.space,
        widths,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        image_size=args.image_size,
        width_mult=spec.width_mult,
        padding=spec.padding,
        budget=args.budget or "macs",
    )
    if args.json:
        printed = asdict(report)
        if args.budget:
            printed["budget"] = {"measure": args.budget, "value": printed[args.budget]}
        print(json.dumps(printed))
    else:
        print(
            f"{spec.space}: {report.macs:,} MACs, {report.params:,} params "
            f"({args.in_channels}x{args.image_size}x{args.image_size} input, {args.num_classes} classes)"
        )
    return 0


# compare's flags that override the run's recipe: flag -> type (Recipe field = flag, dashes
# as underscores; --train-drop-rate sets drop_rate)
RECIPE_FLAGS = {
    "epochs": int,
    "batch-size": int,
    "lr": float,
    "lr-min": float,
    "momentum": float,
    "weight-decay": float,
    "warmup-epochs": float,
    "label-smoothing": float,
    "train-drop-rate": float,
}


def command_report(args: argparse.Namespace) -> int:
    from .report import write_report

    for path in write_report(args.run_dir):
        print(path)
    run = read_run(args.run_dir)
    if run.final is not None:
        final = str(user_path(args.run_dir) / "final.json")
        print(f"rebuild it in Python with: {build_call(ModelSpec(**run.final['model']), final)}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from .compare import compare_run

    fields = [flag.replace("-", "_") for flag in RECIPE_FLAGS] + [
        "precision",
        "channels_last",
        "drop_depth_ramp",
    ]
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if args.preset:
        given = {**final_training(args.preset, read_run(args.run_dir).settings["data"]["dataset"]), **given}
    overrides = {("drop_rate" if name == "train_drop_rate" else name): value for name, value in given.items()}
    data = {
        name: getattr(args, name)
        for name in ("data_dir", "train_limit", "test_limit", "workers")
        if getattr(args, name) is not None
    }
    try:
        compare_run(
            args.run_dir,
            seeds=args.seeds,
            first_seed=args.seed,
            recipe_overrides=overrides,
            data_overrides=data,
            device=args.device,
            force=args.force,
        )
    except KeyboardInterrupt:
        print(
            f"{after_bar()}netadjust: interrupted; the networks trained so far are kept in "
            f"{args.run_dir}/compare: run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    return 0


def command_export(args: argparse.Namespace) -> int:
    from .export import export_run

    written = export_run(
        user_path(args.run_dir),
        user_path(args.out),
        user_path(args.weights) if args.weights else None,
        args.onnx,
    )
    for path in written:
        print(path)
    spec = ModelSpec(**read_run(args.run_dir).final["model"])
    print(f"rebuild it in Python with: {build_call(spec, str(written[0]))}")
    if len(written) == 1:
        print(
            f"no trained network of these widths was found; `netadjust compare {args.run_dir}` trains "
            "one (or pass a `netadjust train` .safetensors with --weights)"
        )
    return 0


def command_spaces(args: argparse.Namespace) -> int:
    rows = []
    for name in space_names():
        spec = ModelSpec(space=name, num_classes=10, in_channels=3, image_size=32)
        cost = model_cost(spec)
        rows.append(
            {
                "space": name,
                "macs": cost.macs,
                "params": cost.params,
                "widths": len(base_widths(spec)),
                "description": get_space(name).description,
            }
        )
    if args.json:
        print(json.dumps(rows))
    else:
        print("base costs for 3x32x32 input, 10 classes:")
        column = max(len(row["space"]) for row in rows)
        for row in rows:
            print(
                f"  {row['space']:<{column}} {row['macs']:>13,} MACs {row['params']:>11,} params  "
                f"{row['description']}"
            )
    return 0


def after_bar() -> str:
    """A newline where a progress bar may hold the terminal's current line, else nothing."""
    return "\n" if sys.stderr.isatty() else ""


def one_line(message: str) -> str:
    """Escape control characters (a user's argument may hold any) to keep the message one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


COMMANDS = {
    "search": command_search,
    "train": command_train,
    "cost": command_cost,
    "spaces": command_spaces,
    "report": command_report,
    "compare": command_compare,
    "export": command_export,
}


def main(argv: list[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named here, where the subcommand whose help lists the flags is known
            raise UserError(
                f"unrecognized arguments: {' '.join(unknown)} (see netadjust {args.command} --help)"
            )
        args.argv = argv
        return COMMANDS[args.command](args)
    except UserError as error:
        if not (isinstance(error, SharedError) and error.rank > 0):
            print(f"netadjust: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{after_bar()}netadjust: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
