"""The end-of-search verdict: what a search's own measurements say about it."""

from netadjust.outcome import outcome_lines
from netadjust.rundir import IterationRecord


def record(iteration, val, spearman, k=3, overlap=1.0, grown=(), shrunk=()):
    stability = {"spearman": spearman, "grow_overlap": overlap, "shrink_overlap": overlap / 2}
    widths = {name: 8 for name in "abcdefghijkl"}  # 12 widths
    return IterationRecord(
        iteration=iteration, val={"top1": val}, k=k, fur_stability=stability, widths=widths, macs=0,
        params=0, train={}, test={}, fur={}, fur_method="fast", grown=list(grown), shrunk=list(shrunk),
        next_widths={}, next_macs=0, seconds={},
    )  # fmt: skip


def test_a_stable_search_reports_its_accuracy_and_no_warning():
    lines = outcome_lines([record(0, 0.90, 0.95), record(1, 0.915, 0.9), record(2, 0.91, 0.85)], "runs/x")
    text = "\n".join(lines)
    assert "original widths 90.00%, iteration 3's 91.00% (+1.00 points), best 91.50% at iteration 2" in text
    assert "netadjust compare runs/x --seeds 5" in text
    assert "about 2.5 hours here" in "\n".join(outcome_lines([record(0, 0.9, 0.9)], "r", 9000))
    assert "about 3 minutes here" in "\n".join(outcome_lines([record(0, 0.9, 0.9)], "r", 180))
    assert "Spearman 0.90 on average (lowest 0.85)" in text and "agreed 100% and 50%" in text
    assert "warning" not in text
    inherited = "\n".join(outcome_lines([record(0, 0.90, 0.95), record(1, 0.88, 0.9)], "r", inherited=True))
    assert "original widths 90.00% after a whole training" in inherited and "88.00%" in inherited
    assert "points" not in inherited  # no difference drawn between a training and a fine-tuning


def test_a_noisy_ranking_is_called_noise_with_what_to_change():
    lines = outcome_lines([record(0, 0.81, 0.36), record(1, 0.80, 0.68), record(2, 0.80, 0.47)], "r")
    warning = [line for line in lines if line.startswith("warning")]
    assert len(warning) == 1 and "mostly noise" in warning[0]
    assert "--repeats" in warning[0] and "--val-limit" in warning[0] and "--epochs" in warning[0]
    partly = outcome_lines([record(0, 0.8, 0.7)], "r")
    assert any("partly noise" in line for line in partly)


def test_one_iteration_without_moves_says_only_what_it_measured():
    lines = outcome_lines([record(0, 0.8, 0.9, k=0)], "r")
    assert not any("iteration 1's" in line for line in lines)
    assert not any("grown and shrunk" in line for line in lines)


def test_a_search_that_undoes_its_moves_is_told_its_steps_overshoot():
    # each iteration shrinks what the last one grew and grows what it shrank: 8 of 8 moves undone,
    # where random rankings of 12 widths would undo 8 * 2/12 = 1.3
    swinging = [
        record(0, 0.9, 0.95, k=2, grown="ab", shrunk="cd"),
        record(1, 0.9, 0.95, k=2, grown="cd", shrunk="ab"),
        record(2, 0.9, 0.95, k=2, grown="ab", shrunk="cd"),
    ]
    lines = outcome_lines(swinging, "r")
    assert "undid 8 of the search's 8 moves (random rankings would undo about 1)" in "\n".join(lines)
    warning = [line for line in lines if "overshoot" in line]
    assert len(warning) == 1 and "smaller --adjust-rate" in warning[0] and "--step lesser" in warning[0]


def test_a_search_that_keeps_its_direction_gets_no_overshoot_warning():
    # the starved-start pattern: the same widths grow again, none is moved back
    steady = [
        record(0, 0.9, 0.95, k=2, grown="ab", shrunk="cd"),
        record(1, 0.9, 0.95, k=2, grown="ab", shrunk="ef"),
        record(2, 0.9, 0.95, k=2, grown="ab", shrunk="cg"),
    ]
    text = "\n".join(outcome_lines(steady, "r"))
    assert "undid 0 of the search's 8 moves" in text and "overshoot" not in text
