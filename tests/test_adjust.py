import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netadjust.adjust import AdjustRule, adjust, closest_scaling, layers_to_move, rescale, within_budget
from netadjust.cost import model_cost
from netadjust.errors import UserError
from netadjust.spaces import ModelSpec, base_widths

SPEC = ModelSpec("resnet20", in_channels=1, image_size=28, width_mult=0.5)
INITIAL = base_widths(SPEC)
BUDGET = model_cost(SPEC, INITIAL).macs


def macs(widths):
    return model_cost(SPEC, widths).macs


def test_k_decays_per_iteration_and_stops_at_zero():
    rule = AdjustRule(k0=3, k_decay=0.5)
    # round(2.5) = 2, round(1.5) = 2, round(0.5) = 0: halves to even
    assert [layers_to_move(rule, i) for i in range(8)] == [3, 2, 2, 2, 1, 0, 0, 0]


def test_k_schedule_of_the_paper_setting_is_the_references():
    # the reference: max(round(6 - 0.5 * i), 0) under Python 3 (its committed bytecode is
    # CPython 3.6), whose round takes halves to even: 38 layer moves in all, not 40
    rule = AdjustRule(k0=6, k_decay=0.5)
    assert [layers_to_move(rule, i) for i in range(10)] == [6, 6, 5, 4, 4, 4, 3, 2, 2, 2]


def test_grown_and_shrunk_widths_are_rounded_as_the_reference_rounds_them():
    # round(c + a * c_init) with halves to even: 10 + 1.5 -> 12 (11.5), 11 + 1.5 -> 12 (12.5);
    # shrinking 10 - 1.5 -> 8 (8.5), 11 - 1.5 -> 10 (9.5)
    widths = {"a": 10, "b": 11, "c": 10, "d": 11}
    fur = {"a": 4.0, "b": 3.0, "c": 1.0, "d": 2.0}
    new, _, _ = adjust(
        widths, fur, dict.fromkeys(widths, 10), 0, AdjustRule(k0=2, rate=0.15, min_width=1, rate_decay=0)
    )
    assert new == {"a": 12, "b": 12, "c": 8, "d": 10}


def test_top_k_grow_and_bottom_k_shrink_with_rank_decay():
    widths = {"a": 20, "b": 20, "c": 20, "d": 20, "e": 20}
    fur = {"a": 5.0, "b": 1.0, "c": 4.0, "d": -1.0, "e": 0.0}
    rule = AdjustRule(k0=2, k_decay=0, rate=0.2, rate_decay=0.1, min_width=4)
    new, grown, shrunk = adjust(widths, fur, widths, 0, rule)
    assert grown == ["a", "c"] and shrunk == ["d", "e"]
    # rank 0 moves round(0.2 * 20) = 4, rank 1 round(0.1 * 20) = 2
    assert new == {"a": 24, "b": 20, "c": 22, "d": 16, "e": 18}


def test_minimum_width_is_respected():
    widths = {"a": 5, "b": 5}
    new, _, _ = adjust(
        widths,
        {"a": 1.0, "b": 0.0},
        {"a": 50, "b": 50},
        0,
        AdjustRule(k0=1, rate=0.5, min_width=3, rate_decay=0),
    )
    assert new == {"a": 30, "b": 3}


def test_k_larger_than_half_the_widths_is_refused():
    with pytest.raises(UserError, match="--k"):
        AdjustRule(k0=10).validate(18)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_rescale_returns_within_one_percent_of_the_budget(data):
    fur = {name: data.draw(st.floats(-1, 1)) for name in INITIAL}
    rule = AdjustRule(
        k0=data.draw(st.integers(0, 9)), rate=data.draw(st.floats(0, 0.9)), rate_decay=0, min_width=2
    )
    adjusted, _, _ = adjust(INITIAL, fur, INITIAL, 0, rule)
    result = rescale(adjusted, macs, BUDGET, rule.min_width)
    assert abs(macs(result) - BUDGET) <= 0.01 * macs(result)  # the reference measures against the cost
    assert min(result.values()) >= rule.min_width
    assert list(result) == list(INITIAL)


def test_k_zero_changes_nothing_but_the_rescale():
    fur = {name: float(i) for i, name in enumerate(INITIAL)}
    adjusted, grown, shrunk = adjust(INITIAL, fur, INITIAL, 10, AdjustRule(k0=3, k_decay=0.5))
    assert adjusted == INITIAL and grown == shrunk == []
    assert rescale(adjusted, macs, BUDGET, 2) == INITIAL


def test_rescale_bisects_as_the_reference_does():
    # the reference bisects s between 1 and 1 - e, e = (F - B) / F, and stops at the first s
    # whose rounded widths are within 1% (restated here for s < 1)
    doubled = {name: 2 * w for name, w in INITIAL.items()}
    steps, begin, end = [], 1.0, 1 - (macs(doubled) - BUDGET) / macs(doubled)
    while True:
        factor = (begin + end) / 2
        scaled = {name: max(2, round(factor * w)) for name, w in doubled.items()}
        steps.append(factor)
        error = (macs(scaled) - BUDGET) / macs(scaled)
        if abs(error) <= 0.01:
            break
        begin, end = (factor, end) if error > 0 else (begin, factor)
    assert len(steps) > 1
    assert rescale(doubled, macs, BUDGET, 2) == scaled


