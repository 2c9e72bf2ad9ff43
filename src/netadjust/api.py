"""The Python API, typed over ``config``: what the command line calls, for scripts and notebooks.

import netadjust
model = netadjust.build("resnet20", "runs/x/final.json", num_classes=100)
netadjust.cost("resnet20", num_classes=100).macs        # 40556800
result = netadjust.search(epochs=1, iterations=2, out="runs/try")
model = netadjust.load("runs/x/compare/searched-seed0.safetensors")
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .config import BUDGETS, DataConfig, LatencyConfig, ModelSpec, SearchConfig, Widths
from .cost import count, model_cost, sensitivities
from .distributed import SINGLE, Processes
from .errors import UserError
from .export import load_weights
from .latency import latency_model
from .planning import dry_run, with_default_k_capped
from .presets import DEFAULT_PRESET, preset_settings
from .rundir import FinalResult, config_from_settings, read_history, read_run_settings
from .search import run_search
from .settings import configured, known_settings, record_settings
from .spaces import base_widths, check_widths, get_space
from .spaces import build as build_spec
from .store import read_widths_file, user_path
from .train import default_device, resolve_device

MODEL_SETTINGS = {field.name for field in dataclasses.fields(ModelSpec)} - {"space"}


def model_spec(space: str, **settings) -> ModelSpec:
    """A ``ModelSpec`` from a space name and keyword settings, unknown names refused; with
    ``model=`` (your own model's reference) the space is ignored."""
    if settings.get("model") is None:
        get_space(space)
    unknown = sorted(set(settings) - MODEL_SETTINGS)
    if unknown:
        raise TypeError(f"unknown model settings {unknown}; known: {sorted(MODEL_SETTINGS)}")
    return ModelSpec(space=space, **settings)


def read_widths(widths: Widths | str | Path | None) -> tuple[Widths | None, dict, dict]:
    """Widths given as a mapping, a widths file or a ``final.json`` (which also brings the
    model settings of its run and the cost of its network), or None; returns them, those
    model settings and that cost (``macs``, ``params``; empty where the file records none)."""
    if widths is None or isinstance(widths, Mapping):
        return (None if widths is None else dict(widths)), {}, {}
    widths, recorded, recorded_cost = read_widths_file(widths)
    settings = {key: value for key, value in recorded.items() if key in MODEL_SETTINGS | {"space"}}
    return widths, settings, recorded_cost


def check_rebuilds(
    source: str | Path, spec: ModelSpec, widths: Widths, recorded: dict, cost: dict, changed: set[str]
) -> None:
    """A widths file that records its network (a ``final.json``, an export's ``widths.json``)
    must rebuild exactly that network: each model setting it records is the one used unless
    a flag or argument (``changed``) set it on purpose, and then the widths must cost the
    MACs and parameters it records; anything else is refused in one line."""
    for key, value in recorded.items():
        if key not in changed and hasattr(spec, key) and getattr(spec, key) != value:
            raise UserError(
                f"widths file {source} records {key} {value!r} but would be built with "
                f"{getattr(spec, key)!r}; set it on purpose (--{key.replace('_', '-')}, or --dataset for "
                "the input) or use the file's"
            )
    if not cost or any(key in changed and getattr(spec, key) != recorded[key] for key in recorded):
        return
    built = model_cost(spec, widths)
    if (built.macs, built.params) != (cost.get("macs", built.macs), cost.get("params", built.params)):
        raise UserError(
            f"widths file {source} records a network of {cost.get('macs', 0):,} MACs and "
            f"{cost.get('params', 0):,} params, but its widths and model settings build {built.macs:,} MACs "
            f"and {built.params:,} params: the file was edited or written by another version; "
            "restore it or export the run again"
        )


def _spec_and_widths(
    space: str, widths: Widths | str | Path | None, settings: dict
) -> tuple[ModelSpec, Widths]:
    """The model and widths a call names; a ``final.json``'s model settings yield to
    ``settings``, and where they are kept it must rebuild the network it records."""
    source = widths
    widths, recorded, recorded_cost = read_widths(widths)
    spec = model_spec(space, **({key: value for key, value in recorded.items() if key != "space"} | settings))
    if widths is None:
        return spec, base_widths(spec)
    widths = check_widths(spec, widths)
    check_rebuilds(source, spec, widths, recorded, recorded_cost, set(settings))
    return spec, widths


def build(space: str, widths: Widths | str | Path | None = None, **settings) -> nn.Module:
    """A freshly initialised model of ``space`` at ``widths`` (a mapping, a widths file or a
    ``final.json``, whose recorded model settings it takes; the base widths when None).
    ``settings``: num_classes, in_channels, image_size, width_mult, padding; or ``model``,
    your own model's factory or reference (then ``space`` is ignored), and model_args."""
    if callable(settings.get("model")):
        settings["model"] = model_reference(settings["model"])
    spec, widths = _spec_and_widths(space, widths, settings)
    return build_spec(spec, widths)


@dataclass(frozen=True)
class CostReport:
    """What ``netadjust cost --json`` prints."""

    space: str
    macs: int
    params: int
    widths: Widths
    sensitivities: dict[str, float]  # f_i = c_i dF/dc_i per width, in the budget's measure
    model: dict
    latency: dict | None = None  # budget "latency": the table's estimate beside the measured time


def cost(
    space: str,
    widths: Widths | str | Path | None = None,
    *,
    budget: str = "macs",
    latency: LatencyConfig | None = None,
    device: str = "cpu",
    precision: str = "auto",
    channels_last: bool = True,
    **settings,
) -> CostReport:
    """MACs, parameters and sensitivities (of ``budget``: "macs", "params", or "latency"
    timed on ``device`` as ``latency`` says (``precision`` is the training's, used where
    its precision is "training") in the memory format given, with
    sensitivities in seconds) of ``space`` at ``widths`` (same arguments as ``build``).
    The latency estimate is calibrated on the space's base widths, as a search's on the
    original network, and set beside a fresh timing of ``widths``."""
    if budget not in BUDGETS:
        raise UserError(f"budget is {budget!r}; choose one of {', '.join(BUDGETS)}")
    spec, widths = _spec_and_widths(space, widths, settings)
    counted = model_cost(spec, widths)
    timing = None
    if budget == "latency":
        latency = latency or LatencyConfig()
        latency.validate()
        model = latency_model(spec, latency, resolve_device(device), precision, channels_last)
        model.calibrate(base_widths(spec))
        f = model.sensitivities(widths)
        measured = model.measure_network(widths)
        timing = {
            "estimate": model.estimate(widths),
            "measured": measured.seconds,
            "disagreement": measured.disagreement,  # of its two repeats: max / min - 1
            "latency_precision": model.latency_precision,
            "layers_sum": model.layers_sum(widths),
            "overhead": model.overhead,
            "mode": latency.mode,
            "batch": latency.batch,
            "device": model.table.description,
            "table": str(model.table.path),
        }
    else:
        f = sensitivities(spec, widths, budget)
    return CostReport(spec.space, counted.macs, counted.params, widths, f, dataclasses.asdict(spec), timing)


def load(path: str | Path, device: str = "cpu", model: str | None = None) -> nn.Module:
    """The trained model a ``.safetensors`` file of netadjust holds, in eval mode; for a
    network of your own model, ``model`` names its reference (its code is imported)."""
    network, _, _ = load_weights(path, device, model)
    return network


def search_config(
    preset: str = DEFAULT_PRESET, *, widths: Widths | str | Path | None = None, **options
) -> SearchConfig:
    """The configuration of a search: the defaults (``config.py``), overridden by the preset,
    by the model settings of a ``widths`` file (a ``final.json``), by ``options`` (the flags
    of ``netadjust search``, with underscores: ``epochs=3``, ``space="resnet56"``; None
    leaves a setting to the others). Device: cuda if present; out: runs/search-<time>."""
    unknown = sorted(set(options) - known_settings(SearchConfig))
    if unknown:
        raise TypeError(f"unknown search options {unknown}; see `netadjust search --help`")
    if callable(options.get("model")):
        options["model"] = model_reference(options["model"])
    initial, recorded, _ = read_widths(widths)
    values = {**preset_settings(preset, options.get("dataset")), **record_settings(ModelSpec, recorded)}
    values |= {key: value for key, value in options.items() if value is not None}
    values.setdefault("device", default_device())
    values.setdefault("out", time.strftime("runs/search-%Y%m%d-%H%M%S"))
    config = dataclasses.replace(configured(SearchConfig, values), initial_widths=initial)
    config = dataclasses.replace(
        config, model=with_absolute_paths(config.model), data=with_absolute_paths(config.data)
    )
    return config if options.get("k") is not None else with_default_k_capped(config)


def with_absolute_paths(settings):
    """A ``ModelSpec`` or ``DataConfig`` whose file and folder paths (a model's file, the
    data folder) are absolute, ``~`` expanded: a run directory names what it used however
    it is read later, from any folder."""
    if isinstance(settings, ModelSpec) and settings.model:
        where, colon, attribute = settings.model.rpartition(":")
        if colon and where.endswith(".py"):
            return dataclasses.replace(settings, model=f"{user_path(where).resolve()}:{attribute}")
    if isinstance(settings, DataConfig) and settings.data_dir:
        return dataclasses.replace(settings, data_dir=str(user_path(settings.data_dir).resolve()))
    return settings


def model_reference(factory: Callable) -> str:
    """``pkg.module:factory`` for a factory defined at the top of an importable module, which
    the run directory records so that resume and compare can rebuild the model."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if module in (None, "__main__") or "<" in name or "." in name:
        raise UserError(
            f"model {factory!r} cannot be named for the run directory: define the factory at the top "
            "of a module file and pass it (or 'pkg.module:factory', 'path/to/file.py:factory')"
        )
    return f"{module}:{name}"


def resumed_config(run_dir: str | Path) -> SearchConfig:
    """The configuration a run directory records, to continue its search."""
    return config_from_settings(read_run_settings(user_path(run_dir)), str(run_dir))


@dataclass(frozen=True)
class InspectReport:
    """What ``netadjust inspect --json`` prints: the widths found in a user's model, each
    group's layers (name, "in"/"out") and share of the MACs (its f_i over the total), and
    the widths held at their size with why (the model slices or splits them by fixed counts)."""

    widths: Widths
    macs: int
    params: int
    groups: list[dict]
    held: dict[str, str]


def inspect_model(
    model: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    model_args: str | None = None,
) -> InspectReport:
    """The searchable widths of the model the factory ``model`` (pkg.module:factory or
    file.py:factory) returns, checked by rebuilding it at other widths (``anymodel``)."""
    from .dependency import require_torch_pruning
    from .resize import width_shares
    from .usermodel import user_plan

    require_torch_pruning()  # before the user's code is imported
    for name, value in (
        ("--num-classes", num_classes),
        ("--in-channels", in_channels),
        ("--image-size", image_size),
    ):
        if value < 1:
            raise UserError(f"{name} is {value}; give at least 1")
    spec = ModelSpec(
        model=model,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        model_args=model_args,
    )
    network, plan = user_plan(spec)  # refused in one line where it cannot run or be followed
    shape = (in_channels, image_size, image_size)
    total = count(network, shape)
    shares = width_shares(network, plan, plan.widths, shape)["macs"]
    groups, order = [], {name: index for index, (name, _) in enumerate(network.named_modules())}
    for group in plan.groups:
        # a layer scale (a parameter of no layer) sorts with the module that holds it
        layers = sorted(
            group.members, key=lambda m: (order[m[0] if m[0] in order else m[0].rpartition(".")[0]], m[1])
        )
        groups.append(
            {
                "name": group.name,
                "width": group.width,
                "multiple": plan.multiples[group.name],
                "layers": layers,
                "macs_share": shares[group.name] / total.macs,
            }
        )
    return InspectReport(plan.widths, total.macs, total.params, groups, plan.held)


@dataclass
class SearchResult:
    """A finished search: ``final`` is ``final.json``, ``history`` the records of
    ``history.jsonl``, ``out`` the run directory."""

    out: Path
    final: dict
    history: list[dict]
    config: SearchConfig

    @property
    def widths(self) -> Widths:
        return self.final["widths"]


def run(
    config: SearchConfig,
    *,
    force: bool = False,
    tensorboard: bool = False,
    processes: Processes = SINGLE,
    log: Callable[[str], None] = print,
) -> FinalResult:
    """Run the search ``config`` describes, or continue it (the loop: ``search.run_search``)."""
    return run_search(config, log=log, force=force, tensorboard=tensorboard, processes=processes)


def search(
    preset: str = DEFAULT_PRESET, *, force: bool = False, tensorboard: bool = False, log=print, **options
) -> SearchResult:
    """Run (or continue) a search. ``options`` are the flags of ``netadjust search``, with
    underscores (``epochs=3``, ``space="resnet56"``, ``widths={...}`` or a file, ...)."""
    config = search_config(preset, **options)
    final = run(config, force=force, tensorboard=tensorboard, log=log)
    out = user_path(config.out)
    return SearchResult(out, final.to_json(), [record.to_json() for record in read_history(out)], config)


__all__ = [
    "build",
    "cost",
    "dry_run",
    "load",
    "resumed_config",
    "run",
    "search",
    "search_config",
    "CostReport",
    "SearchResult",
    "UserError",
]

# The package's API names, bound on it once this module is imported (the package imports it
# lazily, ``netadjust.__getattr__``); the package keeps them over its submodules of the same
# name (``search.py``, ``cost.py``) whenever those are imported (``netadjust._Package``).
for _name in set(sys.modules[__package__].__all__) - {"__version__"}:
    setattr(sys.modules[__package__], _name, globals()[_name])
