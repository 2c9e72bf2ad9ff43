"""FLOPs utilisation ratio (FUR) of each width, by FLOPs-normalised channel dropout.

Width i gets drop rate ``p_i = p0 * f_mean / f_i`` (clipped to ``max_rate``), so each width
loses the same expected MACs ``p0 * f_mean``. With the model in eval mode, dropping width
i's channels raises the validation loss; FUR_i is that rise per removed MAC, averaged over
``repeats`` independent masks.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .channel_drop import ChannelDrop
from .data import DatasetInfo, ImageSet, Normalize, batches


@dataclass
class FurEstimate:
    drop_rates: dict[str, float]  # p_i actually used
    clipped: list[str]  # widths whose p_i was clipped to max_rate
    loss_increase: dict[str, float]  # mean validation loss rise when width i is dropped
    fur: dict[str, float]  # loss rise per removed MAC
    clean_loss: float
    seconds: float


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


@torch.no_grad()
def mean_loss(model: nn.Module, data: ImageSet, normalize: Normalize, batch_size: int) -> float:
    total = 0.0
    for images, labels in batches(data, batch_size, normalize):
        total += F.cross_entropy(model(images), labels, reduction="sum").item()
    return total / len(data)


@torch.no_grad()
def estimate_fur(
    model: nn.Module,
    val_set: ImageSet,
    info: DatasetInfo,
    sensitivities: dict[str, float],
    *,
    base_rate: float,
    repeats: int,
    seed: int,
    max_rate: float = 0.9,
    drop_sites: dict[str, str] | None = None,
    batch_size: int = 500,
) -> FurEstimate:
    """Reference estimator: for each width and repeat, the whole validation split once."""
    start = time.perf_counter()
    model.eval()
    device = val_set.images.device
    normalize = Normalize(info, device)
    sites = drop_sites if drop_sites is not None else model.drop_sites
    rates, clipped = drop_rates(sensitivities, base_rate, max_rate)
    generator = torch.Generator(device=device).manual_seed(seed)
    increase, fur = {}, {}
    with ChannelDrop(model, sites, generator) as drop:
        clean = mean_loss(model, val_set, normalize, batch_size)
        for name in tqdm(sites, desc="FUR", leave=False, disable=not sys.stderr.isatty(), unit="width"):
            drop.set_rates({name: rates[name]})
            dropped = sum(mean_loss(model, val_set, normalize, batch_size) for _ in range(repeats))
            increase[name] = dropped / repeats - clean
            fur[name] = increase[name] / (rates[name] * sensitivities[name])
    return FurEstimate(rates, clipped, increase, fur, clean, time.perf_counter() - start)
