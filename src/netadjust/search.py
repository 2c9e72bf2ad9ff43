"""The Network Adjustment loop: train -> FUR -> adjust -> rescale, repeated, with its run
directory (``config.json``, ``history.jsonl``, ``final.json``)."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .adjust import AdjustRule, adjust, excess, layers_to_move, rescale, within_budget
from .cost import MEASURES, measure, model_cost, sensitivities
from .data import DATASETS, FOLDER_DATASETS, DatasetInfo, ImageData, content_hash, load, split
from .distributed import SINGLE, Processes
from .errors import UserError
from .folders import default_workers
from .fur import estimate_fur, stability
from .outcome import LOW_STABILITY, outcome_lines
from .scalars import ScalarLog, require_tensorboard
from .second_order import CURVATURES
from .spaces import ModelSpec, Widths, base_widths, build, check_widths, network_name
from .store import append_jsonl, check_writable, parse_jsonl, read_jsonl, save_torch, user_path, write_json
from .train import Recipe, autocast_dtype, evaluate, fit, resolve_device
from .wording import plural


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None  # None: the dataset's default folder
    val_fraction: float = 0.1  # share of the training set held out for FUR
    train_limit: int | None = None  # use only the first N images of each split
    val_limit: int | None = None
    test_limit: int | None = None
    image_size: int | None = None  # folder datasets: the side images are cropped to (224)
    workers: int | None = None  # folder datasets: decoding processes (0: the main one; None: by cores)

    def validate(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise UserError(f"--workers is {self.workers}; give 0 or more")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"--val-fraction is {self.val_fraction}; give a value in (0, 1)")
        for flag, value in (
            ("--train-limit", self.train_limit),
            ("--val-limit", self.val_limit),
            ("--test-limit", self.test_limit),
        ):
            if value is not None and value < 1:
                raise UserError(f"{flag} is {value}; give at least 1")


@dataclass(frozen=True)
class FurConfig:
    base_rate: float = 0.05  # p0: drop rate of the width with the mean sensitivity
    repeats: int = 5  # T: independent masks per width
    max_rate: float = 0.9  # p_i is clipped here (the reference divides by 1 - p_i)
    method: str = "auto"  # "fast" where the model exposes chain(), else "reference"
    curvature: str = "exact"  # the second-order method's curvature (second_order.CURVATURES)
    control_variate: bool = True  # Monte Carlo less each mask's first-order loss change
    bf16: bool | None = None  # bfloat16 autocast for FUR; None: where the device has native bf16

    def validate(self) -> None:
        if not 0 < self.base_rate < 1:
            raise UserError(f"--drop-rate is {self.base_rate}; give a value in (0, 1)")
        if self.repeats < 1:
            raise UserError(f"--repeats is {self.repeats}; give at least 1")
        if not self.base_rate <= self.max_rate < 1:
            raise UserError(f"--max-drop-rate is {self.max_rate}; give a value in [drop rate, 1)")
        if self.curvature not in CURVATURES:
            raise UserError(f"--fur-curvature is {self.curvature!r}; choose one of {', '.join(CURVATURES)}")


@dataclass(frozen=True)
class SearchConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: Recipe = field(default_factory=Recipe)
    fur: FurConfig = field(default_factory=FurConfig)
    rule: AdjustRule = field(default_factory=AdjustRule)
    iterations: int = 10
    budget: str = "macs"  # the cost held constant: "macs" or "params"
    initial_widths: Widths | None = None  # None: the space's base widths
    seed: int = 0
    device: str = "cpu"
    out: str = "runs/search"


@dataclass
class PreparedData:
    info: DatasetInfo
    train: ImageData
    val: ImageData
    test: ImageData
    sha256: str  # of the whole dataset as loaded, before splits and limits


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


def provenance(device: torch.device) -> dict:
    return {
        "netadjust": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
    }


def train_candidate(
    spec: ModelSpec,
    widths: Widths,
    data: PreparedData,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    label: str,
    checkpoint: Callable[[dict], None] | None = None,
    resume_from: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    processes: Processes = SINGLE,
):
    """Build ``widths`` with seeded initial weights and fit it; return model and fit log."""
    torch.manual_seed(seed)
    model = build(spec, widths).to(device)
    log = fit(
        model,
        data.train,
        data.info,
        recipe,
        seed=seed,
        label=label,
        checkpoint=checkpoint,
        resume_from=resume_from,
        on_epoch=on_epoch,
        processes=processes,
    )
    return model, log


UNITS = {"macs": "MACs", "params": "params"}
CHECKPOINT = "checkpoint.pt"  # the current iteration's training state, written every epoch
RUN_FILES = ("config.json", "history.jsonl", "final.json", CHECKPOINT)
NOT_COMPARED = ("out", "device", "provenance", "data_sizes")  # may change between resumes


def search_config_from_settings(settings: dict, out: str) -> SearchConfig:
    """Rebuild the configuration a run directory's ``config.json`` records."""
    try:
        return SearchConfig(
            model=ModelSpec(**settings["model"]),
            data=DataConfig(**settings["data"]),
            recipe=Recipe(**settings["recipe"]),
            fur=FurConfig(**settings["fur"]),
            rule=AdjustRule(**settings["rule"]),
            iterations=settings["iterations"],
            budget=settings.get("budget", "macs"),
            initial_widths=settings["initial_widths"],
            seed=settings["seed"],
            device=settings["device"],
            out=out,
        )
    except (KeyError, TypeError) as error:
        raise UserError(
            f"{out}/config.json was not written by this version of netadjust ({error}); start a new search"
        ) from None


