"""Fit and evaluate one network: the only training loop of the project.

SGD with momentum and weight decay, a per-step cosine schedule (with optional linear
warm-up), optional label smoothing, and the reference's channel-dropout regulariser
(ramped by epoch and by depth) applied through the ``ChannelDrop`` hooks.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .channel_drop import ChannelDrop, Site, regulariser_rates
from .config import Recipe
from .data import DatasetInfo, ImageData, Normalize, PreparedData, batches, training_batches
from .distributed import SINGLE, Processes, default_generator, generator, seed_of, sync_batch_norm
from .errors import UserError
from .spaces import ModelSpec, Widths, build


def cpu_has_fast_bf16() -> bool:
    """oneDNN's own check for native bf16 instructions (AVX-512 BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def has_depthwise(model: nn.Module | None) -> bool:
    """Whether ``model`` holds a depthwise convolution (one group per input channel)."""
    return model is not None and any(
        isinstance(layer, nn.Conv2d) and 1 < layer.groups == layer.in_channels for layer in model.modules()
    )


def autocast_dtype(
    precision: str, device: torch.device, trained: nn.Module | None = None
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32. ``auto``
    on a CPU trains a ``trained`` model with depthwise convolutions in float32: their bf16
    backward is 5-40x slower there when strided or at 1-2 pixels (bench/precision_speed.py)."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_has_fast_bf16() and not has_depthwise(trained) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def resolve_device(name: str) -> torch.device:
    """Turn a device string into a device once; a device this machine lacks is a UserError."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: this machine has no CUDA device; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA devices; pick one below that"
            )
    elif device.type != "cpu":
        raise UserError(f"--device {name}: only cpu and cuda are supported")
    return device


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def lr_at(step: int, total_steps: int, warmup_steps: int, recipe: Recipe) -> float:
    """Linear warm-up to ``recipe.lr``, then cosine down to ``recipe.lr_min``."""
    if step < warmup_steps:
        return recipe.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return recipe.lr_min + (recipe.lr - recipe.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))


def epoch_line(label: str, record: dict, epochs: int, images_per_second: float, eta_seconds: float) -> str:
    """``label: epoch e/E loss, top-1, images/s, ETA`` for logs that have no progress bar."""
    return (
        f"{label}: epoch {record['epoch']}/{epochs} loss {record['loss']:.4f} "
        f"top-1 {100 * record['top1']:.2f}%, "
        f"{images_per_second:,.0f} images/s, ETA {time.strftime('%H:%M:%S', time.gmtime(eta_seconds))}"
    )


class NonFiniteLoss(UserError):
    """Training diverged; the message suggests a smaller learning rate."""


def train_network(
    spec: ModelSpec, widths: Widths, data: PreparedData, recipe: Recipe, *, seed: int, **fit_options
) -> tuple[nn.Module, dict]:
    """Build ``widths`` with weights seeded by ``seed`` on the data's device and ``fit`` it on
    ``data.train``; the model and the fit's log. ``fit_options``: those of ``fit``."""
    torch.manual_seed(seed)
    model = build(spec, widths).to(data.train.device)
    return model, fit(model, data.train, data.info, recipe, seed=seed, **fit_options)


def fit(
    model: nn.Module,
    train_set: ImageData,
    info: DatasetInfo,
    recipe: Recipe,
    *,
    seed: int,
    drop_sites: dict[str, Site] | None = None,
    label: str = "train",
    checkpoint: Callable[[dict], None] | None = None,
    resume_from: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    processes: Processes = SINGLE,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    drop_progress: float | None = None,
) -> dict:
    """Train ``model`` from its current weights; return per-epoch loss/accuracy and seconds.

    ``train_set`` must already sit on the model's device. After every epoch ``checkpoint``
    receives the whole training state (model, optimiser, loss scaler, epochs done), holding
    the live tensors: save or copy it before returning. Handing such a state back as
    ``resume_from`` continues the run exactly where it stood: every random stream is seeded
    from (seed, epoch, process), so there is no generator state to keep (the regulariser's
    masks, and any dropout of the model's own, draw from the device's default generator,
    seeded at every epoch and put back as it was when training ends). ``on_epoch``
    receives each epoch's record and its last learning rate (for logging). ``penalty`` of
    the model is added to every step's loss (the counterparts' sparsity regularisers).
    The regulariser's rate ramps from 0 by epoch / epochs, or stays at ``drop_progress`` of
    its rate in every epoch (a fine-tune continues at the rate its first training reached).

    With several ``processes`` (torchrun), each trains a DistributedDataParallel replica on
    its share of every global batch of ``recipe.batch_size`` x processes images.
    """
    device = train_set.device
    world = processes.world_size
    normalize = Normalize(info, device)
    if recipe.sync_bn and world > 1:
        sync_batch_norm(model, device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    global_batch = recipe.batch_size * world
    steps_per_epoch = math.ceil(len(train_set) / global_batch)
    total_steps = steps_per_epoch * recipe.epochs
    warmup_steps = int(recipe.warmup_epochs * steps_per_epoch)
    sites = drop_sites if drop_sites is not None else getattr(model, "drop_sites", {})
    dtype = autocast_dtype(recipe.precision, device, trained=model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    inputs_dtype = next(model.parameters()).dtype  # float32, or float64 for exact comparisons
    forward = model
    if world > 1:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if recipe.compile:
        forward = torch.compile(forward)
    history, seconds_before = [], 0.0
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scaler.load_state_dict(resume_from["scaler"])
        history, seconds_before = resume_from["history"], resume_from["seconds"]
    start, first_epoch = time.perf_counter(), len(history)
    with ChannelDrop(model, sites) as drop, default_generator(device) as mask_generator:
        for epoch in range(len(history), recipe.epochs):
            model.train()
            mask_generator.manual_seed(seed_of(seed, epoch, MASK_STREAM, processes.rank))
            drop.set_rates(
                regulariser_rates(
                    list(sites),
                    recipe.drop_rate,
                    epoch / recipe.epochs if drop_progress is None else drop_progress,
                    recipe.drop_depth_ramp,
                )
            )
            sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, correct, images
            epoch_start = time.perf_counter()
            bar = tqdm(
                total=steps_per_epoch,
                desc=f"{label} epoch {epoch + 1}/{recipe.epochs}",
                leave=False,
                disable=not (sys.stderr.isatty() and processes.is_main),
                unit="batch",
            )
            epoch_batches = training_batches(
                train_set,
                recipe.batch_size,
                normalize,
                info if recipe.augment else None,
                generator(device, seed, epoch, ORDER_STREAM),
                generator(device, seed, epoch, AUGMENT_STREAM, processes.rank),
                processes.rank,
                world,
            )
            for step, (images, labels, batch_total) in enumerate(epoch_batches):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, warmup_steps, recipe)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = forward(images.to(inputs_dtype).contiguous(memory_format=memory_format))
                    loss = F.cross_entropy(logits.float(), labels, label_smoothing=recipe.label_smoothing)
                if world > 1:  # DDP averages over processes: weigh each by its share of the batch
                    loss = loss * (len(labels) * world / batch_total)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss if penalty is None else loss + penalty(model)).backward()
                scaler.step(optimizer)
                scaler.update()
                sums[0] += loss.detach() * (batch_total / world)
                sums[1] += (logits.argmax(1) == labels).sum()
                sums[2] += len(labels)
                if not bar.disable and step % 10 == 0:
                    bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.3f}")
                bar.update()
            bar.close()
            loss_sum, correct, seen = processes.sum(sums).tolist()
            epoch_loss = loss_sum / seen
            if not math.isfinite(epoch_loss):
                raise NonFiniteLoss(
                    f"{label}: the training loss became {epoch_loss} in epoch {epoch + 1}; "
                    "lower --lr or raise --warmup-epochs"
                )
            history.append({"epoch": epoch + 1, "loss": epoch_loss, "top1": correct / seen})
            if processes.is_main and not sys.stderr.isatty():  # a log file: one plain line per epoch
                now = time.perf_counter()
                eta = (now - start) / (epoch + 1 - first_epoch) * (recipe.epochs - epoch - 1)
                line = epoch_line(label, history[-1], recipe.epochs, seen / (now - epoch_start), eta)
                print(line, file=sys.stderr, flush=True)
            if on_epoch is not None:
                on_epoch({**history[-1], "lr": optimizer.param_groups[0]["lr"]})
            if checkpoint is not None:
                checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "history": list(history),
                        "seconds": seconds_before + time.perf_counter() - start,
                    }
                )
    model.to(memory_format=torch.contiguous_format)
    return {"epochs": history, "seconds": seconds_before + time.perf_counter() - start}


ORDER_STREAM, AUGMENT_STREAM, MASK_STREAM = 0, 1, 2  # random streams of one epoch


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ImageData, info: DatasetInfo, batch_size: int = 500, processes: Processes = SINGLE
) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy of ``model`` (eval mode) on ``data``;
    with several processes each evaluates its share and the sums are all-reduced."""
    model.eval()
    normalize = Normalize(info, data.device)
    sums = torch.zeros(3, dtype=torch.float64, device=data.device)  # loss, top-1, top-5 hits
    for images, labels in batches(data.subset(processes.shard(len(data))), batch_size, normalize):
        logits = model(images)
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        sums[1] += (ranked[:, 0] == labels).sum()
        sums[2] += (ranked == labels[:, None]).any(1).sum()
    loss, top1, top5 = processes.sum(sums).tolist()
    n = max(1, len(data))
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n}
