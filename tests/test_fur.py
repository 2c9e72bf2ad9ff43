import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from netadjust.channel_drop import ChannelDrop
from netadjust.config import FurConfig
from netadjust.cost import sensitivities
from netadjust.data import DATASETS, ImageSet, Normalize
from netadjust.fur import default_batch_size, drop_rates, estimate_fur
from netadjust.spaces import ModelSpec, base_widths, build

INFO = DATASETS["fashion-mnist"]
SPEC = ModelSpec("resnet20", in_channels=1, image_size=28, width_mult=0.25)


def test_drop_rates_remove_equal_expected_macs_and_are_clipped():
    f = {"a": 100.0, "b": 400.0, "c": 1.0}
    rates, clipped = drop_rates(f, base_rate=0.05, max_rate=0.9)
    mean = sum(f.values()) / 3
    assert rates["a"] * f["a"] == pytest.approx(0.05 * mean)
    assert rates["b"] * f["b"] == pytest.approx(0.05 * mean)
    assert rates["c"] == 0.9 and clipped == ["c"]


def validation_set(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.randint(0, 10, (n,), generator=generator))


def test_fur_is_the_mean_loss_rise_per_removed_mac():
    torch.manual_seed(0)
    model = build(SPEC).eval()
    val = validation_set()
    f = sensitivities(SPEC, base_widths(SPEC))
    estimate = estimate_fur(
        model,
        val,
        INFO,
        f,
        FurConfig(base_rate=0.1, repeats=3, method="reference", control_variate=False),
        seed=7,
        batch_size=20,
    )
    assert estimate.method == "reference"

    # the same quantity, by hand: each repeat's masks keyed by (repeat, sample index)
    normalize = Normalize(INFO, torch.device("cpu"))
    images = normalize(val.images)
    with torch.no_grad(), ChannelDrop(model, model.drop_sites, seed=7) as drop:
        clean = F.cross_entropy(model(images), val.labels).item()
        for name in model.drop_sites:
            drop.set_rates({name: estimate.drop_rates[name]})
            losses = []
            for repeat in range(3):
                drop.use_keys(torch.full((len(val),), repeat), torch.arange(len(val)))
                losses.append(F.cross_entropy(model(images), val.labels).item())
            rise = sum(losses) / 3 - clean
            removed = estimate.drop_rates[name] * f[name]
            assert estimate.loss_increase[name] == pytest.approx(rise, rel=1e-4, abs=1e-6)
            assert estimate.fur[name] == pytest.approx(rise / removed, rel=1e-4, abs=1e-6 / removed)
    assert estimate.clean_loss == pytest.approx(clean, rel=1e-6)
    assert list(estimate.fur) == list(base_widths(SPEC))


@pytest.mark.parametrize(
    "space, padding, width_mult, exact, images",
    [
        ("resnet20", "max", 0.5, True, 180),  # two batches: the sums over batches too
        ("resnet20", "local", 0.5, True, 90),
        ("plain20", "max", 0.5, True, 90),
        # this one barely learns in one short epoch: its loss rises are ~1e-5 of the loss, and
        # the fast path's clean convs run on a third of the batch, where oneDNN rounds
        # differently; so compare the loss rises to float32 precision of the loss instead
        ("resnet18-small", "max", 0.125, False, 180),
        ("densenet40", "max", 0.25, False, 30),  # 36 widths, each read by all later layers: costly
        ("pyramidnet20", "local", 0.5, True, 90),
        ("mobilenetv2-small", "max", 0.25, False, 45),  # tied stage widths restart at their first block
    ],
)
def test_fast_path_equals_the_reference_path(space, padding, width_mult, exact, images, fashion_dir):
    from netadjust.data import load
    from netadjust.train import Recipe, fit

    spec = ModelSpec(space, in_channels=1, image_size=28, width_mult=width_mult, padding=padding)
    train, test, info = load("fashion-mnist", fashion_dir)
    torch.manual_seed(0)
    widths = {name: w + i % 3 for i, (name, w) in enumerate(base_widths(spec).items())}  # uneven widths
    model = build(spec, widths)
    fit(model, train.subset(slice(0, 500)), info, Recipe(epochs=1, lr=0.05), seed=0)
    f = {name: 1000.0 * (1 + i % 5) for i, name in enumerate(widths)}  # any positive f: rates vary
    val = test.subset(slice(0, images))
    # three repeats where the two paths must agree exactly (the fast path then stacks them
    # as three chunks of 30 images); one where float32 rounding sets the tolerance anyway
    config = FurConfig(base_rate=0.05, repeats=3 if exact else 1, control_variate=False)
    fast = estimate_fur(model, val, info, f, replace(config, method="fast"), seed=11, batch_size=90)
    reference = estimate_fur(model, val, info, f, replace(config, method="reference"), seed=11, batch_size=90)
    assert fast.method == "fast" and reference.method == "reference"
    assert fast.clean_loss == pytest.approx(reference.clean_loss, rel=1e-6)
    for name in widths:
        if exact:
            assert fast.fur[name] == pytest.approx(reference.fur[name], rel=1e-5, abs=0), name
        else:
            rise, rise_ref = fast.loss_increase[name], reference.loss_increase[name]
            assert rise == pytest.approx(rise_ref, abs=1e-7 * reference.clean_loss), name