def read_json_file(path: Path, parse=json.loads):
    """``parse`` of the file's text; an unreadable or malformed file is a one-line UserError
    naming the file (and the line, for JSON)."""
    try:
        return parse(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path} is not valid JSON (line {error.lineno}: {error.msg}); it is damaged: "
            "restore or remove it"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path} ({getattr(error, 'strerror', None) or error})") from None


def read_run_settings(out: Path) -> dict:
    if not (out / "config.json").exists():
        raise UserError(f"{out} holds no search (no config.json); check the path")
    return read_json_file(out / "config.json")


@dataclass
class Run:
    """What a run directory holds: its settings, the iterations so far, the result if done."""

    path: Path
    settings: dict
    history: list[dict]
    final: dict | None


def read_run(path: str | Path) -> Run:
    path = user_path(path)
    settings = read_run_settings(path)
    history = read_json_file(path / "history.jsonl", parse_jsonl) if (path / "history.jsonl").exists() else []
    final = read_json_file(path / "final.json") if (path / "final.json").exists() else None
    for name, value, keys in (
        ("config.json", settings, SETTINGS_KEYS),
        *(("history.jsonl", record, RECORD_KEYS) for record in history),
        *([("final.json", final, FINAL_KEYS)] if final is not None else []),
    ):
        if not isinstance(value, dict):
            raise UserError(f"{path}/{name} holds no JSON object where a record belongs; it is damaged")
        if not keys <= set(value):
            missing = ", ".join(sorted(keys - set(value))[:4])
            raise UserError(
                f"{path}/{name} lacks {missing}: it is damaged, or not a run directory of this "
                "version of netadjust"
            )
    return Run(path, settings, history, final)


# what readers of a run directory (report, compare, export) rely on
SETTINGS_KEYS = {"model", "data", "recipe", "fur", "rule", "iterations", "initial_widths", "seed", "device"}
SETTINGS_KEYS |= {"data_sizes", "provenance"}
RECORD_KEYS = {"iteration", "widths", "macs", "params", "train", "val", "test", "fur", "grown", "shrunk"}
RECORD_KEYS |= {"fur_method", "fur_stability", "next_widths", "next_macs", "seconds"}
FINAL_KEYS = {"model", "widths", "macs", "params", "original_widths", "original_macs"}


