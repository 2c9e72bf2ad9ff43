"""The Python API: the objects the command line prints, for scripts and notebooks.

import netadjust
model = netadjust.build("resnet20", "runs/x/final.json", num_classes=100)
netadjust.cost("resnet20", num_classes=100).macs        # 40556800
result = netadjust.search(epochs=1, iterations=2, out="runs/try")
model = netadjust.load("runs/x/compare/searched-seed0.safetensors")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .cost import model_cost, sensitivities
from .errors import UserError
from .export import load_weights
from .search import SearchConfig, run_search
from .spaces import ModelSpec, Widths, base_widths, check_widths, get_space
from .spaces import build as build_spec
from .store import read_jsonl, read_widths_file, user_path


def model_spec(space: str, **settings) -> ModelSpec:
    """A ``ModelSpec`` from a space name and keyword settings, unknown names refused."""
    get_space(space)
    known = {field.name for field in dataclasses.fields(ModelSpec)} - {"space"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown model settings {unknown}; known: {sorted(known)}")
    return ModelSpec(space=space, **settings)


def _spec_and_widths(
    space: str, widths: Widths | str | Path | None, settings: dict
) -> tuple[ModelSpec, Widths]:
    """The model and widths a call names; a ``final.json`` brings the model settings of its
    run (classes, channels, image size, width multiplier, padding), which ``settings`` override."""
    recorded = {}
    if isinstance(widths, str | Path):
        widths, recorded = read_widths_file(widths)
    fields = {field.name for field in dataclasses.fields(ModelSpec)} - {"space"}
    spec = model_spec(space, **{**{k: v for k, v in recorded.items() if k in fields}, **settings})
    return spec, base_widths(spec) if widths is None else check_widths(spec, dict(widths))


def build(space: str, widths: Widths | str | Path | None = None, **settings) -> nn.Module:
    """A freshly initialised model of ``space`` at ``widths`` (a mapping, a widths file or a
    ``final.json``, whose recorded model settings it takes; the base widths when None).
    ``settings``: num_classes, in_channels, image_size, width_mult, padding."""
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


def cost(
    space: str, widths: Widths | str | Path | None = None, *, budget: str = "macs", **settings
) -> CostReport:
    """MACs, parameters and sensitivities (of ``budget``: "macs" or "params") of ``space``
    at ``widths`` (same arguments as ``build``)."""
    spec, widths = _spec_and_widths(space, widths, settings)
    counted = model_cost(spec, widths)
    f = sensitivities(spec, widths, budget)
    return CostReport(spec.space, counted.macs, counted.params, widths, f, dataclasses.asdict(spec))


def load(path: str | Path, device: str = "cpu") -> nn.Module:
    """The trained model a ``.safetensors`` file of netadjust holds, in eval mode."""
    model, _, _ = load_weights(path, device)
    return model


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


def search(preset: str = "quick", *, force: bool = False, log=print, **options) -> SearchResult:
    """Run (or continue) a search. ``options`` are the flags of ``netadjust search``, with
    underscores (``epochs=3``, ``space="resnet56"``, ``widths={...}`` or a file, ...)."""
    from .cli import build_parser, search_config

    args = build_parser().parse_args(["search", "--preset", preset])
    command_line_only = {"nproc", "dist_timeout", "resume", "preset"}  # one process here; preset= above
    unknown = sorted(set(options) - (set(vars(args)) - command_line_only))
    if unknown:
        raise TypeError(f"unknown search options {unknown}; see `netadjust search --help`")
    widths = options.pop("widths", None)
    vars(args).update(options, widths=None if isinstance(widths, dict) else widths)
    config = search_config(args)
    if isinstance(widths, dict):
        config = dataclasses.replace(config, initial_widths=widths)
    final = run_search(config, log=log, force=force, tensorboard=args.tensorboard)
    out = user_path(config.out)
    return SearchResult(out, final, read_jsonl(out / "history.jsonl"), config)


__all__ = ["build", "cost", "load", "search", "CostReport", "SearchResult", "UserError"]
