"""The update rule of Network Adjustment and the rescale back to the budget.

Rounding is Python's ``round`` (halves to even) wherever the reference rounds: k, the
grown and shrunk widths, and the rescaled widths. ``round_to`` is the grid widths move on:
one step for all (``--round-to``), or a step per width (``spaces.width_grid``: ``--round-to``
combined with the multiple a user's grouped layers need).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .config import BUDGET_TOLERANCE, AdjustRule, Widths
from .errors import UserError

Grid = int | Mapping[str, int]  # the step of every width, or of each
Floor = int | Mapping[str, int]  # the least width of every width (--min-width), or of each


def step_of(grid: Grid, name: str) -> int:
    return grid if isinstance(grid, int) else grid[name]


def floor_of(floor: Floor, name: str) -> int:
    return floor if isinstance(floor, int) else floor[name]


def layers_to_move(rule: AdjustRule, iteration: int) -> int:
    """``k = max(round(k0 - iteration * k_decay), 0)``, halves to even as in the reference:
    k0 = 6 with decay 0.5 gives 6, 6, 5, 4, 4, 4, 3, 2, 2, 2."""
    return max(round(rule.k0 - iteration * rule.k_decay), 0)


def adjust(
    widths: Widths,
    fur: dict[str, float],
    initial: Widths,
    iteration: int,
    rule: AdjustRule,
    grid: Grid | None = None,
    floor: Floor | None = None,
) -> tuple[Widths, list[str], list[str]]:
    """Grow the k widths of highest FUR, shrink the k lowest, by ``a_r * initial`` (with
    ``rule.step`` "current": ``a_r * c``; "lesser": ``a_r * min(initial, c)``, so that a width
    below its start moves by its own share and is never cut to a sliver of itself, the
    undone moves of bench/undone_moves.py); the reference rounds the new width,
    ``round(c +- a_r * c_initial)``, not the step. With a
    ``grid`` step N > 1 (default ``rule.round_to``) the step is a whole number of N (at
    least one, where a_r > 0). ``floor``: the least width of each (default ``rule.min_width``).

    Returns the new widths and the names grown and shrunk, most extreme first.
    """
    k = layers_to_move(rule, iteration)
    ranked = sorted(widths, key=lambda name: fur[name], reverse=True)
    grown, shrunk = ranked[:k], ranked[::-1][:k]
    result = dict(widths)
    for sign, group in ((1, grown), (-1, shrunk)):
        for rank, name in enumerate(group):
            n = step_of(rule.round_to if grid is None else grid, name)
            base = step_base(rule.step, initial[name], widths[name])
            change = max(rule.rate - rule.rate_decay * rank, 0.0) * base
            if n == 1:
                width = round(widths[name] + sign * change)
            else:
                width = widths[name] + sign * n * (max(1, round(change / n)) if change > 0 else 0)
            least = floor_of(rule.min_width if floor is None else floor, name)
            result[name] = max(lowest_width(least, n), width)
    return result, grown, shrunk


def step_base(step: str, initial: int, current: int) -> int:
    """The width a step is a share of, by ``--step``."""
    return {"initial": initial, "current": current, "lesser": min(initial, current)}[step]


def lowest_width(min_width: int, round_to: int = 1) -> int:
    """The smallest width allowed: ``min_width``, raised to a multiple of ``round_to``."""
    return -(-min_width // round_to) * round_to


def scale_widths(widths: Widths, factor: float, min_width: Floor, round_to: Grid = 1) -> Widths:
    """Every width times ``factor``, rounded (to a multiple of its step), at least the minimum."""
    result = {}
    for name, width in widths.items():
        n = step_of(round_to, name)
        result[name] = max(lowest_width(floor_of(min_width, name), n), n * round(factor * width / n))
    return result


def excess(cost: int, budget: int) -> float:
    """How far ``cost`` lies above the budget, relative to the cost: the reference's measure."""
    return (cost - budget) / cost


def within_budget(cost: int, budget: int, tolerance: float = BUDGET_TOLERANCE) -> bool:
    return abs(excess(cost, budget)) <= tolerance


def check_floor(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    min_width: Floor,
    tolerance: float,
    round_to: Grid = 1,
    show: Callable[[int], str] = "{:,}".format,
) -> None:
    """Refuse a budget that even the minimum widths exceed beyond ``tolerance``: no rescale
    could meet it. ``show`` writes a cost in its unit."""
    floor = scale_widths(widths, 0.0, min_width, round_to)
    floor_cost = cost(floor)
    if floor_cost > budget * (1 + tolerance):
        lowest = sorted(set(floor.values()))
        each = f"{lowest[0]} channels" if len(lowest) == 1 else f"{lowest[0]} to {lowest[-1]} channels"
        raise UserError(
            f"the budget of {show(budget)} cannot be met: the minimum widths alone ({each} each) cost "
            f"{show(floor_cost)} ({floor_cost / budget - 1:+.1%}); lower --min-width"
            + (" or --round-to" if any(floor[name] > floor_of(min_width, name) for name in floor) else "")
        )