def completed_iterations(out: Path, settings: dict, force: bool) -> list[dict]:
    """The history to continue from: [] for a new run; the recorded iterations when ``out``
    holds an unfinished run of the same settings. Anything else is refused unless ``force``,
    which clears the old run's files."""
    if not (out / "config.json").exists():
        leftovers = [name for name in RUN_FILES if (out / name).exists()]
        if leftovers and not force:
            raise UserError(
                f"{out} holds files of a search ({', '.join(leftovers)}) but no config.json; "
                "choose another --out, or pass --force to start it over"
            )
        for name in leftovers:
            (out / name).unlink()
        return []
    saved = read_run_settings(out)

    def keep(settings: dict) -> dict:
        kept = {k: v for k, v in settings.items() if k not in NOT_COMPARED}
        # runs of earlier versions lack the newer data and recipe settings: they had their defaults
        data = {**dataclasses.asdict(DataConfig()), **kept.get("data", {})}
        kept["data"] = {k: v for k, v in data.items() if k != "workers"}  # workers: speed only
        kept["recipe"] = {**dataclasses.asdict(Recipe()), **kept.get("recipe", {})}
        kept["rule"] = {**dataclasses.asdict(AdjustRule()), **kept.get("rule", {})}
        # runs before the control variate existed ran without it, whatever today's default
        kept["fur"] = {**dataclasses.asdict(FurConfig()), "control_variate": False, **kept.get("fur", {})}
        return kept

    saved, compared = keep(saved), keep(settings)
    differing = sorted(k for k in set(saved) | set(compared) if saved.get(k) != compared.get(k))
    finished = (out / "final.json").exists()
    if (differing or finished) and not force:
        why = f"other settings (differing: {', '.join(differing)})" if differing else "a finished search"
        raise UserError(f"{out} holds {why}; choose another --out, or pass --force to start it over")
    if differing or finished:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        return []
    history = out / "history.jsonl"
    return read_jsonl(history) if history.exists() else []


def validate(config: SearchConfig) -> None:
    """The checks that need no data and no run directory."""
    config.recipe.validate()
    config.fur.validate()
    config.data.validate()
    if config.iterations < 1:
        raise UserError(f"--iterations is {config.iterations}; give at least 1")
    if config.budget not in MEASURES:
        raise UserError(f"--budget is {config.budget!r}; choose one of {', '.join(MEASURES)}")


def with_fur_precision(config: SearchConfig, device: torch.device) -> SearchConfig:
    """``config`` with FUR's bf16 decided for ``device`` where it was left open: decided once
    and recorded, so a resume elsewhere keeps it."""
    if config.fur.bf16 is not None:
        return config
    native_bf16 = autocast_dtype("auto", device) == torch.bfloat16
    return dataclasses.replace(config, fur=dataclasses.replace(config.fur, bf16=native_bf16))


def settings_record(config: SearchConfig, spec: ModelSpec, initial: Widths, world_size: int) -> dict:
    """What ``config.json`` holds, before provenance and data sizes are added."""
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    settings["model"] = dataclasses.asdict(spec)
    settings["initial_widths"] = initial
    settings["processes"] = world_size  # resume needs as many
    return settings


def starting_widths(config: SearchConfig, spec: ModelSpec) -> Widths:
    """The widths the search starts from: the given ones, checked, or the space's base widths."""
    return base_widths(spec) if config.initial_widths is None else check_widths(spec, config.initial_widths)


def dry_run(config: SearchConfig, world_size: int = 1) -> dict:
    """The settings a search with ``config`` would record, and k per iteration, found
    without reading data or building a model. A folder dataset's class count is its
    number of folders, unknown here: the record shows the dataset's usual count."""
    validate(config)
    info = DATASETS[config.data.dataset]
    if config.data.dataset in FOLDER_DATASETS and config.data.image_size is not None:
        info = dataclasses.replace(info, image_size=config.data.image_size)
    spec = model_spec_for(config.model, info)
    initial = starting_widths(config, spec)
    config.rule.validate(len(initial))
    config = with_fur_precision(config, resolve_device(config.device))
    settings = settings_record(config, spec, initial, world_size)
    settings["k_schedule"] = [
        layers_to_move(config.rule, iteration) for iteration in range(config.iterations)
    ]
    return settings


