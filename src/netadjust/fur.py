"""FLOPs utilisation ratio (FUR) of each width, by FLOPs-normalised channel dropout.

Width i gets drop rate ``p_i = p0 * f_mean / f_i`` (clipped to ``max_rate``), so each width
loses the same expected MACs ``p0 * f_mean``. With the model in eval mode, dropping width
i's channels raises the validation loss; FUR_i is that rise per removed MAC, averaged over
``repeats`` masks. Masks are keyed by (width, repeat, sample index), so the two ways of
computing it below give the same numbers:

- ``reference``: for each width and repeat, the whole validation split through the whole
  network, as the paper's code does.
- ``fast``: for models that expose ``chain()`` (the blocks whose composition is the model),
  one clean pass per batch keeps each block's input; each width then re-runs only the
  blocks from the one holding its drop site, for all repeats at once as one larger batch,
  restarting inside a block at the drop site itself where the block offers ``resume``.

``second-order`` draws no masks: the expected loss rise from the loss curvature along each
channel (second_order.py), all widths from backward passes through one forward pass.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .channel_drop import ChannelDrop, Site
from .config import FurConfig
from .data import DatasetInfo, ImageData, Normalize, batches
from .distributed import SINGLE, Processes
from .second_order import channel_probes, curvature_sums, probe_gradients


@dataclass
class FurEstimate:
    drop_rates: dict[str, float]  # p_i actually used
    clipped: list[str]  # widths whose p_i was clipped to max_rate
    loss_increase: dict[str, float]  # mean validation loss rise when width i is dropped
    fur: dict[str, float]  # loss rise per removed MAC
    clean_loss: float
    method: str  # "fast", "reference" or "second-order"
    seconds: float
    halves: tuple[dict[str, float], dict[str, float]]  # FUR on even / odd validation samples


# the layout the network runs in for bf16 FUR: NHWC ran MobileNetV3-Small's FUR 3.6x faster
# on a CPU than NCHW, the layout networks come back from training in (bench/precision_speed.py)
BF16_MEMORY_FORMAT = torch.channels_last


def drop_rates(
    sensitivities: dict[str, float], base_rate: float, max_rate: float
) -> tuple[dict[str, float], list[str]]:
    """FLOPs-normalised rates ``p0 * f_mean / f_i``, clipped to ``max_rate`` (< 1)."""
    mean = sum(sensitivities.values()) / len(sensitivities)
    rates, clipped = {}, []
    for name, f in sensitivities.items():
        rate = base_rate * mean / f if f > 0 else max_rate
        if rate > max_rate:
            rate = max_rate
            clipped.append(name)
        rates[name] = rate
    return rates, clipped


def _loss_sums(
    logits: torch.Tensor, labels: torch.Tensor, samples: torch.Tensor, less: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss sums over the even- and the odd-indexed validation samples, shape (2,), float64,
    each sample's loss diminished by ``less`` where given; on the logits' device, so that a
    GPU never waits for the host inside the estimate.

    Summed per sample in float64, so that batching does not change the rounding; the two
    halves give two independent estimates for the stability figures.
    """
    losses = F.cross_entropy(logits.float(), labels, reduction="none").double()
    if less is not None:
        losses = losses - less.double()
    return torch.zeros(2, dtype=torch.float64, device=losses.device).index_add_(0, samples % 2, losses)


def _loss_gradients(model, sites, val_set, normalize, batch_size) -> dict[str, torch.Tensor]:
    """Per width, the gradient of each sample's clean loss with respect to a multiplier on
    each of its channels, shape (samples, channels): g in the first-order term g . (delta - 1)."""
    found: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    with torch.enable_grad(), channel_probes(model, sites) as probes:
        for images, labels in batches(val_set, batch_size, normalize):
            loss = F.cross_entropy(model(images).float(), labels, reduction="sum")
            for name, grad in zip(probes, probe_gradients(loss, probes, retain=False), strict=True):
                found[name].append(grad)
    return {name: torch.cat(grads) for name, grads in found.items()}


def _first_order(drop: ChannelDrop, gradients, name: str, samples: torch.Tensor, first: int):
    """g . (delta - 1) per row, for the masks the drop hook draws for the keyed rows: the
    loss change to first order. Its expectation is 0, so subtracting it leaves the estimate
    unbiased while it removes most of the mask noise (a control variate)."""
    g = gradients[name][samples - first]
    return (g * (drop.keyed_mask(name, g.shape[1]) - 1.0)).sum(1)


def _progress(items, label: str, unit: str, total: int | None = None):
    """``items``, with a progress bar on a terminal. The bar starts once the first item is
    done, so that its rate and ETA leave that item out: it pays for setting up the kernels
    of every new shape, and an ETA from it alone was 6x too long."""
    total = len(items) if total is None and hasattr(items, "__len__") else total
    iterator = iter(items)
    for first in iterator:
        yield first
        break
    else:
        return
    bar = tqdm(
        iterator, desc=label, total=total, initial=1, leave=False, disable=not sys.stderr.isatty(), unit=unit
    )
    yield from bar


