"""What each subcommand of ``netadjust`` does with its parsed flags: build the typed
configuration, call the API or one library function, print the outcome."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time

from . import api
from .config import DataConfig, LatencyConfig, ModelSpec, Recipe, SearchConfig
from .cost import model_cost
from .data import DATASETS, model_spec_for
from .distributed import launch, launched_by_torchrun, local_device, start, without_flag
from .distributed import stop as stop_processes
from .errors import UserError
from .export import build_call
from .presets import TRAINING, final_training
from .resume import refuse_finished, resume_notes
from .rundir import config_from_settings, read_run, read_run_settings
from .settings import as_settings, configured, from_record, known_settings, record_settings
from .spaces import base_widths, check_widths, get_space, space_names
from .store import user_path
from .train import default_device
from .wording import after_bar, invocation, one_line, plural

INPUT = {"num_classes", "in_channels", "image_size"}  # the model settings a dataset decides


def given(args: argparse.Namespace, cls: type) -> dict:
    """The settings of ``cls`` that flags gave, by name."""
    return {
        name: getattr(args, name) for name in known_settings(cls) if getattr(args, name, None) is not None
    }


def download_if_asked(args: argparse.Namespace, data: DataConfig) -> None:
    if getattr(args, "download", False):
        from .data.download import ensure_downloaded

        ensure_downloaded(data.dataset, data.data_dir, args.mirror)


class Terminated(Exception):
    """SIGTERM, turned into an exception so that the search unwinds cleanly."""


def _raise_terminated(signum, frame):
    raise Terminated()


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The search settings from flags, the preset and a widths file."""
    return api.search_config(args.preset, widths=args.widths, **given(args, SearchConfig))