def rescale(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    min_width: Floor,
    tolerance: float = BUDGET_TOLERANCE,
    max_steps: int = 20,
    round_to: Grid = 1,
) -> Widths:
    """Scale all widths by one factor s until ``cost`` is within ``tolerance`` of ``budget``.

    As the reference: bisect s between 1 and 1 - e (e the relative excess of the current
    cost), at most ``max_steps`` times, stopping at the first s whose rounded widths are
    within the band. Our additions: widths never fall below ``min_width``, and when the
    bisection ends outside the band (rounding, in tiny networks), the closest single-factor
    scaling is taken and single channels are then moved while that brings the cost closer;
    the caller reports a result that is still outside.
    """
    check_floor(widths, cost, budget, min_width, tolerance, round_to)
    result = scale_widths(widths, 1.0, min_width, round_to)  # on the grid even when already in band
    error = excess(cost(result), budget)
    begin, end = 1.0, max(1.0 - error, 0.0)
    for _ in range(max_steps):
        if abs(error) <= tolerance:
            return result
        factor = (begin + end) / 2
        result = scale_widths(widths, factor, min_width, round_to)
        error = excess(cost(result), budget)
        if (error > 0) == (factor > 1):
            end = factor
        else:
            begin = factor
    if abs(error) <= tolerance:
        return result
    closest = closest_scaling(widths, cost, budget, min_width, tolerance, round_to=round_to)
    return _nudge(closest, cost, budget, min_width, tolerance, round_to)


def widest_within(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    min_width: Floor,
    tolerance: float,
    steps: int = 10,
    round_to: Grid = 1,
) -> Widths:
    """``widths`` scaled by the largest factor whose cost stays below ``budget`` plus
    ``tolerance`` (bisection of the crossing): the rescale of a measured time, which can
    be flat in the widths over a wide range (narrow layers cost their overhead, not their
    channels), where stopping at the first factor within the band would pick an arbitrary
    one of many, however narrow."""
    ceiling = budget * (1 + tolerance)
    low, high = 0.0, 1.0
    while cost(scale_widths(widths, high, min_width, round_to)) <= ceiling and high < 8:
        low, high = high, 2 * high
    for _ in range(steps):
        middle = (low + high) / 2
        if cost(scale_widths(widths, middle, min_width, round_to)) <= ceiling:
            low = middle
        else:
            high = middle
    return scale_widths(widths, low, min_width, round_to)


def filled(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    order: list[str],
    slack: float,
    round_to: Grid = 1,
    confirm: Callable[[Widths], int] | None = None,
) -> Widths:
    """``widths`` with single widths grown by one step each, in ``order`` (the most useful
    first), while the cost lies more than ``slack`` under the budget and stays within it:
    where the cost steps with the widths (a measured time), the widest single scaling can
    stop one step short, several percent under the budget. Where the cost is a noisy timing,
    a growth accepted because its timing fell under the budget is as often a lucky timing,
    and many tries add up to a drift over it; ``confirm`` (a timing taken afresh) then
    decides, and growths are undone, the last first, until it fits."""
    current, grown = dict(widths), [dict(widths)]
    for name in order:
        if cost(current) >= budget * (1 - slack):
            break
        candidate = {**current, name: current[name] + step_of(round_to, name)}
        if cost(candidate) <= budget:
            current = candidate
            grown.append(current)
    if confirm is not None:
        while len(grown) > 1 and confirm(grown[-1]) > budget:
            grown.pop()
    return grown[-1]


def closest_scaling(
    widths: Widths,
    cost: Callable[[Widths], int],
    target: int,
    min_width: Floor,
    tolerance: float = 0.0,
    max_steps: int = 40,
    round_to: Grid = 1,
) -> Widths:
    """``widths`` scaled by the one factor s (bisection) whose rounded widths cost closest
    to ``target``, stopping early once within ``tolerance``. Every width keeps its share:
    this is also the uniform baseline at a given cost."""
    low, high = 0.0, 1.0
    for _ in range(30):  # the cost grows with s; 2**30 is far beyond any budget
        if cost(scale_widths(widths, high, min_width, round_to)) >= target:
            break
        high *= 2
    best = scale_widths(widths, 1.0, min_width, round_to)
    for _ in range(max_steps):
        if within_budget(cost(best), target, tolerance):
            break
        middle = (low + high) / 2
        candidate = scale_widths(widths, middle, min_width, round_to)
        if abs(cost(candidate) - target) < abs(cost(best) - target):
            best = candidate
        if cost(candidate) < target:
            low = middle
        else:
            high = middle
    return best


def _nudge(
    widths: Widths,
    cost: Callable[[Widths], int],
    budget: int,
    min_width: Floor,
    tolerance: float,
    round_to: Grid = 1,
) -> Widths:
    """Add or remove one channel (or ``round_to`` of them) at a time, taking the move that
    lands closest to budget."""
    current = dict(widths)
    while not within_budget(cost(current), budget, tolerance):
        sign = 1 if cost(current) < budget else -1
        moves = [
            {**current, name: width + sign * step_of(round_to, name)}
            for name, width in current.items()
            if width + sign * step_of(round_to, name)
            >= lowest_width(floor_of(min_width, name), step_of(round_to, name))
        ]
        best = min(moves, key=lambda w: abs(cost(w) - budget), default=None)
        if best is None or abs(cost(best) - budget) >= abs(cost(current) - budget):
            break
        current = best
    return current
