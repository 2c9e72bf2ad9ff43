"""Train one configuration from scratch on the full training set and report test accuracy:
how a searched configuration is evaluated (beside the original widths, trained the same way)."""

from __future__ import annotations

import time
from pathlib import Path

from .cost import model_cost
from .errors import UserError
from .search import DataConfig, model_spec_for, prepare_data, provenance, train_candidate
from .spaces import ModelSpec, Widths, base_widths, check_widths
from .store import check_writable, write_json
from .train import Recipe, evaluate, resolve_device


def train_and_test(
    spec: ModelSpec,
    widths: Widths | None,
    data_config: DataConfig,
    recipe: Recipe,
    *,
    seed: int,
    device: str,
    out: Path,
) -> dict:
    """Fit on all training images, evaluate on the test set, write ``out`` (JSON)."""
    recipe.validate()
    data_config.validate()
    torch_device = resolve_device(device)
    if out.exists():
        raise UserError(f"{out} already exists; choose another --out")
    check_writable(out.parent)
    data = prepare_data(data_config, seed, torch_device, hold_out=False)
    spec = model_spec_for(spec, data.info)
    widths = base_widths(spec) if widths is None else check_widths(spec, widths)
    start = time.perf_counter()
    model, fit_log = train_candidate(spec, widths, data, recipe, seed, torch_device, "train")
    cost = model_cost(spec, widths)
    result = {
        "space": spec.space,
        "dataset": data.info.name,
        "widths": widths,
        "macs": cost.macs,
        "params": cost.params,
        "test": evaluate(model, data.test, data.info),
        "train": fit_log["epochs"],
        "seconds": time.perf_counter() - start,
        "seed": seed,
        "recipe": recipe.__dict__,
        "model": spec.__dict__,
        "data_sizes": {"train": len(data.train), "test": len(data.test)},
        "provenance": {**provenance(torch_device), "dataset_sha256": data.sha256},
    }
    write_json(out, result)
    result["path"] = str(out)
    return result
