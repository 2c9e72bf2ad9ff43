"""Speed beside accuracy: equal MACs is not equal time (a searched ResNet-20 with odd widths
trained at 0.44 of the original's rate on an AVX-512 CPU). Each network's training rate
and inference latency, measured side by side in one process: the networks take turns,
round after round, so a slower moment of the machine falls on all of them alike, and the
median over rounds is kept with its spread (the range of the middle half of the rounds).

And the timing ``--budget latency`` rests on, made for a shared, noisy machine: a work timed
in many short blocks, whose low percentile is its time (``time_work``: interruptions only
add time), in two repeats whose disagreement shows a lasting slowdown; two works compared
in A B B A rounds (``abba_ratio``). Every timing reads the ``clock`` it is given (the
wall clock unless a test passes a machine of its own).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import Recipe
from .train import autocast_dtype

ROUNDS = 5


def side_by_side(
    models: dict[str, nn.Module],
    shape: tuple[int, int, int],
    classes: int,
    recipe: Recipe,
    latency_precision: str = "fp32",
    latency_threads: int = 0,
):
    """Per network: ``train_images_per_s`` (SGD steps at ``recipe.batch_size`` in its
    precision and memory format, random data, on torch's threads as training runs) and
    ``latency_ms`` (one image, eval mode, in ``latency_precision`` on ``latency_threads``
    CPU threads, 0: torch's: a deployment figure), medians of ``ROUNDS`` interleaved
    rounds, and their relative spreads."""
    device = next(next(iter(models.values())).parameters()).device
    dtype = autocast_dtype(recipe.precision, device, trained=next(iter(models.values())))
    latency_dtype = autocast_dtype(latency_precision, device)
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
            torch.autocast(
                device.type, dtype=latency_dtype or torch.float32, enabled=latency_dtype is not None
            ),
        ):
            copies[name].eval()(one)

    names = list(copies)
    train = timed_together([lambda name=name: train_step(name) for name in names], device, ROUNDS, 0.05)
    with using_threads(latency_threads):
        inference = timed_together([lambda name=name: infer(name) for name in names], device, ROUNDS, 0.05)
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


Clock = Callable[[], float]

LOW_QUANTILE = 0.2  # the estimate of a time: a low percentile of many short blocks


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one work: a low percentile of its blocks' times (interruptions
    of a shared machine only ever add time, so the low end of the blocks is the work's own
    time however many were disturbed), and the same estimate from each of two repeats
    timed one after the other, whose disagreement says whether the machine slowed down
    for good while it was timed (a sporadic spike moves neither)."""

    seconds: float
    repeats: tuple[float, float]

    @property
    def disagreement(self) -> float:
        return max(self.repeats) / min(self.repeats) - 1


def time_work(
    work: Callable[[], None],
    device: torch.device,
    blocks: int = 40,
    block_seconds: float = 0.005,
    clock: Clock = time.perf_counter,
):
    """The ``Timing`` of ``work``: ``blocks`` blocks of equal calls (as many as fill
    ``block_seconds``, after warm-up) in two repeats of ``blocks / 2``."""
    calls = calls_per_block(work, device, block_seconds, clock)
    first = block_times(work, device, calls, max(1, blocks // 2), clock)
    second = block_times(work, device, calls, max(1, blocks // 2), clock)
    return Timing(low_percentile(first + second), (low_percentile(first), low_percentile(second)))


def block_times(
    work: Callable[[], None], device: torch.device, calls: int, blocks: int, clock: Clock = time.perf_counter
) -> list[float]:
    """Seconds per call of ``work`` in each of ``blocks`` blocks of ``calls`` calls."""
    times = []
    for _ in range(blocks):
        _sync(device)
        start = clock()
        for _ in range(calls):
            work()
        _sync(device)
        times.append((clock() - start) / calls)
    return times


def abba_ratio(
    a: Callable[[], None],
    b: Callable[[], None],
    device: torch.device,
    quads: int = 24,
    block_seconds: float = 0.002,
    clock: Clock = time.perf_counter,
) -> tuple[float, float]:
    """The time of ``a`` over that of ``b`` from ``quads`` rounds timed in the order A B B A
    (a drift of the machine's speed within a round falls on both alike, to first order),
    and the relative spread of all the rounds' ratios (the noise a decision on the ratio
    has to clear: the kept quarter's own spread understates it, being chosen as the
    steadiest). A spike makes its round's ratio an outlier, high or low, and its round's
    total longer: the ratio is the median over the quarter of the rounds that took least
    time in all, the undisturbed ones."""
    calls_a = calls_per_block(a, device, block_seconds, clock)
    calls_b = calls_per_block(b, device, block_seconds, clock)
    rounds = []
    for _ in range(quads):
        (a1,), (b1,) = block_times(a, device, calls_a, 1, clock), block_times(b, device, calls_b, 1, clock)
        (b2,), (a2,) = block_times(b, device, calls_b, 1, clock), block_times(a, device, calls_a, 1, clock)
        rounds.append((a1 + a2 + b1 + b2, (a1 + a2) / (b1 + b2)))
    kept = [ratio for _, ratio in sorted(rounds)[: max(2, quads // 4)]]
    return statistics.median(kept), relative_spread([ratio for _, ratio in rounds])


def timed_together(works: list[Callable[[], None]], device: torch.device, rounds: int, round_seconds: float):
    """Per work, its seconds per call in each of ``rounds`` rounds; the works take turns
    within every round, so a slower moment of a shared machine falls on all of them."""
    calls = [calls_per_block(work, device, round_seconds) for work in works]
    seconds: list[list[float]] = [[] for _ in works]
    for _ in range(rounds):
        for work, count, times in zip(works, calls, seconds, strict=True):
            times.extend(block_times(work, device, count, 1))
    return seconds


def calls_per_block(
    work: Callable[[], None], device: torch.device, block_seconds: float, clock: Clock = time.perf_counter
) -> int:
    """Warm ``work`` up (the first calls choose kernels and grow the allocator's pools) and
    return how many calls fill ``block_seconds``, from the median of three timed calls (one
    call, if disturbed, would set every block's length)."""
    warm_up = clock()
    for count in range(1, 10_000):
        work()
        _sync(device)
        if count >= 3 and clock() - warm_up > block_seconds:
            break
    single = statistics.median(block_times(work, device, 1, 3, clock))
    return max(1, min(10_000, round(block_seconds / max(single, 1e-7))))


def low_percentile(values: list[float]) -> float:
    """The ``LOW_QUANTILE`` quantile of ``values`` (linear between neighbours)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=round(1 / LOW_QUANTILE), method="inclusive")[0]


@contextlib.contextmanager
def using_threads(count: int):
    """torch's intra-op threads set to ``count`` (0: left as they are) while timing."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def relative_spread(values: list[float]) -> float:
    """The interquartile range over the median."""
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(values)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
