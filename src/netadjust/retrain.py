"""Train one configuration from scratch on the full training set and report test accuracy:
how a searched configuration is evaluated (beside the original widths, trained the same way)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from .config import DataConfig, ModelSpec, Recipe, Widths
from .cost import model_cost
from .data import PreparedData, data_folder, model_spec_for, prepare_data
from .errors import UserError
from .export import check_onnx_available, save_onnx, save_weights
from .rundir import provenance
from .spaces import base_widths, check_widths
from .store import check_writable, write_json
from .train import evaluate, resolve_device, train_network


def train_on_full(
    spec: ModelSpec,
    widths: Widths,
    data: PreparedData,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    label: str = "train",
) -> tuple[nn.Module, dict]:
    """Fit ``widths`` on ``data.train`` and evaluate on ``data.test``; the result record."""
    start = time.perf_counter()
    model, fit_log = train_network(spec, widths, data, recipe, seed=seed, label=label)
    cost = model_cost(spec, widths)
    return model, {
        "space": spec.space,
        "dataset": data.info.name,
        "widths": widths,
        "macs": cost.macs,
        "params": cost.params,
        "test": evaluate(model, data.test, data.info),
        "train": fit_log["epochs"],
        "seconds": time.perf_counter() - start,
        "seed": seed,
        "recipe": dataclasses.asdict(recipe),
        "model": dataclasses.asdict(spec),
        "data_sizes": {"train": len(data.train), "test": len(data.test)},
        "provenance": {**provenance(device), "dataset_sha256": data.sha256},
    }


def check_training(data_config: DataConfig, recipe: Recipe, out: Path, onnx: bool) -> None:
    """What ``train_and_test`` refuses before any work: settings, missing data, results
    that would be overwritten, an output folder that cannot be written."""
    recipe.validate()
    data_config.validate()
    data_folder(data_config.dataset, data_config.data_dir, data_config.image_size)
    for path in (out, out.with_suffix(".safetensors")) + ((out.with_suffix(".onnx"),) if onnx else ()):
        if path.exists():
            raise UserError(f"{path} already exists; choose another --out")
    if onnx:
        check_onnx_available()
    check_writable(out.parent)


def train_and_test(
    spec: ModelSpec,
    widths: Widths | None,
    data_config: DataConfig,
    recipe: Recipe,
    *,
    seed: int,
    device: str,
    out: Path,
    onnx: bool = False,
) -> dict:
    """Fit on all training images, evaluate on the test set; write ``out`` (JSON) and the
    trained network beside it (``.safetensors``, and ``.onnx`` when asked)."""
    check_training(data_config, recipe, out, onnx)
    torch_device = resolve_device(device)
    weights_path, onnx_path = out.with_suffix(".safetensors"), out.with_suffix(".onnx")
    data = prepare_data(data_config, seed, torch_device, hold_out=False)
    spec = model_spec_for(spec, data.info)
    widths = base_widths(spec) if widths is None else check_widths(spec, widths)
    model, result = train_on_full(spec, widths, data, recipe, seed, torch_device)
    save_weights(model, spec, widths, weights_path)
    result["weights"] = str(weights_path)
    if onnx:
        save_onnx(model, spec, onnx_path)
        result["onnx"] = str(onnx_path)
    write_json(out, result)
    result["path"] = str(out)
    return result
