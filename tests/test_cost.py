import pytest
import torch
from torch import nn

from netadjust.cost import count, model_cost, sensitivities
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