def run_search(
    config: SearchConfig,
    log: Callable[[str], None] = print,
    force: bool = False,
    tensorboard: bool = False,
    processes: Processes = SINGLE,
) -> dict:
    """Run the whole search, or continue the unfinished one in ``config.out``; return the
    content of ``final.json``. ``tensorboard``: also write scalars to ``out/tensorboard``.
    With several ``processes`` every one runs this; only rank 0 writes and logs."""
    out = user_path(config.out)
    if not processes.is_main:
        log = lambda line: None  # noqa: E731
    validate(config)
    device = resolve_device(config.device)
    if tensorboard:
        require_tensorboard()
    data = prepare_data(config.data, config.seed, device, hold_out=True)
    spec = model_spec_for(config.model, data.info)  # a folder dataset's classes are its folders
    initial = starting_widths(config, spec)
    config.rule.validate(len(initial))
    budget = model_cost(spec, initial)
    cost_of = lambda widths: measure(spec, widths, config.budget)  # noqa: E731
    # fails early if the minimum widths alone exceed the budget
    rescale(initial, cost_of, cost_of(initial), config.rule.min_width, round_to=config.rule.round_to)
    config = with_fur_precision(config, device)
    settings = settings_record(config, spec, initial, processes.world_size)

    def open_run_directory() -> list[dict]:
        check_writable(out)
        history = completed_iterations(out, settings, force)  # after every check: --force deletes
        if not (out / "config.json").exists():
            settings["provenance"] = provenance(device)
            settings["data_sizes"] = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
            settings["provenance"]["dataset_sha256"] = data.sha256
            write_json(out / "config.json", settings)
        return history

    history = processes.agree(open_run_directory)
    batch = config.recipe.batch_size
    log(
        f"search: {network_name(spec)} on {data.info.name} ({len(data.train)} train / {len(data.val)} val / "
        f"{len(data.test)} test images), {plural(config.iterations, 'iteration')}, device {device}, "
        f"budget {getattr(budget, config.budget):,} {UNITS[config.budget]}; run directory {out}"
        + (f"; resuming at iteration {len(history) + 1}" if history else "")
        + (
            f"; {processes.world_size} processes, batch {batch} per process = {batch * processes.world_size}"
            if processes.world_size > 1
            else ""
        )
    )

    scalars = ScalarLog(out / "tensorboard" if tensorboard and processes.is_main else None)
    try:
        widths = _iterate(config, spec, data, initial, history, device, out, scalars, log, processes)
    finally:
        scalars.close()

    final_cost = model_cost(spec, widths)
    final = {
        "space": spec.space,
        "model": dataclasses.asdict(spec),
        "widths": widths,
        "macs": final_cost.macs,
        "params": final_cost.params,
        "original_widths": initial,
        "original_macs": budget.macs,
        "original_params": budget.params,
        "budget": config.budget,
        "iterations": config.iterations,
    }
    if processes.is_main:
        write_json(out / "final.json", final)
        (out / CHECKPOINT).unlink(missing_ok=True)
    log(widths_table(initial, widths))
    log(f"MACs {budget.macs:,} -> {final_cost.macs:,}; params {budget.params:,} -> {final_cost.params:,}")
    # compare trains 3 networks x 5 seeds on the training and validation images together
    trained_images = config.recipe.epochs * len(data.train) * len(history)
    per_image = sum(record["seconds"]["train"] for record in history) / trained_images
    compare_seconds = per_image * config.recipe.epochs * (len(data.train) + len(data.val)) * 3 * 5
    for line in outcome_lines(history, str(out), compare_seconds):
        log(line)
    log(f"wrote {out / 'final.json'}")
    return final


