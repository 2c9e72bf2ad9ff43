"""Run by the distributed tests under torchrun (real processes, gloo): one job per call,
rank 0 writes the result as JSON.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py \
        fur|step|step-unsynced DATA_DIR MODEL_OR_OUT RESULT_JSON
"""

import json
import os
import sys
from functools import partial
from pathlib import Path

import torch

import netadjust
from netadjust.config import DataConfig, FurConfig
from netadjust.cost import sensitivities
from netadjust.data import prepare_data
from netadjust.distributed import start, stop
from netadjust.export import load_weights
from netadjust.fur import estimate_fur
from netadjust.train import Recipe, evaluate, fit

# one optimiser step on all of STEP_IMAGES images: batch STEP_IMAGES // processes each
STEP_IMAGES = 64
STEP_RECIPE = dict(
    epochs=1,
    lr=0.2,
    weight_decay=3e-4,
    drop_rate=0.0,
    precision="fp32",
    channels_last=False,
    augment=False,
    sync_bn=True,
)


def fur_job(data_dir: str, weights: str, result: Path, processes) -> None:
    model, spec, widths = load_weights(weights)
    data = prepare_data(DataConfig(dataset="mnist", data_dir=data_dir), 0, torch.device("cpu"), True)
    common = dict(seed=3, batch_size=32, processes=processes)
    f = sensitivities(spec, widths)
    estimate = estimate_fur(
        model, data.val, data.info, f, FurConfig(repeats=2, control_variate=True), **common
    )
    second = FurConfig(repeats=2, method="second-order", control_variate=False)
    second = estimate_fur(model, data.val, data.info, f, second, **common)
    val = evaluate(model, data.val, data.info, batch_size=50, processes=processes)
    if processes.is_main:
        found = {"fur": estimate.fur, "halves": estimate.halves, "second_order": second.fur, "val": val}
        result.write_text(json.dumps(found))


def step_job(data_dir: str, out: str, result: Path, processes, sync_bn: bool = True) -> None:
    train, _, info = netadjust_data(data_dir)
    recipe = Recipe(batch_size=STEP_IMAGES // processes.world_size, **{**STEP_RECIPE, "sync_bn": sync_bn})
    torch.manual_seed(0)
    # float64: what is compared is the computation, not float32 rounding, which one step on
    # random data amplifies to ~1e-3 relative even between two single-process runs
    model = netadjust.build("resnet20", width_mult=0.25, in_channels=1, image_size=28).double()
    fit(model, train, info, recipe, seed=0, processes=processes)
    if processes.is_main:
        torch.save(model.state_dict(), out)
        result.write_text(json.dumps({"processes": processes.world_size}))


def netadjust_data(data_dir: str):
    from netadjust.data import load

    train, test, info = load("mnist", data_dir)
    return train.subset(slice(0, STEP_IMAGES)), test, info


if __name__ == "__main__":
    job, data_dir, path, result = sys.argv[1:5]
    processes = start(timeout_s=120)
    jobs = {"fur": fur_job, "step": step_job, "step-unsynced": partial(step_job, sync_bn=False)}
    jobs[job](data_dir, path, Path(result), processes)
    stop(clean=True)
    # as netadjust's own processes (__main__): no C++ teardown, where gloo's threads can abort
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