def test_with_the_control_variate_the_fast_path_still_equals_the_reference_path():
    # the first-order term is computed from the same keyed masks the drop hooks draw
    spec = ModelSpec("resnet20", in_channels=1, image_size=28, width_mult=0.25)
    torch.manual_seed(0)
    model = build(spec).eval()
    val = validation_set(90)
    f = {name: 1000.0 * (1 + i % 5) for i, name in enumerate(base_widths(spec))}
    config, common = FurConfig(base_rate=0.05, repeats=3, control_variate=True), dict(seed=11, batch_size=90)
    fast = estimate_fur(model, val, INFO, f, replace(config, method="fast"), **common)
    reference = estimate_fur(model, val, INFO, f, replace(config, method="reference"), **common)
    plain = estimate_fur(
        model, val, INFO, f, replace(config, method="reference", control_variate=False), **common
    )
    for name in f:
        assert fast.loss_increase[name] == pytest.approx(reference.loss_increase[name], rel=1e-4, abs=1e-7)
    assert any(abs(plain.loss_increase[n] - reference.loss_increase[n]) > 1e-5 for n in f)  # it acts


def test_models_without_a_chain_take_the_reference_path():
    from torch import nn

    class Flat(nn.Module):  # a user's model: no chain()
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 10)
            self.drop_sites = {"conv": "bn"}

        def forward(self, x):
            return self.fc(self.bn(self.conv(x)).mean((2, 3)))

    estimate = estimate_fur(
        Flat().eval(),
        validation_set(16),
        INFO,
        {"conv": 100.0},
        FurConfig(base_rate=0.2, repeats=2, control_variate=False),
        seed=0,
    )
    assert estimate.method == "reference" and set(estimate.fur) == {"conv"}


def test_keyed_masks_depend_on_the_keys_only():
    from netadjust.channel_drop import keyed_uniform

    repeats, samples = torch.tensor([0, 0, 1, 1]), torch.tensor([5, 6, 5, 6])
    u = keyed_uniform(3, 2, repeats, samples, 8)
    assert u.shape == (4, 8) and u.min() >= 0 and u.max() < 1
    again = keyed_uniform(3, 2, torch.tensor([1, 0]), torch.tensor([6, 5]), 8)
    assert torch.equal(again, u[[3, 0]])  # same (repeat, sample) -> same row, wherever it sits
    assert not torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert not torch.equal(keyed_uniform(4, 2, repeats, samples, 8), u)
    big = keyed_uniform(0, 0, torch.zeros(20000, dtype=torch.long), torch.arange(20000), 16)
    assert abs(big.mean().item() - 0.5) < 0.005 and abs((big < 0.1).float().mean().item() - 0.1) < 0.005


