"""The ``netadjust`` command line: its parser, generated from the settings in ``config.py``,
and ``main``, which hands each subcommand to ``commands.py``.

Exit status: 0 success, 2 bad input (one line on stderr), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from .config import BUDGETS, AdjustRule, DataConfig, FurConfig, LatencyConfig, ModelSpec, Recipe, SearchConfig
from .errors import UserError
from .presets import DEFAULT_PRESET, FINAL_TRAINING, PRESETS
from .settings import flags
from .version import __version__
from .wording import after_bar, one_line

# settings whose default the command line decides (cuda if present; a time-stamped folder)
DECIDED_HERE = {"device", "out"}
PRESET_HELP = (
    "group of defaults: standard (the default: 6 iterations, the first of 4 epochs, the others "
    "fine-tuning their predecessor's weights on a quarter of the training images; adjust rate 0.5, FUR "
    "with T = 2 on 6,000 images; about half of one final training on the README's rows), quick "
    "(minutes on a CPU, a smoke test: half-width ResNet-20, Fashion-MNIST, 3 iterations of 3 epochs), "
    "fmnist (the README's results: 6 iterations of 4 epochs from scratch, adjust rate 0.5, FUR with "
    "T = 4 on 6,000 images; the search prints its time estimate) or paper (the "
    "reference's CIFAR setting, the defaults shown below, on CIFAR-100 "
    "without FUR's control variate; with --dataset imagenet its ImageNet setting: ResNet-18, 10 "
    "epochs per iteration, lr 0.2 at batch 64 per process, weight decay 4e-5, FUR drop rate 0.2, "
    "k 6 without decay, adjust rate 0.1, regulariser without depth ramp); --dry-run prints every value"
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as a ``UserError`` (one line, exit 2)."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def add_settings(group, cls: type, names=None, *, presets: dict[str, dict] | None = None, defaults=True):
    """One flag per setting of ``cls`` (those in ``names``, or all), with its help and, if
    ``defaults``, its default: under each of ``presets`` where they differ."""
    for flag in flags(cls, inner=False):
        if names is not None and flag.dest not in names:
            continue
        meta = flag.field.metadata
        under = {name: values.get(flag.dest, flag.default) for name, values in (presets or {}).items()}
        if not defaults or flag.dest in DECIDED_HERE or (flag.default is None and not any(under.values())):
            shown = ""
        elif len({str(value) for value in under.values()}) > 1:
            shown = (
                " (default: "
                + ", ".join(
                    f"{'none' if value is None else value} with --preset {name}"
                    for name, value in under.items()
                )
                + ")"
            )
        else:
            shown = f" (default {flag.default})"
        help = meta["help"] + shown
        spelled = [flag.name] + ([meta["was"]] if meta["was"] else [])  # the first one sets the dest
        if meta["kind"] is bool:
            group.add_argument(*spelled, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            kind = finite if meta["kind"] is float else meta["kind"]
            group.add_argument(*spelled, type=kind, choices=meta["choices"], default=None, help=help)


def finite(text: str) -> float:
    """A float flag's value: a number, not inf or nan (every setting is a finite amount)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_download_flags(group) -> None:
    group.add_argument(
        "--download",
        action="store_true",
        help="fetch the official files into --data-dir when missing (checksums verified)",
    )
    group.add_argument("--mirror", default=None, help="base URL to download from instead of the official one")


WIDTHS_HELP = "JSON file {width name: channels} or a final.json (whose network settings it brings)"


def search_parser(commands) -> None:
    search = commands.add_parser("search", help="run the Network Adjustment search")
    search.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET, help=PRESET_HELP)
    group = search.add_argument_group("network")
    add_settings(group, ModelSpec, presets=PRESETS)
    group.add_argument("--widths", default=None, help=WIDTHS_HELP + "; the search starts from them")
    group = search.add_argument_group("data")
    add_settings(group, DataConfig, presets=PRESETS)
    add_download_flags(group)
    add_settings(search.add_argument_group("training"), Recipe, presets=PRESETS)
    add_settings(search.add_argument_group("FUR"), FurConfig, presets=PRESETS)
    add_settings(search.add_argument_group("adjustment"), AdjustRule, presets=PRESETS)
    group = search.add_argument_group("search")
    add_settings(group, SearchConfig, presets=PRESETS)
    add_settings(search.add_argument_group("latency budget"), LatencyConfig, presets=PRESETS)
    group.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the search in RUN_DIR with its recorded settings"
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
        help="run as N processes on this machine (DDP; one per GPU on CUDA), as torchrun would",
    )
    group.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds a process waits for the others before it gives up (several processes; default 1800)",
    )
    group.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN_DIR/tensorboard (needs the tensorboard package)",
    )


def train_parser(commands) -> None:
    train = commands.add_parser("train", help="train one configuration on the full training set")
    train.add_argument(
        "--preset",
        choices=sorted(FINAL_TRAINING),
        help="a preset's final training (paper: the reference's, 200 epochs on CIFAR, or with --dataset "
        "imagenet 90 epochs, lr 0.4, label smoothing 0.1, 5 warm-up epochs; fmnist: 5 epochs at lr 0.1, "
        "the README's results; standard: 5 epochs at lr 0.05, the default search's; quick: the quick "
        "search's 3); flags override",
    )
    group = train.add_argument_group("network")
    add_settings(group, ModelSpec)
    group.add_argument(
        "--widths", help=WIDTHS_HELP + "; a search's final.json also brings its recipe and dataset"
    )
    group = train.add_argument_group("data")
    add_settings(group, DataConfig, set(DataConfig.__dataclass_fields__) - {"val_fraction", "val_limit"})
    add_download_flags(group)
    group = train.add_argument_group("training (default: a final.json's search recipe, else the reference's)")
    add_settings(group, Recipe)
    add_settings(group, SearchConfig, {"seed", "device"})
    train.add_argument("--out", help="result file (default runs/train-<time>.json); the weights go beside it")
    train.add_argument("--onnx", action="store_true", help="also write the trained network as ONNX")


