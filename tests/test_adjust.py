import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netadjust.adjust import AdjustRule, adjust, layers_to_move, rescale
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
    assert [layers_to_move(rule, i) for i in range(8)] == [3, 3, 2, 2, 1, 1, 0, 0]


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
        widths, {"a": 1.0, "b": 0.0}, {"a": 50, "b": 50}, 0, AdjustRule(k0=1, rate=0.5, min_width=3)
    )
    assert new == {"a": 30, "b": 3}


def test_k_larger_than_half_the_widths_is_refused():
    with pytest.raises(UserError, match="--k"):
        AdjustRule(k0=10).validate(18)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_rescale_returns_within_one_percent_of_the_budget(data):
    fur = {name: data.draw(st.floats(-1, 1)) for name in INITIAL}
    rule = AdjustRule(k0=data.draw(st.integers(0, 9)), rate=data.draw(st.floats(0, 0.9)), min_width=2)
    adjusted, _, _ = adjust(INITIAL, fur, INITIAL, 0, rule)
    result = rescale(adjusted, macs, BUDGET, rule.min_width)
    assert abs(macs(result) - BUDGET) <= 0.01 * BUDGET
    assert min(result.values()) >= rule.min_width
    assert list(result) == list(INITIAL)


def test_k_zero_changes_nothing_but_the_rescale():
    fur = {name: float(i) for i, name in enumerate(INITIAL)}
    adjusted, grown, shrunk = adjust(INITIAL, fur, INITIAL, 10, AdjustRule(k0=3, k_decay=0.5))
    assert adjusted == INITIAL and grown == shrunk == []
    assert rescale(adjusted, macs, BUDGET, 2) == INITIAL
    doubled = {name: 2 * w for name, w in INITIAL.items()}
    assert rescale(doubled, macs, BUDGET, 2) == INITIAL  # uniform scale back by exactly 1/2


def test_unreachable_budget_is_refused():
    with pytest.raises(UserError, match="min-width"):
        rescale(INITIAL, macs, BUDGET // 100, min_width=8)