def _reference_sums(model, drop, val_set, normalize, rates, repeats, batch_size, first_sample, gradients):
    """Clean loss sums and, per width, the mean loss rise summed over the samples: whole
    network each time (less the first-order term where ``gradients`` are given)."""
    clean = torch.zeros(2, dtype=torch.float64, device=val_set.device)
    for index, (images, labels) in enumerate(batches(val_set, batch_size, normalize)):
        samples = torch.arange(len(labels), device=labels.device) + index * batch_size + first_sample
        clean += _loss_sums(model(images), labels, samples)
    dropped = {}
    for name in _progress(rates, "FUR (reference)", "width"):
        drop.set_rates({name: rates[name]})
        dropped[name] = torch.zeros(2, dtype=torch.float64, device=val_set.device)
        for repeat in range(repeats):
            for index, (images, labels) in enumerate(batches(val_set, batch_size, normalize)):
                samples = torch.arange(len(labels), device=labels.device) + index * batch_size + first_sample
                repeat_ids = torch.full_like(samples, repeat)
                drop.use_keys(repeat_ids, samples)
                less = (
                    None if gradients is None else _first_order(drop, gradients, name, samples, first_sample)
                )
                dropped[name] += _loss_sums(model(images), labels, samples, less)
    return clean, {name: sums / repeats - clean for name, sums in dropped.items()}


def _restart_points(model, chain: list, sites: dict[str, str]) -> dict[str, tuple[int, str | None]]:
    """For each width: the index of the chain block holding its drop site, and the site's
    name inside that block when the block can resume there (else None: rerun the block)."""
    points = {}
    for name, site in sites.items():
        module = model.get_submodule(site)
        for index, block in enumerate(chain):
            local = next((local for local, m in block.named_modules() if m is module), None)
            if local is not None:
                points[name] = (index, local if hasattr(block, "resume") else None)
                break
        else:
            raise ValueError(f"drop site {site!r} is in no block of the model's chain()")
    return points


