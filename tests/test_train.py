import copy
import math

import pytest
import torch

from netadjust import train as train_module
from netadjust.data import load
from netadjust.errors import UserError
from netadjust.spaces import ModelSpec, build
from netadjust.train import NonFiniteLoss, Recipe, autocast_dtype, evaluate, fit, lr_at

SPEC = ModelSpec("resnet20", 10, 1, 28, 0.5)


def test_cosine_schedule_with_warmup():
    recipe = Recipe(lr=0.1, lr_min=0.001)
    assert lr_at(0, 100, 10, recipe) == pytest.approx(0.01)
    assert lr_at(9, 100, 10, recipe) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, recipe) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, recipe) == pytest.approx(0.001 + 0.099 * 0.5)
    assert lr_at(100, 100, 10, recipe) == pytest.approx(0.001)
    values = [lr_at(step, 100, 0, recipe) for step in range(100)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))


def test_precision_choices():
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UserError, match="CUDA"):
        autocast_dtype("fp16", torch.device("cpu"))
    with pytest.raises(UserError, match="--precision"):
        Recipe(precision="fp8").validate()


def test_auto_precision_trains_depthwise_convolutions_in_fp32_on_a_cpu(fashion_dir, monkeypatch):
    """bf16 backward of strided or 1-2 pixel depthwise convolutions is 5-40x slower than fp32
    on a CPU (bench/precision_speed.py): ``auto`` trains such a network in fp32, others and
    an explicit ``bf16`` as before; evaluation (no network to train) keeps bf16."""
    monkeypatch.setattr(train_module, "cpu_has_fast_bf16", lambda: True)  # any CPU
    cpu = torch.device("cpu")
    depthwise = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=8))
    grouped = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=2))
    assert autocast_dtype("auto", cpu, trained=depthwise) is None
    assert autocast_dtype("auto", cpu, trained=grouped) == torch.bfloat16
    assert autocast_dtype("auto", cpu) == torch.bfloat16
    assert autocast_dtype("bf16", cpu, trained=depthwise) == torch.bfloat16

    train, _, info = load("fashion-mnist", fashion_dir)
    seen = {}
    for space in ("resnet20", "mobilenetv2-small"):
        model = build(ModelSpec(space, info.num_classes, info.in_channels, info.image_size, 0.25))
        last = [layer for layer in model.modules() if isinstance(layer, torch.nn.Conv2d)][-1]
        last.register_forward_hook(
            lambda _layer, _inputs, output, space=space: seen.update({space: output.dtype})
        )
        fit(model, train.subset(slice(0, 128)), info, Recipe(epochs=1, lr=0.05), seed=0)
    assert seen == {"resnet20": torch.bfloat16, "mobilenetv2-small": torch.float32}


def test_bf16_channels_last_training_reaches_fp32_accuracy(fashion_dir):
    """The defaults (bf16 autocast where the CPU has it, channels-last) keep accuracy:
    a short run lands within noise of plain fp32 from the same initial weights."""
    train, test, info = load("fashion-mnist", fashion_dir)
    train, test = train.subset(slice(0, 4000)), test.subset(slice(0, 2000))
    results = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = build(SPEC)
        log = fit(
            model,
            train,
            info,
            Recipe(epochs=2, lr=0.1, precision=precision, channels_last=channels_last),
            seed=0,
        )
        assert all(math.isfinite(epoch["loss"]) for epoch in log["epochs"])
        assert next(model.parameters()).is_contiguous()  # handed back in the default format
        results[precision] = evaluate(model, test, info)["top1"]
    assert results["fp32"] > 0.5 and results["bf16"] > 0.5  # chance is 0.1
    # 2,000 test images: one standard error is about 0.01; seeds move it by about 0.01
    assert abs(results["bf16"] - results["fp32"]) < 0.04, results


def test_training_is_reproducible(fashion_dir):
    train, _, info = load("fashion-mnist", fashion_dir)
    logs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build(SPEC)
        logs.append(
            fit(model, train.subset(slice(0, 600)), info, Recipe(epochs=1, lr=0.05), seed=3)["epochs"]
        )
    assert logs[0] == logs[1]


def test_a_nan_loss_stops_training_after_the_last_good_checkpoint(fashion_dir):
    train, _, info = load("fashion-mnist", fashion_dir)
    torch.manual_seed(0)
    model = build(SPEC)
    calls = []

    def poison(module, inputs, output):  # from the 8th batch on (epoch 2), logits are NaN
        calls.append(1)
        return output * float("nan") if len(calls) >= 8 else None

    model.head.register_forward_hook(poison)
    saved = []
    with pytest.raises(NonFiniteLoss, match="epoch 2.*lower --lr"):
        fit(
            model,
            train.subset(slice(0, 500)),
            info,
            Recipe(epochs=3, batch_size=100),
            seed=0,
            checkpoint=lambda state: saved.append(copy.deepcopy(state)),
        )
    assert len(saved) == 1 and len(saved[0]["history"]) == 1  # epoch 1 kept, nothing after
    assert all(torch.isfinite(t).all() for t in saved[0]["model"].values() if t.is_floating_point())


def test_resuming_from_a_checkpoint_equals_training_straight_through(fashion_dir):
    train, _, info = load("fashion-mnist", fashion_dir)
    train = train.subset(slice(0, 400))
    recipe = Recipe(epochs=3, batch_size=100, lr=0.05)
    torch.manual_seed(1)
    whole = build(SPEC)
    saved = []
    caller_stream = torch.get_rng_state()
    straight = fit(
        whole, train, info, recipe, seed=1, checkpoint=lambda state: saved.append(copy.deepcopy(state))
    )
    assert torch.equal(torch.get_rng_state(), caller_stream)  # the masks' seeding is put back
    assert [len(state["history"]) for state in saved] == [1, 2, 3]
    torch.manual_seed(99)  # other initial weights: the checkpoint must replace them all
    resumed_model = build(SPEC)
    resumed = fit(resumed_model, train, info, recipe, seed=1, resume_from=saved[0])
    assert resumed["epochs"] == straight["epochs"]
    for a, b in zip(whole.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_regulariser_ramps_from_zero_or_holds_the_rate_a_fine_tune_continues_at(fashion_dir):
    # the last block's inner width, read where the next convolution takes it: with the ramp,
    # epoch 1 of 1 drops nothing (rate 0); at progress 0.75 of rate 0.5 (its depth's share
    # (L - 1) / L) that share of each image's channels is zero
    train, _, info = load("fashion-mnist", fashion_dir)
    shares = {}
    for progress in (None, 0.75):
        torch.manual_seed(0)
        model = build(SPEC)
        assert list(model.drop_sites)[-2] == "stage3.block2.conv1"
        dropped = []

        def seen(module, inputs, dropped=dropped):
            if module.training:
                dropped.append((inputs[0].abs().sum((2, 3)) == 0).float().mean().item())

        model.get_submodule("stage3.block2.conv2").register_forward_pre_hook(seen)
        recipe = Recipe(epochs=1, batch_size=100, drop_rate=0.5)
        fit(model, train.subset(slice(0, 300)), info, recipe, seed=0, drop_progress=progress)
        shares[progress] = sum(dropped) / len(dropped)
    widths = len(build(SPEC).drop_sites)
    assert shares[None] < 0.05, shares
    assert shares[0.75] == pytest.approx(0.5 * 0.75 * (widths - 1) / widths, abs=0.1), shares
