import pytest
import torch

from netadjust.channel_drop import ChannelDrop
from netadjust.cost import sensitivities
from netadjust.data import DATASETS, ImageSet, Normalize
from netadjust.fur import drop_rates, estimate_fur, mean_loss
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
    estimate = estimate_fur(model, val, INFO, f, base_rate=0.1, repeats=3, seed=7, batch_size=20)

    # the same quantity, by hand, drawing the same masks in the same order
    normalize = Normalize(INFO, torch.device("cpu"))
    generator = torch.Generator().manual_seed(7)
    with ChannelDrop(model, model.drop_sites, generator) as drop:
        clean = mean_loss(model, val, normalize, 20)
        for name in model.drop_sites:
            drop.set_rates({name: estimate.drop_rates[name]})
            rise = sum(mean_loss(model, val, normalize, 20) for _ in range(3)) / 3 - clean
            removed = estimate.drop_rates[name] * f[name]
            assert estimate.loss_increase[name] == pytest.approx(rise, rel=1e-6, abs=1e-9)
            assert estimate.fur[name] == pytest.approx(rise / removed, rel=1e-6, abs=1e-15)
    assert estimate.clean_loss == pytest.approx(clean)
    assert list(estimate.fur) == list(base_widths(SPEC))


def test_fur_leaves_the_model_untouched_and_is_seeded():
    torch.manual_seed(0)
    model = build(SPEC).eval()
    val = validation_set(32)
    f = sensitivities(SPEC, base_widths(SPEC))
    before = model(Normalize(INFO, torch.device("cpu"))(val.images))
    one = estimate_fur(model, val, INFO, f, base_rate=0.05, repeats=2, seed=1)
    two = estimate_fur(model, val, INFO, f, base_rate=0.05, repeats=2, seed=1)
    three = estimate_fur(model, val, INFO, f, base_rate=0.05, repeats=2, seed=2)
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
    estimate = estimate_fur(model, val, info, f, base_rate=0.2, repeats=2, seed=0)
    rises = list(estimate.loss_increase.values())
    assert sum(rises) > 0
    assert sum(rise > 0 for rise in rises) > len(rises) // 2