def _fast_sums(model, drop, val_set, normalize, rates, repeats, batch_size, first_sample, gradients):
    """Same sums as the reference; what precedes each drop site is computed once per batch."""
    chain = model.chain()
    points = _restart_points(model, chain, drop.sites)
    rows = max(1, batch_size // repeats)  # validation images per batch; repeats x rows go through
    clean = torch.zeros(2, dtype=torch.float64, device=val_set.device)
    dropped = {name: torch.zeros(2, dtype=torch.float64, device=val_set.device) for name in rates}
    batch_count = (len(val_set) + rows - 1) // rows
    progress = _progress(batches(val_set, rows, normalize), "FUR (fast)", "batch", batch_count)
    for index, (images, labels) in enumerate(progress):
        drop.set_rates({})
        inputs, caches, h = [], [], images
        for block in chain:
            inputs.append(h)
            caches.append({})
            h = block(h, caches[-1]) if hasattr(block, "resume") else block(h)
        samples = torch.arange(len(labels), device=labels.device) + index * rows + first_sample
        clean += _loss_sums(h, labels, samples)
        repeat_ids = torch.arange(repeats, device=labels.device).repeat_interleave(len(labels))
        drop.use_keys(repeat_ids, samples.repeat(repeats))
        tile = lambda t: t.repeat(repeats, *([1] * (t.ndim - 1)))  # noqa: E731  (T*rows, ...)
        for name in rates:
            start, site = points[name]
            drop.set_rates({name: rates[name]})
            h = tile(inputs[start])
            if site is None:
                h = chain[start](h)
            else:
                h = chain[start].resume(site, h, {key: tile(v) for key, v in caches[start].items()})
            for block in chain[start + 1 :]:
                h = block(h)
            rows_samples = samples.repeat(repeats)
            less = (
                None if gradients is None else _first_order(drop, gradients, name, rows_samples, first_sample)
            )
            dropped[name] += _loss_sums(h, labels.repeat(repeats), rows_samples, less)
    return clean, {name: sums / repeats - clean for name, sums in dropped.items()}


def _second_order_sums(
    model, sites, val_set, normalize, rates, repeats, batch_size, first_sample, curvature, seed
):
    """Clean loss sums and, per width, 1/2 p/(1-p) sum_c H_cc summed over the samples."""
    clean = torch.zeros(2, dtype=torch.float64, device=val_set.device)
    rises = {name: torch.zeros(2, dtype=torch.float64, device=val_set.device) for name in rates}
    batch_count = (len(val_set) + batch_size - 1) // batch_size
    progress = _progress(batches(val_set, batch_size, normalize), "FUR (second order)", "batch", batch_count)
    with torch.enable_grad(), channel_probes(model, sites) as probes:
        for index, (images, labels) in enumerate(progress):
            samples = torch.arange(len(labels), device=labels.device) + index * batch_size + first_sample
            logits = model(images)
            clean += _loss_sums(logits.detach(), labels, samples)
            sums = curvature_sums(logits, labels, samples, probes, curvature, repeats, seed)
            for name, rate in rates.items():
                rises[name] += 0.5 * rate / (1 - rate) * sums[name]
    return clean, rises


def default_batch_size(device: torch.device, image_size: int) -> int:
    """Images per FUR batch: 128 on a CPU, where small batches stay in the caches and run
    faster; on CUDA as many as hold 4,096 32x32 images' pixels, at least 128. On an H200,
    FUR of ResNet-20 on 10,000 images took 23 s at batch 128 and 5.5 s at 4,096
    (bench/results/gpu_speed-h200-1.json)."""
    if device.type != "cuda":
        return 128
    return max(128, 4096 * 32 * 32 // image_size**2)


def estimate_fur(
    model: nn.Module,
    val_set: ImageData,
    info: DatasetInfo,
    sensitivities: dict[str, float],
    config: FurConfig,
    *,
    seed: int,
    drop_sites: dict[str, Site] | None = None,
    batch_size: int | None = None,
    processes: Processes = SINGLE,
) -> FurEstimate:
    """FUR of every width of ``model`` on ``val_set`` (on the model's device), as ``config``
    says: drop rates, repeats, method ("auto": the fast path when the model exposes
    ``chain()``), the second-order method's curvature (``repeats`` label draws for
    "sampled"), the control variate (Monte Carlo less each mask's first-order loss change,
    whose mean is 0: one backward pass per batch, the same quantity, less noise) and bf16
    autocast (losses still summed in float64; None counts as off).

    ``batch_size`` images go through the network at once (the fast path: repeats x
    batch_size / repeats); by default ``default_batch_size``.
    With several ``processes`` each takes a contiguous share of ``val_set``; masks are keyed
    by the global sample index and the loss sums all-reduced, so the result is the same.
    """
    config.validate()
    if batch_size is None:
        batch_size = default_batch_size(val_set.device, info.image_size)
    method, repeats, curvature = config.method, config.repeats, config.curvature
    if method == "auto":
        method = "fast" if hasattr(model, "chain") else "reference"
    start = time.perf_counter()
    sites = drop_sites if drop_sites is not None else model.drop_sites
    rates, clipped = drop_rates(sensitivities, config.base_rate, config.max_rate)
    normalize = Normalize(info, val_set.device)
    was_training = model.training
    model.eval()
    if config.bf16:  # fp32 keeps the reference's arithmetic (and its NCHW order)
        model.to(memory_format=BF16_MEMORY_FORMAT)
    share = processes.shard(len(val_set))
    shard = (val_set.subset(share), normalize, rates, repeats, batch_size, share.start)
    with torch.autocast(val_set.device.type, dtype=torch.bfloat16, enabled=bool(config.bf16)):
        if method == "second-order":
            clean, rise = _second_order_sums(model, sites, *shard, curvature, seed)
        else:
            compute = _fast_sums if method == "fast" else _reference_sums
            gradients = (
                _loss_gradients(model, sites, *shard[:2], batch_size) if config.control_variate else None
            )
            with torch.inference_mode(), ChannelDrop(model, sites, seed=seed) as drop:
                clean, rise = compute(model, drop, *shard, gradients)
    model.train(was_training)
    if config.bf16:
        model.to(memory_format=torch.contiguous_format)
    names = list(rise)
    sums = processes.sum(torch.stack([clean, *(rise[name] for name in names)]))
    clean, rise = sums[0].cpu(), {name: sums[1 + i].cpu() for i, name in enumerate(names)}

    def fur_from(rise: dict[str, float], n: int) -> tuple[dict, dict]:
        increase = {name: rise[name] / n for name in sites}
        return increase, {name: increase[name] / (rates[name] * sensitivities[name]) for name in sites}

    n = len(val_set)
    increase, fur = fur_from({k: v.sum().item() for k, v in rise.items()}, n)
    halves = tuple(
        fur_from({k: v[h].item() for k, v in rise.items()}, size)[1]
        for h, size in ((0, (n + 1) // 2), (1, n // 2))
    )
    return FurEstimate(
        rates, clipped, increase, fur, clean.sum().item() / n, method, time.perf_counter() - start, halves
    )


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two equally long lists (ties get distinct ranks)."""
    ranks = [torch.tensor(x, dtype=torch.float64).argsort().argsort().double() for x in (a, b)]
    ra, rb = (r - r.mean() for r in ranks)
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def stability(estimate: FurEstimate, k: int) -> dict:
    """How far the two half-sample estimates agree: their Spearman correlation, and the
    share of the k widths each would grow (and shrink) that the other picks too."""
    first, second = estimate.halves
    names = list(first)

    def extremes(fur: dict, top: bool) -> set[str]:
        return set(sorted(names, key=fur.get, reverse=top)[:k])

    def overlap(top: bool) -> float | None:
        return len(extremes(first, top) & extremes(second, top)) / k if k else None

    return {
        "split": "even vs odd validation samples",
        "spearman": spearman([first[n] for n in names], [second[n] for n in names]),
        "k": k,
        "grow_overlap": overlap(True),
        "shrink_overlap": overlap(False),
    }