def _iterate(
    config: SearchConfig,
    spec: ModelSpec,
    data: PreparedData,
    initial: Widths,
    history: list[dict],
    device: torch.device,
    out: Path,
    scalars: ScalarLog,
    log: Callable[[str], None],
    processes: Processes,
) -> Widths:
    """The iterations not in ``history`` yet, each appended to ``history.jsonl``; returns
    the widths after the last one."""
    cost_of = lambda widths: measure(spec, widths, config.budget)  # noqa: E731
    target = cost_of(initial)
    widths = history[-1]["next_widths"] if history else initial
    for iteration in range(len(history), config.iterations):
        seed = config.seed + 1000 * iteration
        label = f"iter {iteration + 1}/{config.iterations}"
        saved = processes.agree(lambda: load_checkpoint(out / CHECKPOINT, iteration, widths))  # noqa: B023
        if saved is not None:
            log(f"{label}: continuing the training from its checkpoint after epoch {len(saved['history'])}")

        def checkpoint(state: dict, iteration=iteration, widths=widths) -> None:
            if not processes.is_main:
                return
            phase = "fur" if len(state["history"]) == config.recipe.epochs else "train"
            save_torch(
                out / CHECKPOINT, {"iteration": iteration, "phase": phase, "widths": widths, "train": state}
            )

        def on_epoch(record: dict, run=f"iter{iteration + 1}") -> None:
            scalars.add(run, {f"train/{key}": record[key] for key in ("loss", "top1", "lr")}, record["epoch"])

        model, fit_log = train_candidate(
            spec, widths, data, config.recipe, seed, device, label, checkpoint, saved, on_epoch, processes
        )
        seconds_train = fit_log["seconds"]
        val = evaluate(model, data.val, data.info, processes=processes)
        test = evaluate(model, data.test, data.info, processes=processes)

        timer = time.perf_counter()
        f = sensitivities(spec, widths, config.budget)
        estimate = estimate_fur(
            model,
            data.val,
            data.info,
            f,
            base_rate=config.fur.base_rate,
            repeats=config.fur.repeats,
            max_rate=config.fur.max_rate,
            seed=seed,
            method=config.fur.method,
            curvature=config.fur.curvature,
            control_variate=config.fur.control_variate,
            bf16=config.fur.bf16,
            processes=processes,
        )
        seconds_fur = time.perf_counter() - timer
        k = layers_to_move(config.rule, iteration)
        agreement = stability(estimate, k)

        timer = time.perf_counter()
        adjusted, grown, shrunk = adjust(widths, estimate.fur, initial, iteration, config.rule)
        rescaled = rescale(adjusted, cost_of, target, config.rule.min_width, round_to=config.rule.round_to)
        next_widths = processes.broadcast(rescaled)
        seconds_adjust = time.perf_counter() - timer

        cost = model_cost(spec, widths)
        record = {
            "iteration": iteration,
            "widths": widths,
            "macs": cost.macs,
            "params": cost.params,
            "train": fit_log["epochs"][-1],
            "val": val,
            "test": test,
            "sensitivities": f,
            "drop_rates": estimate.drop_rates,
            "clipped_drop_rates": estimate.clipped,
            "clean_val_loss": estimate.clean_loss,
            "loss_increase": estimate.loss_increase,
            "fur": estimate.fur,
            "fur_method": estimate.method,
            "fur_halves": estimate.halves,
            "fur_stability": agreement,
            "k": k,
            "grown": grown,
            "shrunk": shrunk,
            "next_widths": next_widths,
            "next_macs": measure(spec, next_widths, "macs"),
            "next_params": measure(spec, next_widths, "params"),
            "next_excess": excess(cost_of(next_widths), target),  # (cost - budget) / cost
            "seconds": {"train": seconds_train, "fur": seconds_fur, "adjust": seconds_adjust},
        }
        if processes.is_main:
            append_jsonl(out / "history.jsonl", record)
        next_cost = cost_of(next_widths)
        history.append(record)
        scalars.add(
            "search",
            {
                "val/top1": val["top1"],
                "test/top1": test["top1"],
                "cost/macs": cost.macs,
                "cost/params": cost.params,
                "fur/split_half_spearman": agreement["spearman"],
            },
            iteration + 1,
        )
        log(
            f"{label}: val top-1 {100 * val['top1']:.2f}% test top-1 {100 * test['top1']:.2f}% | "
            f"grow {', '.join(grown) or '-'} | shrink {', '.join(shrunk) or '-'} | "
            f"next {next_cost:,} {UNITS[config.budget]} ({next_cost / target - 1:+.2%}) | "
            f"train {seconds_train:.0f}s fur {seconds_fur:.0f}s | FUR split-half "
            f"Spearman {agreement['spearman']:.2f}"
            + (
                f", grow/shrink overlap {agreement['grow_overlap']:.2f}/{agreement['shrink_overlap']:.2f}"
                if k
                else ""
            )
        )
        if not within_budget(next_cost, target):
            log(
                f"{label}: warning: no rounding of the adjusted widths lies within 1% of the budget; "
                f"the next widths cost {next_cost:,} {UNITS[config.budget]}, {next_cost / target - 1:+.2%} "
                "off (tiny widths round coarsely: a larger --width-mult or a smaller --round-to helps)"
            )
        if agreement["spearman"] < LOW_STABILITY:
            log(
                f"{label}: warning: the two halves of the validation split rank the widths differently "
                f"(Spearman {agreement['spearman']:.2f}); the adjustment is partly noise. Consider more "
                "--repeats or a larger --val-limit"
            )
        widths = next_widths
    return widths


def load_checkpoint(path: Path, iteration: int, widths: Widths) -> dict | None:
    """The training state saved for this iteration and these widths, if any."""
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["iteration"] != iteration or saved["widths"] != widths:
        return None
    return saved["train"]


def widths_table(original: Widths, searched: Widths) -> str:
    name_width = max(len(name) for name in original)
    lines = [f"{'width':<{name_width}}  original  searched"]
    for name, before in original.items():
        after = searched[name]
        mark = "  +" if after > before else ("  -" if after < before else "")
        lines.append(f"{name:<{name_width}}  {before:>8}  {after:>8}{mark}")
    return "\n".join(lines)