def test_fur_leaves_the_model_untouched_and_is_seeded():
    torch.manual_seed(0)
    model = build(SPEC).eval()
    val = validation_set(32)
    f = sensitivities(SPEC, base_widths(SPEC))
    before = model(Normalize(INFO, torch.device("cpu"))(val.images))
    one = estimate_fur(
        model, val, INFO, f, FurConfig(base_rate=0.05, repeats=2, control_variate=False), seed=1
    )
    two = estimate_fur(
        model, val, INFO, f, FurConfig(base_rate=0.05, repeats=2, control_variate=False), seed=1
    )
    three = estimate_fur(
        model, val, INFO, f, FurConfig(base_rate=0.05, repeats=2, control_variate=False), seed=2
    )
    assert one.fur == two.fur and one.fur != three.fur
    after = model(Normalize(INFO, torch.device("cpu"))(val.images))
    assert torch.equal(before, after)
    assert not model.training


def test_dropping_channels_of_a_trained_network_raises_the_loss(fashion_dir):
    from netadjust.data import load
    from netadjust.train import Recipe, evaluate, fit

    train, test, info = load("fashion-mnist", fashion_dir)
    torch.manual_seed(0)
    model = build(SPEC)
    fit(model, train.subset(slice(0, 3000)), info, Recipe(epochs=2, lr=0.1, drop_rate=0.0), seed=0)
    val = test.subset(slice(0, 500))
    assert evaluate(model, val, info)["top1"] > 0.5  # it learned something (chance: 0.1)
    f = sensitivities(SPEC, base_widths(SPEC))
    estimate = estimate_fur(
        model, val, info, f, FurConfig(base_rate=0.2, repeats=2, control_variate=False), seed=0
    )
    rises = list(estimate.loss_increase.values())
    assert sum(rises) > 0
    assert sum(rise > 0 for rise in rises) > len(rises) // 2


def test_halves_split_the_estimate_and_stability_compares_them():
    from netadjust.fur import FurEstimate, spearman, stability

    torch.manual_seed(0)
    model = build(SPEC).eval()
    val = validation_set(31)  # odd size: 16 even-indexed, 15 odd-indexed samples
    f = sensitivities(SPEC, base_widths(SPEC))
    estimate = estimate_fur(
        model, val, INFO, f, FurConfig(base_rate=0.1, repeats=2, control_variate=False), seed=0, batch_size=10
    )
    even, odd = estimate.halves
    for name in estimate.fur:
        assert estimate.fur[name] == pytest.approx(
            (16 * even[name] + 15 * odd[name]) / 31, rel=1e-9, abs=1e-18
        )

    same = FurEstimate({}, [], {}, {}, 0.0, "fast", 0.0, ({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},) * 2)
    assert stability(same, 1) == {
        "split": "even vs odd validation samples",
        "spearman": pytest.approx(1.0),
        "k": 1,
        "grow_overlap": 1.0,
        "shrink_overlap": 1.0,
    }
    flipped = FurEstimate(
        {},
        [],
        {},
        {},
        0.0,
        "fast",
        0.0,
        ({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}),
    )
    result = stability(flipped, 2)
    assert result["spearman"] == pytest.approx(-1.0)
    assert result["grow_overlap"] == 0.0 and result["shrink_overlap"] == 0.0
    assert stability(flipped, 0)["grow_overlap"] is None
    assert spearman([1, 5, 2], [10, 30, 20]) == pytest.approx(1.0)


def test_the_progress_bar_yields_every_item_once_and_starts_after_the_first(monkeypatch, capsys):
    from netadjust.fur import _progress

    assert list(_progress([], "x", "item")) == []
    assert list(_progress((i for i in range(4)), "x", "item", total=4)) == [0, 1, 2, 3]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    items = _progress(["a", "b", "c"], "FUR", "width")
    assert next(items) == "a"
    assert capsys.readouterr().err == ""  # no bar, so no rate, while the first item runs
    assert list(items) == ["b", "c"]
    assert "1/3" in capsys.readouterr().err  # then it starts, counting the first as done


def test_fur_batches_are_small_on_the_cpu_and_hold_a_fixed_pixel_count_on_cuda():
    assert default_batch_size(torch.device("cpu"), 32) == 128
    assert default_batch_size(torch.device("cuda"), 32) == 4096
    assert default_batch_size(torch.device("cuda:1"), 28) == 4096 * 32 * 32 // 28**2
    assert default_batch_size(torch.device("cuda"), 224) == 128  # ImageNet: never below 128
