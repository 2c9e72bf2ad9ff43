import random

import pytest
import torch
from torch import nn

from netadjust.cost import count, measure, model_cost, sensitivities
from netadjust.spaces import ModelSpec, base_widths, build

CIFAR100 = dict(num_classes=100, in_channels=3, image_size=32)
STEM_MACS = 3 * 16 * 9 * 32 * 32  # the 3->16 stem conv the paper's table leaves out


def test_resnet20_cifar100_reference_figure():
    assert model_cost(ModelSpec("resnet20", **CIFAR100)).macs == 40_556_800
    assert model_cost(ModelSpec("resnet20", **CIFAR100)).macs - STEM_MACS == 40_114_432


@pytest.mark.parametrize("space, paper_millions", [("resnet32", 68.4), ("resnet56", 125.0)])
def test_deeper_resnets_match_the_paper_convention(space, paper_millions):
    macs = model_cost(ModelSpec(space, **CIFAR100)).macs - STEM_MACS
    assert round(macs / 1e6, 1) == paper_millions


def test_params_equal_the_built_model():
    spec = ModelSpec("resnet20", **CIFAR100)
    model = build(spec)
    assert model_cost(spec).params == sum(p.numel() for p in model.parameters())


def test_count_of_a_tiny_network_has_a_closed_form():
    # conv 3->5 (3x3, stride 1, pad 1) on 8x8, then global pool and linear 5->7
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 7),
    )
    cost = count(model, (3, 8, 8))
    assert cost.macs == 3 * 5 * 9 * 64 + 5 * 7
    assert cost.params == (3 * 5 * 9 + 5) + (5 * 7 + 7)


def test_sensitivities_of_a_plain_net_are_the_macs_of_the_two_layers_touching_each_width():
    # In a plain chain, F is linear in each width: c_i * dF/dc_i = MACs of the conv producing
    # width i plus MACs of the layer consuming it.
    spec = ModelSpec("plain20", num_classes=10, in_channels=1, image_size=28, width_mult=0.5)
    widths = {name: 3 + i % 4 for i, name in enumerate(base_widths(spec))}
    names = list(widths)
    sizes = {1: 28, 2: 14, 3: 7}

    def conv_macs(c_in, c_out, size):
        return c_in * c_out * 9 * size * size

    stem = 8  # 16 * 0.5
    layer_macs = []
    previous = stem
    for name in names:
        stage = int(name[5])
        layer_macs.append(conv_macs(previous, widths[name], sizes[stage]))
        previous = widths[name]
    fc = previous * 10
    expected = {}
    for i, name in enumerate(names):
        consumer = layer_macs[i + 1] if i + 1 < len(names) else fc
        expected[name] = layer_macs[i] + consumer
    assert sensitivities(spec, widths) == pytest.approx(expected, rel=0, abs=0)
    assert model_cost(spec, widths).macs == stem * 9 * 28 * 28 + sum(layer_macs) + fc


def test_sensitivity_at_width_one_uses_the_one_sided_difference():
    spec = ModelSpec("plain20", num_classes=10, in_channels=1, image_size=28)
    widths = {**base_widths(spec), "stage2.block1.conv1": 1}
    f = sensitivities(spec, widths)
    # producer 32 -> 1 on 14x14, consumer 1 -> 32 on 14x14
    assert f["stage2.block1.conv1"] == 2 * 32 * 9 * 14 * 14


def test_count_runs_on_the_meta_device_without_memory():
    spec = ModelSpec("resnet110", num_classes=1000, in_channels=3, image_size=224, width_mult=4)
    cost = model_cost(spec)
    assert cost.macs > 0 and cost.params > 0
    with torch.device("meta"):
        assert next(build(spec).parameters()).is_meta


def test_sensitivities_in_macs_are_equal_across_stages_and_in_params_are_not():
    spec = ModelSpec(width_mult=0.25, in_channels=1, image_size=28)
    widths = base_widths(spec)
    macs, params = (sensitivities(spec, widths, measure) for measure in ("macs", "params"))
    assert macs["stage3.block1.conv1"] == macs["stage1.block1.conv1"]  # ResNet: equal MACs per stage
    # a 3x3 conv of c_in -> c (+ BN) and the next conv reading c: f = c * (9 c_in + 2 + 9 c_next)
    c1, c3 = widths["stage1.block1.conv1"], widths["stage3.block1.conv1"]
    assert params["stage1.block1.conv1"] == c1 * (9 * c1 + 2 + 9 * c1)
    assert params["stage3.block1.conv1"] == c3 * (9 * c3 + 2 + 9 * c3)


# f_i of ResNet-20 for CIFAR-100 at its base widths, as the reference (danczs/NetworkAdjustment,
# model/channel_config.py) computes them: c_i times the sympy derivative of its FLOPs expression
REFERENCE_RESNET20_CIFAR100 = [
    4718592, 2359296, 4718592, 2359296, 4718592, 2359296,
    3538944, 8257536, 4718592, 2359296, 4718592, 2359296,
    3538944, 7084288, 4718592, 2359296, 4718592, 2359296,
]  # fmt: skip


def test_resnet20_cifar100_sensitivities_are_the_references():
    spec = ModelSpec("resnet20", **CIFAR100)
    assert list(sensitivities(spec, base_widths(spec)).values()) == REFERENCE_RESNET20_CIFAR100