def command_search(args: argparse.Namespace) -> int:
    def this_config() -> SearchConfig:  # read here only where this process alone needs it
        return api.resumed_config(args.resume) if args.resume else search_config(args)

    if args.resume and not args.dry_run and os.environ.get("RANK", "0") == "0":
        refuse_finished(user_path(args.resume), args.iterations)
        if args.nproc is None:  # once: by this process, or by rank 0 of those it or torchrun started
            resume_notes(args)

    if args.dry_run:
        print(json.dumps(api.dry_run(this_config(), args.nproc or 1, not args.download), indent=1))
        return 0
    if args.nproc is not None and not launched_by_torchrun():
        if args.nproc < 1:
            raise UserError(f"--nproc is {args.nproc}; give at least 1")
        this_config().validate()  # bad input refused here, before any process starts
        return launch(args.nproc, without_flag(args.argv, "--nproc"))
    if args.dist_timeout <= 0:
        raise UserError(f"--dist-timeout is {args.dist_timeout}; give a positive number of seconds")
    processes = start(args.dist_timeout)
    if args.resume:  # rank 0 reads the run directory: other machines need not see it
        out = user_path(args.resume)
        config = config_from_settings(processes.agree(lambda: read_run_settings(out)), str(out))
        if args.device:
            config = dataclasses.replace(config, device=args.device)
    else:
        config = search_config(args)
        download_if_asked(args, config.data)
        out = user_path(config.out)
    config = dataclasses.replace(config, device=local_device(config.device, processes))
    nproc_flag = f" --nproc {processes.world_size}" if processes.world_size > 1 else ""
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    finished = False
    try:
        api.run(config, force=args.force, tensorboard=args.tensorboard, processes=processes)
        finished = True
    except (KeyboardInterrupt, Terminated) as stop:
        if processes.is_main:
            print(
                f"{after_bar()}netadjust: interrupted; {out} keeps the last checkpoint, continue with: "
                f"{invocation()} search --resume {out}{nproc_flag}",
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


def recipe(args: argparse.Namespace, defaults: dict) -> Recipe:
    """The training recipe: flags, then ``defaults`` (by flag name), then the reference's."""
    return configured(Recipe, {**defaults, **given(args, Recipe)})


def run_defaults(args: argparse.Namespace) -> tuple[dict, dict, str | None]:
    """When ``--widths`` is a search's ``final.json``: that search's recipe and its dataset
    (every image of it, not the search's limits) as defaults, and its run directory."""
    path = user_path(args.widths) if args.widths else None
    if path is None or path.name != "final.json" or not (path.parent / "config.json").exists():
        return {}, {}, None
    settings = read_run_settings(path.parent)
    run_recipe = as_settings(from_record(Recipe, settings["recipe"]))
    data = {key: settings["data"].get(key) for key in ("dataset", "data_dir")}
    return {key: run_recipe[key] for key in TRAINING}, data, str(path.parent)


def command_train(args: argparse.Namespace) -> int:
    from .retrain import check_training, train_and_test

    widths, recorded, recorded_cost = api.read_widths(args.widths)
    run_recipe, run_data, run_dir = run_defaults(args)
    data = api.with_absolute_paths(configured(DataConfig, {**run_data, **given(args, DataConfig)}))
    download_if_asked(args, data)
    spec = api.with_absolute_paths(
        configured(ModelSpec, {**record_settings(ModelSpec, recorded), **given(args, ModelSpec)})
    )
    if widths is not None and data.dataset in DATASETS:  # the network at the dataset's input
        trained = model_spec_for(spec, DATASETS[data.dataset])
        changed = set(given(args, ModelSpec)) | (INPUT if "dataset" in given(args, DataConfig) else set())
        checked = check_widths(trained, widths)
        api.check_rebuilds(args.widths, trained, checked, recorded, recorded_cost, changed)
    if args.preset:
        training, source = recipe(args, final_training(args.preset, data.dataset)), f"preset {args.preset}"
    elif run_dir:
        training, source = recipe(args, run_recipe), f"the recipe of the search in {run_dir}"
    else:
        training, source = recipe(args, {}), "the reference's CIFAR final training"
    if spec.model is None:
        get_space(spec.space)
    out = user_path(args.out or time.strftime("runs/train-%Y%m%d-%H%M%S.json"))
    check_training(data, training, out, args.onnx)  # refused before the line saying what will run
    described = f"widths of {args.widths}" if args.widths else "base widths"
    if args.widths and not recorded:
        described += " (it records no model settings: flags and defaults set them)"
    print(
        f"train: {spec.model or f'{spec.space} (width multiplier {spec.width_mult},'} "
        f"{'(' if spec.model else ''}{described}) "
        f"on {data.dataset}, "
        f"{plural(training.epochs, 'epoch')}, lr {training.lr}, batch {training.batch_size} ({source}, "
        f"flags overriding); result to {out}",
        flush=True,
    )
    seed = 0 if args.seed is None else args.seed
    result = train_and_test(
        spec,
        widths,
        data,
        training,
        seed=seed,
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


def counted_input(args: argparse.Namespace, recorded: dict) -> tuple[int, int, int]:
    """Classes, channels and image side to count a network at: each as given, else as a
    final.json recorded it, else the ``--dataset``'s."""
    if args.dataset not in DATASETS:
        raise UserError(f"--dataset {args.dataset!r} is unknown; choose one of {', '.join(DATASETS)}")
    info = DATASETS[args.dataset]
    return tuple(
        getattr(args, key) if getattr(args, key) is not None else recorded.get(key, getattr(info, key))
        for key in ("num_classes", "in_channels", "image_size")
    )


def command_cost(args: argparse.Namespace) -> int:
    if (args.space is None) == (args.model is None):
        raise UserError("give a space (e.g. netadjust cost resnet20) or --model REF, one of them")
    _, recorded, _ = api.read_widths(args.widths)
    classes, channels, size = counted_input(args, recorded)
    settings = given(args, ModelSpec)
    settings.pop("space", None)
    report = api.cost(
        args.space or "model",
        args.widths,  # with the settings it records, and checked to rebuild its network
        num_classes=classes,
        in_channels=channels,
        image_size=size,
        budget=args.budget or "macs",
        latency=configured(LatencyConfig, vars(args)),
        device=args.device or "cpu",
        precision=args.precision or Recipe.precision,
        channels_last=Recipe.channels_last if args.channels_last is None else args.channels_last,
        **settings,
    )
    if args.json:
        printed = dataclasses.asdict(report)
        if args.budget:
            value = report.latency["estimate"] if args.budget == "latency" else printed[args.budget]
            printed["budget"] = {"measure": args.budget, "value": value}
        print(json.dumps(printed))
        return 0
    print(
        f"{args.model or report.space + ' ×' + format(report.model['width_mult'], 'g')}: "
        f"{report.macs:,} MACs, {report.params:,} params ({channels}x{size}x{size} input, {classes} classes)"
    )
    if report.latency:
        timing = report.latency
        print(
            f"latency ({timing['mode']}, batch {timing['batch']}, {timing['latency_precision']}, "
            f"{timing['device']}): measured {1e3 * timing['measured']:.3f} ms (two repeats "
            f"{timing['disagreement']:.1%} apart), the table's estimate "
            f"{1e3 * timing['estimate']:.3f} ms ({timing['estimate'] / timing['measured'] - 1:+.1%}); "
            f"table {timing['table']}"
        )
    return 0


def command_report(args: argparse.Namespace) -> int:
    from .report import write_report

    for path in write_report(args.run_dir):
        print(path)
    run = read_run(args.run_dir)
    if run.final is not None:
        final = str(user_path(args.run_dir) / "final.json")
        print(f"rebuild it in Python with: {build_call(run.final.model, final)}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from .compare import compare_run

    overrides = given(args, Recipe)
    if args.preset:
        overrides = {**final_training(args.preset, read_run(args.run_dir).config.data.dataset), **overrides}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as search: even if started with it ignored
    try:
        compare_run(
            args.run_dir,
            seeds=args.seeds,
            first_seed=args.seed,
            recipe_overrides=overrides,
            data_overrides=given(args, DataConfig),
            device=args.device,
            force=args.force,
            baselines=tuple(args.baseline or ()),
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
        args.force,
    )
    for path in written:
        print(path)
    print(f"rebuild it in Python with: {build_call(read_run(args.run_dir).final.model, str(written[0]))}")
    if len(written) == 1:
        print(
            f"no trained network of these widths was found; `{invocation()} compare {args.run_dir}` trains "
            "one (or pass a `netadjust train` .safetensors with --weights)"
        )
    return 0


def command_spaces(args: argparse.Namespace) -> int:
    rows = []
    info = DATASETS[DataConfig.dataset]  # at the input every other command defaults to
    for name in space_names():
        spec = ModelSpec(
            space=name, num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size
        )
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
        size = f"{info.in_channels}x{info.image_size}x{info.image_size}"
        print(f"base costs for {info.name}'s {size} input, {info.num_classes} classes:")
        column = max(len(row["space"]) for row in rows)
        for row in rows:
            print(
                f"  {row['space']:<{column}} {row['macs']:>13,} MACs {row['params']:>11,} params  "
                f"{row['description']}"
            )
    return 0


def command_inspect(args: argparse.Namespace) -> int:
    from .factories import ZOOS, zoo_names

    zoo = args.model.rstrip(":")
    if zoo in ZOOS and args.model.endswith(":"):  # what a zoo offers by name
        names = zoo_names(zoo)
        print(json.dumps(names) if args.json else "\n".join(f"{zoo}:{name}" for name in names))
        return 0
    classes, channels, size = counted_input(args, {})
    found = api.inspect_model(
        args.model, num_classes=classes, in_channels=channels, image_size=size, model_args=args.model_args
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(found)))
        return 0
    widths = plural(len(found.widths), "searchable width")
    print(
        f"{args.model}: {found.macs:,} MACs, {found.params:,} params, {widths} "
        f"({channels}x{size}x{size} input, {classes} classes)"
    )
    print(
        "per width: its channels (×N: a multiple of N always, for its grouped layers), the share of the "
        "MACs they take part in (f_i / MACs), its layers"
    )
    column = max(len(group["name"]) for group in found.groups)
    for group in found.groups:
        layers = ", ".join(f"{name} ({side})" for name, side in group["layers"])
        multiple = f"×{group['multiple']}" if group["multiple"] > 1 else ""
        share = f"{group['macs_share']:7.1%}"
        print(f"  {group['name']:<{column}} {group['width']:>5} {multiple:>3} {share}  {layers}")
    if found.held:
        print(f"held at their size, not searched ({plural(len(found.held), 'width')}):")
        for name, reason in found.held.items():
            print(f"  {name}: {reason}")
    return 0


COMMANDS = {
    "search": command_search,
    "train": command_train,
    "cost": command_cost,
    "spaces": command_spaces,
    "report": command_report,
    "compare": command_compare,
    "export": command_export,
    "inspect": command_inspect,
}