def test_unreachable_budget_is_refused():
    with pytest.raises(UserError, match="min-width"):
        rescale(INITIAL, macs, BUDGET // 100, min_width=8)


def test_rescale_outside_the_band_returns_the_closest_widths():
    # one width of cost 100 per channel against a budget of 150: 1 or 2 channels, 33% off
    # either way; the caller (the search) warns and records the excess
    result = rescale({"a": 1}, lambda widths: 100 * widths["a"], 150, min_width=1)
    assert result in ({"a": 1}, {"a": 2})
    assert not within_budget(100 * result["a"], 150)


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_with_round_to_every_width_the_search_makes_is_a_multiple(data):
    n = data.draw(st.sampled_from([2, 4, 8]))
    start = {name: n * max(1, round(w / n)) for name, w in INITIAL.items()}
    fur = {name: data.draw(st.floats(-1, 1)) for name in INITIAL}
    rule = AdjustRule(k0=3, rate=data.draw(st.floats(0.01, 0.5)), rate_decay=0, min_width=3, round_to=n)
    adjusted, grown, shrunk = adjust(start, fur, start, 0, rule)
    for name in grown:  # at least one multiple moves
        assert adjusted[name] - start[name] >= n
    result = rescale(adjusted, macs, BUDGET, rule.min_width, round_to=n)
    assert all(width % n == 0 and width >= 4 for width in result.values())  # min width 3 rises to 4
    # the closest cost the grid allows: no single move of n channels lands closer
    gap = abs(macs(result) - BUDGET)
    if gap > 0.01 * macs(result):
        for name, width in result.items():
            for moved in (width - n, width + n):
                if moved >= 4:
                    assert abs(macs({**result, name: moved}) - BUDGET) >= gap


def test_widths_off_the_grid_are_brought_onto_it_even_within_the_budget():
    # a start such as 8/16/32 with --round-to 3, or a user's widths file: the widths adjust
    # leaves alone are off the grid, and their cost may already lie within the band
    result = rescale(INITIAL, macs, BUDGET, min_width=1, round_to=3)
    assert all(width % 3 == 0 for width in result.values())
    assert within_budget(macs(result), BUDGET)
    with pytest.raises(UserError, match="16 channels each.*lower --min-width or --round-to"):
        rescale(INITIAL, macs, BUDGET, min_width=1, round_to=16)  # 16 everywhere costs 13.4M


def test_the_uniform_baseline_stays_on_the_grid():
    uniform = closest_scaling(INITIAL, macs, int(1.5 * BUDGET), min_width=1, round_to=8)
    assert all(width % 8 == 0 for width in uniform.values())
    assert len({uniform[name] for name in INITIAL if name.startswith("stage3")}) == 1


def test_a_step_of_the_current_width_moves_a_starved_width_by_its_own_share():
    # started at 16 and starved to 4: the paper's step is a share of 16, --step current of 4
    widths, initial = (
        {"wide": 40, "starved": 4, "a": 16, "b": 16},
        dict.fromkeys(("wide", "starved", "a", "b"), 16),
    )
    fur = {"starved": 3.0, "a": 2.0, "b": 1.0, "wide": 0.0}
    paper = AdjustRule(k0=1, k_decay=0, rate=0.5, rate_decay=0, min_width=1)
    new, grown, shrunk = adjust(widths, fur, initial, 0, paper)
    assert (grown, shrunk) == (["starved"], ["wide"]) and new["starved"] == 12 and new["wide"] == 32
    current = AdjustRule(k0=1, k_decay=0, rate=0.5, rate_decay=0, min_width=1, step="current")
    new, _, _ = adjust(widths, fur, initial, 0, current)
    assert new["starved"] == 6 and new["wide"] == 20
    # the lesser of the two: the starved width by a share of 4, the wide one by a share of 16
    lesser = AdjustRule(k0=1, k_decay=0, rate=0.5, rate_decay=0, min_width=1, step="lesser")
    new, _, _ = adjust(widths, fur, initial, 0, lesser)
    assert new["starved"] == 6 and new["wide"] == 32


def test_the_lesser_step_never_cuts_a_width_below_its_own_share():
    # a width at 6 of its initial 16, shrunk with a = 0.5: the paper's step leaves the floor
    # (6 - 8 < 1), the lesser step halves it; grown back, it moves by 3, not 8
    widths, initial = {"thin": 6, "a": 16, "b": 16, "fat": 16}, dict.fromkeys(("thin", "a", "b", "fat"), 16)
    rule = dict(k0=1, k_decay=0, rate=0.5, rate_decay=0, min_width=1)
    shrink = {"fat": 3.0, "a": 2.0, "b": 1.0, "thin": 0.0}
    assert adjust(widths, shrink, initial, 0, AdjustRule(**rule))[0]["thin"] == 1
    assert adjust(widths, shrink, initial, 0, AdjustRule(**rule, step="lesser"))[0]["thin"] == 3
    grow = {"thin": 3.0, "a": 2.0, "b": 1.0, "fat": 0.0}
    assert adjust(widths, grow, initial, 0, AdjustRule(**rule))[0]["thin"] == 14
    assert adjust(widths, grow, initial, 0, AdjustRule(**rule, step="lesser"))[0]["thin"] == 9
