"""What a search will do, decided before it runs: its model at the dataset's input, the
widths it starts from, k capped for small models, the recipe and epochs of each iteration,
FUR's precision, and the settings ``config.json`` records (what ``--dry-run`` prints)."""

from __future__ import annotations

import dataclasses
import json

import torch

from .adjust import layers_to_move
from .config import Recipe, SearchConfig, Widths
from .data import DATASETS, data_folder, model_spec_for
from .errors import UserError
from .spaces import ModelSpec, base_widths, check_widths
from .train import autocast_dtype, resolve_device


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


def iteration_recipe(config: SearchConfig, iteration: int) -> tuple[Recipe, float]:
    """The recipe an iteration trains with, and the share of the training images one epoch
    of it sees: with ``--inherit`` every iteration after the first restarts the cosine
    schedule at the full rate without warm-up (a warm restart: the weights are trained) for
    the inherited epochs; the optimizer's momentum starts at zero (its old buffers have
    the old widths' shapes)."""
    if not config.inherit or iteration == 0:
        return config.recipe, 1.0
    short = dataclasses.replace(config.recipe, epochs=max(1, int(config.inherit)), warmup_epochs=0.0)
    return short, min(1.0, config.inherit)


def regulariser_progress(config: SearchConfig, iteration: int) -> float | None:
    """Where an iteration's regulariser stands on its ramp: ramped from 0 in a training from
    scratch (None); an inheriting iteration fine-tunes weights trained to the ramp's end, so
    it keeps the rate iteration 0's last epoch had ((E - 1) / E of the full rate), where a
    ramp over its own short training would leave it at 0 for fewer than two epochs."""
    if not config.inherit or iteration == 0:
        return None
    return (config.recipe.epochs - 1) / config.recipe.epochs


def training_epochs(config: SearchConfig, iterations: int) -> float:
    """Epochs of training (in whole passes over the training images) of ``iterations``."""
    return sum(
        recipe.epochs * share for recipe, share in (iteration_recipe(config, i) for i in range(iterations))
    )


def dry_run(config: SearchConfig, world_size: int = 1, check_data: bool = True) -> dict:
    """The settings a search with ``config`` would record, and k per iteration, found
    without reading data or building a model (the data's files are looked for unless
    ``check_data`` is off: they are about to be downloaded). A folder dataset's class
    count is its number of folders, unknown here: the record shows the dataset's usual count."""
    config.validate()
    if check_data:
        data_folder(config.data.dataset, config.data.data_dir, config.data.image_size)
    spec = planned_spec(config)
    initial = starting_widths(config, spec)
    config.rule.validate(len(initial))
    config = with_fur_precision(config, resolve_device(config.device))
    settings = settings_record(config, spec, initial, world_size)
    settings["k_schedule"] = [
        layers_to_move(config.rule, iteration) for iteration in range(config.iterations)
    ]
    return settings


def planned_spec(config: SearchConfig) -> ModelSpec:
    """The model ``config`` names, with its dataset's usual classes and input (a folder
    dataset's classes are its folders, known only once it is read)."""
    info = DATASETS[config.data.dataset]
    if config.data.image_size is not None:
        info = dataclasses.replace(info, image_size=config.data.image_size)
    return model_spec_for(config.model, info)


def with_default_k_capped(config: SearchConfig) -> SearchConfig:
    """A preset's k (not one given) at most half the model's widths, so that the grown and
    shrunk groups cannot overlap: a model of few widths (a user's) moves all it can. A
    model or dataset that cannot be named is left to the search's own checks to refuse."""
    if config.data.dataset not in DATASETS:
        return config
    try:
        most = len(starting_widths(config, planned_spec(config))) // 2
    except UserError:
        return config
    if config.rule.k0 <= most:
        return config
    return dataclasses.replace(config, rule=dataclasses.replace(config.rule, k0=float(most)))