def compare_parser(commands) -> None:
    compare = commands.add_parser(
        "compare", help="train original, searched and uniformly scaled widths; compare test accuracy"
    )
    compare.add_argument("run_dir", metavar="RUN_DIR", help="a finished search's run directory")
    compare.add_argument(
        "--seeds", type=int, default=1, help="trainings per network, seeds 0..N-1 (default 1)"
    )
    compare.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    compare.add_argument(
        "--baseline",
        nargs="+",
        choices=["pruned", "slimming", "depgraph"],
        metavar="NAME",
        help="also train pruning counterparts at the searched cost, each from the original at 2x its "
        "widths trained for the search's epochs: slimming (Network Slimming: L1 on the norm scales, "
        "one global |gamma| threshold), depgraph (DepGraph's group sparsity, one global threshold on "
        "group norms), pruned (Torch-Pruning's L1 magnitude with its per-group normalisation: keeps "
        "the original's proportions; needs netadjust[models]; not on the CIFAR ResNets)",
    )
    compare.add_argument(
        "--preset",
        choices=sorted(FINAL_TRAINING),
        help="train with a preset's final training instead of the run's recipe (see train --help)",
    )
    group = compare.add_argument_group("training (default: the run's own recipe and device)")
    add_settings(group, Recipe, defaults=False)
    add_settings(group, SearchConfig, {"device"}, defaults=False)
    group = compare.add_argument_group("data (default: the run's dataset, all training and test images)")
    add_settings(group, DataConfig, {"data_dir", "train_limit", "test_limit", "workers"}, defaults=False)
    compare.add_argument("--force", action="store_true", help="retrain results kept with other settings")


def add_input_flags(parser, recorded: str) -> None:
    """The input a network is counted at: a dataset's, as ``search`` would train it, unless
    each of its parts is given."""
    parser.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="count at this dataset's input and classes (default fashion-mnist, 1x28x28 and 10 "
        "classes, as netadjust search's)",
    )
    default = f"default: {recorded}the dataset's"
    parser.add_argument(
        "--num-classes", type=int, help=f"classes (passed to a factory that takes them; {default})"
    )
    parser.add_argument("--in-channels", type=int, help=f"image channels ({default})")
    parser.add_argument("--image-size", type=int, help=f"side of the square input ({default})")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="netadjust",
        description="Find better per-layer channel widths for a CNN at the same FLOPs budget "
        "(Network Adjustment, Chen et al., CVPR 2020).",
    )
    parser.add_argument("--version", action="version", version=f"netadjust {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    search_parser(commands)
    train_parser(commands)
    compare_parser(commands)

    cost = commands.add_parser("cost", help="MACs and parameters of a configuration")
    cost.add_argument(
        "space", nargs="?", help="search space, e.g. resnet20 (see `netadjust spaces`), or --model"
    )
    add_settings(cost, ModelSpec, {"width_mult", "padding", "model", "model_args"})
    cost.add_argument("--widths", help=WIDTHS_HELP)
    add_input_flags(cost, "a final.json's recorded input, else ")
    cost.add_argument("--budget", choices=BUDGETS, help="name the budget measure (latency: timed here)")
    add_settings(cost, LatencyConfig)
    cost.add_argument("--device", help="--budget latency: the device to time on (default cpu)")
    add_settings(cost, Recipe, {"precision", "channels_last"})
    cost.add_argument("--json", action="store_true", help="print one JSON object")

    inspect = commands.add_parser("inspect", help="the searchable widths netadjust finds in your own model")
    inspect.add_argument(
        "--model",
        required=True,
        help="pkg.module:factory or path/to/file.py:factory returning an nn.Module, or torchvision:NAME, "
        "timm:NAME (torchvision: or timm: alone lists the zoo's names)",
    )
    inspect.add_argument("--model-args", help="JSON object of further keyword arguments for the factory")
    add_input_flags(inspect, "")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")

    report = commands.add_parser("report", help="plots and a Markdown summary of a run directory")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory (finished or not)")

    export = commands.add_parser("export", help="write a search's widths, weights and ONNX to a folder")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory")
    export.add_argument("--out", required=True, help="folder to write into")
    export.add_argument(
        "--weights",
        help="a .safetensors of the searched widths (default: the one `netadjust compare` trained)",
    )
    export.add_argument("--onnx", action="store_true", help="also write model.onnx")
    export.add_argument("--force", action="store_true", help="replace the files an earlier export wrote")

    spaces = commands.add_parser("spaces", help="list the built-in search spaces")
    spaces.add_argument("--json", action="store_true", help="print one JSON list")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named here, where the subcommand whose help lists the flags is known
            raise UserError(
                f"unrecognized arguments: {' '.join(unknown)} (see netadjust {args.command} --help)"
            )
        args.argv = argv
        from .commands import COMMANDS  # torch and the rest: not needed to parse, nor for --help

        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe is met here, not at the interpreter's exit
        return code
    except UserError as error:
        if getattr(error, "rank", 0) == 0:  # a SharedError is printed by rank 0 alone
            print(f"netadjust: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{after_bar()}netadjust: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output left (`| head`): end quietly, as on SIGPIPE;
        # a search keeps its run directory and resumes from its last checkpoint
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141


if __name__ == "__main__":
    sys.exit(main())