def reference_expression(widths, padding, stem, size, classes, imagenet):
    """The reference's FLOPs expression restated (model/resnet_cifar_config.py and
    resnet_imagenet_config.py): returns F and c_i * dF/dc_i for conv widths c_0..c_{L-1}.

    Each conv costs c_i * (its input) * k^2 * area. A block's first conv reads the residual
    stream, a symbol: the stem's constant at first, then a block output's width when it is
    wider than the stream ("max": strictly on CIFAR, or tying on ImageNet; where an ImageNet
    stage begins, its projection makes the block output the stream), always in "local" mode.
    """
    n = len(widths)
    if imagenet:
        reductions = {4, 8, 12}  # ResNet-18: the first conv of stages 2-4
        area = (size // 4) ** 2  # after the stride-2 7x7 stem and the stride-2 max-pool
        total = 3 * stem * 49 * (size // 2) ** 2
    else:
        reductions = {n // 3, 2 * n // 3}
        area = size * size
        total = 3 * stem * 9 * size * size
    derivative = [0] * n
    owner, stream = None, stem  # the stream's symbol (None: a constant) and its value
    side = size if not imagenet else size // 4
    for i, c in enumerate(widths):
        if i in reductions:
            side = (side + 1) // 2
            area = side * side
        source, value = (owner, stream) if i % 2 == 0 else (i - 1, widths[i - 1])
        total += c * value * 9 * area
        derivative[i] += value * 9 * area
        if source is not None:
            derivative[source] += c * 9 * area
        if imagenet and i in reductions:  # the 1x1 projection from the stream to c_{i+1}
            total += stream * widths[i + 1] * area
            derivative[i + 1] += stream * area
            if owner is not None:
                derivative[owner] += widths[i + 1] * area
        if i % 2 == 1:
            starts_stage = imagenet and i - 1 in reductions
            takes = c >= stream if imagenet else c > stream
            if padding == "local" or starts_stage or takes:
                owner, stream = i, (c if padding == "local" or starts_stage else max(c, stream))
    total += stream * classes
    if owner is not None:
        derivative[owner] += classes
    return total, [c * d for c, d in zip(widths, derivative, strict=True)]


def test_the_restated_expression_gives_the_references_figures():
    widths = list(base_widths(ModelSpec("resnet20", **CIFAR100)).values())
    total, f = reference_expression(widths, "max", 16, 32, 100, imagenet=False)
    assert (total, f) == (40_556_800, REFERENCE_RESNET20_CIFAR100)


@pytest.mark.parametrize("padding", ["max", "local"])
@pytest.mark.parametrize("seed", range(4))
def test_sensitivities_follow_the_reference_where_widths_cross_and_tie_the_stream(padding, seed):
    # widths from a small set: outputs tie the stream, exceed it and fall below it
    spec = ModelSpec("resnet20", padding=padding, **CIFAR100)
    rng = random.Random(seed)
    widths = {name: rng.choice((12, 16, 20, 24)) for name in base_widths(spec)}
    total, expected = reference_expression(list(widths.values()), padding, 16, 32, 100, imagenet=False)
    assert model_cost(spec, widths).macs == total
    assert list(sensitivities(spec, widths).values()) == expected


@pytest.mark.parametrize("padding", ["max", "local"])
@pytest.mark.parametrize("seed", [None, 0, 1])
def test_resnet18_imagenet_sensitivities_follow_the_references_tie_rule(padding, seed):
    spec = ModelSpec("resnet18", padding=padding, num_classes=1000, in_channels=3, image_size=224)
    widths = base_widths(spec)
    if seed is not None:
        rng = random.Random(seed)
        widths = {name: rng.choice((48, 64, 96, 128)) for name in widths}
    total, expected = reference_expression(list(widths.values()), padding, 64, 224, 1000, imagenet=True)
    assert model_cost(spec, widths).macs == total
    assert list(sensitivities(spec, widths).values()) == expected


@pytest.mark.parametrize("space", ["resnet20", "plain20", "pyramidnet20", "resnet18-small"])
@pytest.mark.parametrize("budget", ["macs", "params"])
def test_away_from_ties_sensitivities_equal_the_derivative_of_the_traced_count(space, budget):
    # distinct widths: F has no kink, so the central difference is the exact derivative
    spec = ModelSpec(space, num_classes=10, in_channels=3, image_size=32, width_mult=0.5)
    names = list(base_widths(spec))
    widths = dict(zip(names, random.Random(space).sample(range(5, 120), len(names)), strict=True))

    def derivative(name, c):
        return (
            measure(spec, {**widths, name: c + 1}, budget) - measure(spec, {**widths, name: c - 1}, budget)
        ) / 2

    assert sensitivities(spec, widths, budget) == {
        name: c * derivative(name, c) for name, c in widths.items()
    }


def test_densenet_sensitivities_are_the_exact_derivative_of_a_quadratic_cost():
    # a transition maps the whole concatenation to as many channels: F is quadratic in each growth
    spec = ModelSpec("densenet40", num_classes=10, in_channels=3, image_size=32)
    widths = base_widths(spec)
    name = "block2.layer3"
    cost = [measure(spec, {**widths, name: c}, "macs") for c in (1, 2, 3, 4)]
    assert cost[3] - 3 * cost[2] + 3 * cost[1] - cost[0] == 0  # third difference: quadratic
    a = (cost[2] - 2 * cost[1] + cost[0]) / 2
    b = cost[1] - cost[0] - 3 * a  # F(c) = a c^2 + b c + const
    for c in (1, 12):
        f = sensitivities(spec, {**widths, name: c})[name]
        assert f == c * (2 * a * c + b)
