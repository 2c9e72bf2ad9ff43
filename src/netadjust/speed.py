"""Speed beside accuracy: equal MACs is not equal time (a searched ResNet-20 with odd widths
trained at 0.44 of the original's rate on an AVX-512 CPU). Each network's training rate
and inference latency, measured side by side in one process: the networks take turns,
round after round, so a slower moment of the machine falls on all of them alike, and the
median over rounds is kept with its spread (the range of the middle half of the rounds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import Recipe
from .train import autocast_dtype

ROUNDS = 5


def side_by_side(models: dict[str, nn.Module], shape: tuple[int, int, int], classes: int, recipe: Recipe):
    """Per network: ``train_images_per_s`` (SGD steps at ``recipe.batch_size`` in its
    precision and memory format, random data) and ``latency_ms`` (one image, eval mode),
    medians of ``ROUNDS`` interleaved rounds, and their relative spreads."""
    device = next(next(iter(models.values())).parameters()).device
    dtype = autocast_dtype(recipe.precision, device)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(recipe.batch_size, *shape, generator=generator).to(device, memory_format=fmt)
    labels = torch.randint(0, classes, (recipe.batch_size,), generator=generator).to(device)
    one = images[:1].contiguous(memory_format=fmt)
    copies = {name: _copy(model, fmt) for name, model in models.items()}
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=1e-3) for name, model in copies.items()}

    def train_step(name: str) -> None:
        model = copies[name].train()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    def infer(name: str) -> None:
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            copies[name].eval()(one)

    names = list(copies)
    works = [lambda name=name: train_step(name) for name in names]
    works += [lambda name=name: infer(name) for name in names]
    times = timed_together(works, device, ROUNDS, round_seconds=0.05)
    train, inference = times[: len(names)], times[len(names) :]
    return {
        name: {
            "train_images_per_s": recipe.batch_size / statistics.median(train[index]),
            "latency_ms": 1000 * statistics.median(inference[index]),
            "spread": max(relative_spread(train[index]), relative_spread(inference[index])),
        }
        for index, name in enumerate(names)
    }


def slower(a: dict, b: dict, tolerance: float = 0.05) -> bool:
    """Whether network ``a`` trains or infers slower than ``b`` by more than ``tolerance``
    and more than the two measurements' spread."""
    margin = max(tolerance, a["spread"] + b["spread"])
    return (
        a["train_images_per_s"] < (1 - margin) * b["train_images_per_s"]
        or a["latency_ms"] > (1 + margin) * b["latency_ms"]
    )


def _copy(model: nn.Module, fmt: torch.memory_format) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(memory_format=fmt)


def timed(work: Callable[[], None], device: torch.device, rounds: int, round_seconds: float):
    """Median seconds per call of ``work`` over ``rounds`` rounds of equal calls (as many as
    fill ``round_seconds``, after warm-up), and the relative spread of the rounds."""
    (seconds,) = timed_together([work], device, rounds, round_seconds)
    return statistics.median(seconds), relative_spread(seconds)


def timed_together(works: list[Callable[[], None]], device: torch.device, rounds: int, round_seconds: float):
    """Per work, its seconds per call in each of ``rounds`` rounds; the works take turns
    within every round, so a slower moment of a shared machine falls on all of them."""
    calls = [_calls_per_round(work, device, round_seconds) for work in works]
    seconds: list[list[float]] = [[] for _ in works]
    for _ in range(rounds):
        for work, count, times in zip(works, calls, seconds, strict=True):
            _sync(device)
            start = time.perf_counter()
            for _ in range(count):
                work()
            _sync(device)
            times.append((time.perf_counter() - start) / count)
    return seconds


def _calls_per_round(work: Callable[[], None], device: torch.device, round_seconds: float) -> int:
    """Warm ``work`` up (the first calls choose kernels and grow the allocator's pools) and
    return how many calls fill ``round_seconds``."""
    warm_up = time.perf_counter()
    for count in range(1, 10_000):
        work()
        _sync(device)
        if count >= 3 and time.perf_counter() - warm_up > round_seconds:
            break
    start = time.perf_counter()
    work()
    _sync(device)
    return max(1, min(10_000, round(round_seconds / max(time.perf_counter() - start, 1e-7))))


def relative_spread(values: list[float]) -> float:
    """The interquartile range over the median."""
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(values)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
