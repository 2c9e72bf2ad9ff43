"""What the benchmarks that add trainings to a finished ``bench/quality.py`` row share: the
row's run, its comparison, and the recipe and data its comparison trained with (checked)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from netadjust.config import DataConfig, Recipe
from netadjust.data import PreparedData, prepare_data
from netadjust.rundir import Run, read_run
from netadjust.settings import configured

RUNS = Path(__file__).resolve().parent / "results" / "runs"


def row_setting(name: str, data_dir: str | None) -> tuple[Run, dict, Recipe, PreparedData]:
    """The row's run, its ``compare.json``, and the recipe and data of its comparison."""
    out = RUNS / name
    run, comparison = read_run(out), json.loads((out / "compare.json").read_text())
    chosen_by_compare = {key: comparison["recipe"][key] for key in ("epochs", "precision")}
    recipe = dataclasses.replace(run.config.recipe, **chosen_by_compare)
    if dataclasses.asdict(recipe) != comparison["recipe"]:
        raise SystemExit(f"{name}: its comparison's recipe is not the run's with other epochs and precision")
    settings = {"dataset": run.config.data.dataset, "data_dir": data_dir or run.config.data.data_dir}
    data = prepare_data(configured(DataConfig, settings), 0, torch.device("cpu"), hold_out=False)
    if {"train": len(data.train), "test": len(data.test)} != comparison["data_sizes"]:
        raise SystemExit(f"{name}: the data differ from its comparison's")
    return run, comparison, recipe, data
