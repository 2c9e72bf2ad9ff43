"""The update rule of Network Adjustment and the rescale back to the budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UserError

Widths = dict[str, int]


@dataclass(frozen=True)
class AdjustRule:
    k0: float = 3.0  # layers grown (and shrunk) at iteration 0
    k_decay: float = 0.5  # k falls by this much per iteration
    rate: float = 0.1  # adjusting rate a: fraction of the initial width added/removed
    rate_decay: float = 0.0  # d: a_r = max(a - d * r, 0) for rank r inside its group
    min_width: int = 4

    def validate(self, num_widths: int) -> None:
        if self.k0 < 0 or 2 * round_half_up(self.k0) > num_widths:
            raise UserError(
                f"--k is {self.k0}; with {num_widths} widths it must lie in [0, {num_widths // 2}] "
                "so that the grown and shrunk groups do not overlap"
            )
        if self.k_decay < 0:
            raise UserError(f"--k-decay is {self.k_decay}; give a value >= 0")
        if not 0 <= self.rate < 1:
            raise UserError(f"--adjust-rate is {self.rate}; give a value in [0, 1)")
        if self.rate_decay < 0:
            raise UserError(f"--adjust-rate-decay is {self.rate_decay}; give a value >= 0")
        if self.min_width < 1:
            raise UserError(f"--min-width is {self.min_width}; give at least 1")


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def layers_to_move(rule: AdjustRule, iteration: int) -> int:
    """``k = max(round(k0 - iteration * k_decay), 0)``."""
    return max(round_half_up(rule.k0 - iteration * rule.k_decay), 0)


def adjust(
    widths: Widths, fur: dict[str, float], initial: Widths, iteration: int, rule: AdjustRule
) -> tuple[Widths, list[str], list[str]]:
    """Grow the k widths of highest FUR, shrink the k lowest, by ``round(a_r * initial)``.

    Returns the new widths and the names grown and shrunk, most extreme first.
    """
    k = layers_to_move(rule, iteration)
    ranked = sorted(widths, key=lambda name: fur[name], reverse=True)
    grown, shrunk = ranked[:k], ranked[::-1][:k]
    result = dict(widths)
    for rank, name in enumerate(grown):
        step = round_half_up(max(rule.rate - rule.rate_decay * rank, 0.0) * initial[name])
        result[name] = widths[name] + step
    for rank, name in enumerate(shrunk):
        step = round_half_up(max(rule.rate - rule.rate_decay * rank, 0.0) * initial[name])
        result[name] = max(rule.min_width, widths[name] - step)
    return result, grown, shrunk


def scale_widths(widths: Widths, factor: float, min_width: int) -> Widths:
    return {name: max(min_width, round_half_up(factor * width)) for name, width in widths.items()}


def rescale(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    min_width: int,
    tolerance: float = 0.01,
    max_steps: int = 40,
) -> Widths:
    """Scale all widths by one factor s (bisection on s) until ``cost`` is within
    ``tolerance`` of ``budget``; if rounding makes that impossible, finish by moving single
    channels of the layers that change the cost least.
    """
    floor = scale_widths(widths, 0.0, min_width)
    if cost(floor) > budget * (1 + tolerance):
        raise UserError(
            f"the budget of {budget:,} cannot be met: the minimum widths alone cost "
            f"{cost(floor):,}; lower --min-width"
        )
    best = closest_scaling(widths, cost, budget, min_width, tolerance, max_steps)
    if abs(cost(best) - budget) <= tolerance * budget:
        return best
    return _nudge(best, cost, budget, min_width, tolerance)


def closest_scaling(
    widths: Widths,
    cost: Callable[[Widths], int],
    target: int,
    min_width: int,
    tolerance: float = 0.0,
    max_steps: int = 40,
) -> Widths:
    """``widths`` scaled by the one factor s (bisection) whose rounded widths cost closest
    to ``target``, stopping early once within ``tolerance``. Every width keeps its share:
    this is also the uniform baseline at a given cost."""
    low, high = 0.0, 1.0
    for _ in range(30):  # the cost grows with s; 2**30 is far beyond any budget
        if cost(scale_widths(widths, high, min_width)) >= target:
            break
        high *= 2
    best = scale_widths(widths, 1.0, min_width)
    for _ in range(max_steps):
        if abs(cost(best) - target) <= tolerance * target:
            break
        middle = (low + high) / 2
        candidate = scale_widths(widths, middle, min_width)
        if abs(cost(candidate) - target) < abs(cost(best) - target):
            best = candidate
        if cost(candidate) < target:
            low = middle
        else:
            high = middle
    return best


def _nudge(
    widths: Widths, cost: Callable[[Widths], int], budget: int, min_width: int, tolerance: float
) -> Widths:
    """Add or remove one channel at a time, taking the move that lands closest to budget."""
    current = dict(widths)
    while abs(cost(current) - budget) > tolerance * budget:
        sign = 1 if cost(current) < budget else -1
        moves = [
            {**current, name: width + sign} for name, width in current.items() if width + sign >= min_width
        ]
        best = min(moves, key=lambda w: abs(cost(w) - budget), default=None)
        if best is None or abs(cost(best) - budget) >= abs(cost(current) - budget):
            break
        current = best
    return current
