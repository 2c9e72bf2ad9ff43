"""Any model: coupled channels found in models written here (torchvision cannot be imported
beside the CPU wheel), checked against the same models built natively at other widths."""

import contextlib
import dataclasses
import json
import random
import shutil
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import in_process, netadjust, write_mnist_like
from netadjust.anymodel import discover
from netadjust.config import BUDGET_TOLERANCE
from netadjust.cost import count, model_cost
from netadjust.errors import UserError
from netadjust.resize import rebuild, width_shares
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.usermodel import checked_plan
from test_cli import assert_user_error, dry_run

pytest.importorskip("torch_pruning")


class Bottleneck(nn.Module):
    """ResNet-50's block: 1x1 reduce, 3x3, 1x1 expand; a projection shortcut where the
    stream's width or stride changes, an identity one otherwise."""

    def __init__(self, inputs, middle, outputs, stride):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(inputs, middle, 1, bias=False), nn.BatchNorm2d(middle), nn.ReLU()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(middle, middle, 3, stride, 1, bias=False), nn.BatchNorm2d(middle), nn.ReLU()
        )
        self.expand = nn.Sequential(nn.Conv2d(middle, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x):
        return F.relu(self.expand(self.spatial(self.reduce(x))) + self.shortcut(x))


class TinyResNet50(nn.Module):
    """Stem 16; two stages of two bottlenecks each: middles m1, m2, m3, m4, streams s1, s2."""

    def __init__(self, num_classes=10, in_channels=3, stem=16, s1=32, s2=64, m=(8, 8, 16, 16)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            Bottleneck(stem, m[0], s1, 1), Bottleneck(s1, m[1], s1, 1),
            Bottleneck(s1, m[2], s2, 2), Bottleneck(s2, m[3], s2, 1),
        )  # fmt: skip
        self.fc = nn.Linear(s2, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.down, self.up = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.up(F.relu(self.down(x.mean((2, 3), keepdim=True)))))


class TinyMobileNetV3(nn.Module):
    """Inverted residuals with hard-swish, depthwise convs and squeeze-excitation."""

    def __init__(self, num_classes=10, in_channels=3, stem=16, expand=48, squeeze=12, out=24):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.Hardswish()
        )
        self.expand = nn.Sequential(
            nn.Conv2d(stem, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.Hardswish()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(expand, expand, 3, 1, 1, groups=expand, bias=False),
            nn.BatchNorm2d(expand),
            nn.Hardswish(),
        )
        self.se = SqueezeExcite(expand, squeeze)
        self.project = nn.Sequential(nn.Conv2d(expand, out, 1, bias=False), nn.BatchNorm2d(out))
        self.head = nn.Linear(out, num_classes)

    def forward(self, x):
        return self.head(self.project(self.se(self.depthwise(self.expand(self.stem(x))))).mean((2, 3)))


class MBConv(nn.Module):
    """EfficientNet-B0's block: expand, depthwise, squeeze-excitation (SiLU, sigmoid gate),
    project; an identity shortcut when shapes allow."""

    def __init__(self, inputs, expand, squeeze, outputs, stride):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(inputs, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.SiLU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(expand, expand, 3, stride, 1, groups=expand, bias=False),
            nn.BatchNorm2d(expand),
            nn.SiLU(),
        )
        self.squeeze, self.excite = nn.Conv2d(expand, squeeze, 1), nn.Conv2d(squeeze, expand, 1)
        self.project = nn.Sequential(nn.Conv2d(expand, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        h = h * torch.sigmoid(self.excite(F.silu(self.squeeze(h.mean((2, 3), keepdim=True)))))
        h = self.project(h)
        return x + h if self.residual else h


class TinyEfficientNet(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, stem=16, e1=48, s1=8, out1=24, e2=72, s2=12):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.SiLU()
        )
        self.blocks = nn.Sequential(MBConv(stem, e1, s1, out1, 2), MBConv(out1, e2, s2, out1, 1))
        self.head = nn.Linear(out1, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TinyVGG(nn.Module):
    """Convolutions, then a flatten of 2x2 maps into a classifier of two linear layers."""

    def __init__(self, num_classes=10, in_channels=3, c1=16, c2=32, hidden=64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * c2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


EXAMPLE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def native_and_discovered(cls, to_group, natives):
    """For seeded random constructor widths: the native model's MACs and discovered widths,
    and the MACs of the base model rebuilt at those widths."""
    plan = checked_plan(cls(), EXAMPLE)
    for seed in range(2):
        rng = random.Random(seed)
        settings = {name: rng.randint(max(1, value // 2), 2 * value) for name, value in natives.items()}
        native = cls(**constructor_arguments(settings))
        widths = to_group(settings)
        assert discover(native, EXAMPLE).widths == widths
        assert count(rebuild(cls(), plan, widths), (3, 16, 16)) == count(native, (3, 16, 16))


def constructor_arguments(settings):
    """Flat settings with m0..m3 gathered into the tuple m."""
    middles = tuple(settings[f"m{i}"] for i in range(4) if f"m{i}" in settings)
    others = {name: value for name, value in settings.items() if not name.startswith("m")}
    return {**others, **({"m": middles} if middles else {})}


def test_bottlenecks_with_projection_shortcuts():
    natives = {"stem": 16, "s1": 32, "s2": 64, "m0": 8, "m1": 8, "m2": 16, "m3": 16}
    plan = checked_plan(TinyResNet50(), EXAMPLE)
    # stem, one width per stage's stream (tied by the additions) and each block's two middles
    assert plan.widths == {
        "stem.0": 16, "blocks.0.reduce.0": 8, "blocks.0.spatial.0": 8, "blocks.0.expand.0": 32,
        "blocks.1.reduce.0": 8, "blocks.1.spatial.0": 8, "blocks.2.reduce.0": 16, "blocks.2.spatial.0": 16,
        "blocks.2.expand.0": 64, "blocks.3.reduce.0": 16, "blocks.3.spatial.0": 16,
    }  # fmt: skip

    def to_group(s):
        return {
            "stem.0": s["stem"], "blocks.0.reduce.0": s["m0"], "blocks.0.spatial.0": s["m0"],
            "blocks.0.expand.0": s["s1"], "blocks.1.reduce.0": s["m1"], "blocks.1.spatial.0": s["m1"],
            "blocks.2.reduce.0": s["m2"], "blocks.2.spatial.0": s["m2"], "blocks.2.expand.0": s["s2"],
            "blocks.3.reduce.0": s["m3"], "blocks.3.spatial.0": s["m3"],
        }  # fmt: skip

    native_and_discovered(TinyResNet50, to_group, natives)


def test_depthwise_convs_and_squeeze_excitation():
    plan = checked_plan(TinyMobileNetV3(), EXAMPLE)
    # the depthwise conv and the gate share the expanded width; the squeeze is its own
    assert plan.widths == {"stem.0": 16, "expand.0": 48, "se.down": 12, "project.0": 24}

    def to_group(s):
        return {"stem.0": s["stem"], "expand.0": s["expand"], "se.down": s["squeeze"], "project.0": s["out"]}

    native_and_discovered(TinyMobileNetV3, to_group, {"stem": 16, "expand": 48, "squeeze": 12, "out": 24})


def test_efficientnet_blocks_tie_the_stream_through_the_identity_shortcut():
    plan = checked_plan(TinyEfficientNet(), EXAMPLE)
    assert plan.widths == {
        "stem.0": 16, "blocks.0.expand.0": 48, "blocks.0.squeeze": 8, "blocks.0.project.0": 24,
        "blocks.1.expand.0": 72, "blocks.1.squeeze": 12,
    }  # fmt: skip

    def to_group(s):
        return {
            "stem.0": s["stem"], "blocks.0.expand.0": s["e1"], "blocks.0.squeeze": s["s1"],
            "blocks.0.project.0": s["out1"], "blocks.1.expand.0": s["e2"], "blocks.1.squeeze": s["s2"],
        }  # fmt: skip

    natives = {"stem": 16, "e1": 48, "s1": 8, "out1": 24, "e2": 72, "s2": 12}
    native_and_discovered(TinyEfficientNet, to_group, natives)


def test_a_flatten_maps_each_channel_to_its_block_of_inputs():
    plan = checked_plan(TinyVGG(), EXAMPLE)
    assert plan.widths == {"features.0": 16, "features.4": 32, "classifier.1": 64}

    def to_group(s):
        return {"features.0": s["c1"], "features.4": s["c2"], "classifier.1": s["hidden"]}

    native_and_discovered(TinyVGG, to_group, {"c1": 16, "c2": 32, "hidden": 64})


@pytest.mark.parametrize("space", ["plain20", "mobilenetv2-small", "mnasnet-small", "densenet40"])
def test_built_in_spaces_are_found_with_their_widths(space):
    # at uneven widths, the built-in widths are found, and the base model rebuilt at what
    # was found counts the natively built model's MACs
    spec = ModelSpec(space, num_classes=10, in_channels=3, image_size=16, width_mult=0.25)
    base = build(spec)
    plan = checked_plan(base, EXAMPLE)
    widths = {name: w + i % 3 for i, (name, w) in enumerate(base_widths(spec).items())}
    native = build(spec, widths)
    found = discover(native, EXAMPLE)
    # every built-in width is among the discovered ones (beside the unsearched stem and head)
    assert not Counter(widths.values()) - Counter(found.widths.values())
    assert len(plan.widths) - len(widths) in (1, 2, 3)
    assert count(rebuild(base, plan, found.widths), (3, 16, 16)) == count(native, (3, 16, 16))


def test_a_zero_padded_shortcut_is_held_not_misread():
    # our CIFAR ResNets pad the shortcut with zero channels (F.pad), which Torch-Pruning
    # takes for an element-wise operation, tying every stage's stream into one: the model
    # does not run when that changes, so the stream is held; the blocks' inner widths are
    # searched, and rebuilt they count as the space built natively at those widths
    spec = ModelSpec("resnet20", num_classes=10, in_channels=3, image_size=16, width_mult=0.25)
    plan = checked_plan(build(spec), EXAMPLE)
    assert set(plan.held) == {"stem.conv"} and "does not run when it changes" in plan.held["stem.conv"]
    assert set(plan.widths) == {name for name in base_widths(spec) if name.endswith("conv1")}
    widths = {name: width + 3 for name, width in plan.widths.items()}
    native = build(spec, {**base_widths(spec), **widths})
    assert count(rebuild(build(spec), plan, widths), (3, 16, 16)) == count(native, (3, 16, 16))


def test_inspect_prints_the_widths_of_a_users_file(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text(
        "from torch import nn\n\n"
        "def net(num_classes, in_channels, width=8):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.BatchNorm2d(width), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))\n"
    )
    result = in_process("inspect", "--model", f"{source}:net", "--model-args", '{"width": 12}', "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["widths"] == {"conv0": 12}  # an nn.Sequential's position, led by the layer's kind
    assert found["groups"][0]["layers"] == [["0", "out"], ["1", "out"], ["5", "in"]]
    # at search's default input, Fashion-MNIST's: conv at 26x26 outputs, then the classifier
    assert found["macs"] == 12 * 1 * 9 * 26 * 26 + 12 * 10
    text = in_process("inspect", "--model", f"{source}:net").stdout
    assert "1 searchable width (1x28x28 input, 10 classes)" in text and "0 (out), 1 (out), 5 (in)" in text
    cifar = json.loads(
        in_process("inspect", "--model", f"{source}:net", "--dataset", "cifar10", "--json").stdout
    )
    assert cifar["macs"] == 8 * 3 * 9 * 30 * 30 + 8 * 10  # its default width, 8
    for arguments, message in (
        ([f"{source}"], "give pkg.module:factory"),
        ([f"{tmp_path / 'missing.py'}:net"], "does not exist"),
        ([f"{source}:other"], "has no callable 'other'"),
        (["no_such_package.models:net"], "cannot import no_such_package.models"),
        ([f"{source}:net", "--model-args", "[1]"], "JSON object"),
    ):
        assert_user_error(in_process("inspect", "--model", *arguments), message)


RESIDUAL_NET = """
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs)
        self.conv2, self.bn2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            projection = nn.Conv2d(inputs, outputs, 1, stride, bias=False)
            self.shortcut = nn.Sequential(projection, nn.BatchNorm2d(outputs))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


def net(num_classes, in_channels, width=8):
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        Block(width, width, 1), Block(width, 2 * width, 2), Block(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes),
    )
"""


def test_masking_a_width_at_its_sites_removes_its_channel_from_every_addend(tmp_path):
    from netadjust.channel_drop import ChannelDrop
    from netadjust.usermodel import user_model

    (tmp_path / "residual.py").write_text(RESIDUAL_NET)
    spec = ModelSpec(model=f"{tmp_path / 'residual.py'}:net", in_channels=3, image_size=16)
    torch.manual_seed(0)
    model = user_model(
        spec, {"conv0": 8, "3.conv1": 8, "4.conv1": 16, "4.conv2": 16, "5.conv1": 32, "5.conv2": 32}
    )
    model.eval()
    stream = "4.conv2"  # stage 2's stream: the sum of block 4's second norm and its projection's
    assert model.drop_sites[stream] == ("4.bn2", "4.shortcut.1")
    for norm in ("4.bn2", "4.shortcut.1"):  # biases that keep every channel of the sum alive
        model.get_submodule(norm).bias.data.uniform_(0.5, 1.0)
    block = {}
    model.get_submodule("4").register_forward_hook(lambda m, i, out: block.update(out=out))
    with ChannelDrop(model, model.drop_sites, seed=0) as drop:
        drop.set_rates({stream: 0.5})
        drop.use_keys(torch.zeros(2, dtype=torch.long), torch.arange(2))
        dropped = drop.keyed_mask(stream, 16) == 0
        model(EXAMPLE)
    channels = block["out"].abs().sum((2, 3))  # (samples, channels) after the block's ReLU
    assert dropped.any() and (~dropped).any()
    assert (channels[dropped] == 0).all() and (channels[~dropped] > 0).all()


def test_a_search_of_your_own_model_stays_within_the_budget(tmp_path, fashion_dir):
    (tmp_path / "residual.py").write_text(RESIDUAL_NET)
    reference = f"{tmp_path / 'residual.py'}:net"
    out = tmp_path / "run"
    flags = ["--train-limit", 400, "--val-limit", 100, "--test-limit", 100, "--epochs", 1, "--k", 2]
    result = netadjust(
        "search", "--model", reference, "--data-dir", fashion_dir, "--iterations", 2, "--out", out, *flags
    )
    assert result.returncode == 0, result.stderr
    final = json.loads((out / "final.json").read_text())
    assert final["model"]["model"] == reference and final["model"]["space"] == "model"
    assert set(final["widths"]) == {"conv0", "3.conv1", "4.conv1", "4.conv2", "5.conv1", "5.conv2"}
    assert final["widths"] != final["original_widths"]
    assert abs(final["macs"] - final["original_macs"]) <= 0.01 * final["macs"]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[0]["fur_method"] == "reference" and set(history[0]["fur"]) == set(final["widths"])
    # the run directory names the model: cut back to after iteration 1, a resume rebuilds it
    # from the reference and ends where the whole run did
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    (cut / "final.json").unlink()
    (cut / "history.jsonl").write_text(json.dumps(history[0]) + "\n")
    resumed = netadjust("search", "--resume", cut)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((cut / "final.json").read_text()) == final
    # a network of it loads only when its reference is named: loading runs the user's code
    trained = tmp_path / "t.json"
    limits = ["--epochs", 1, "--train-limit", 100, "--test-limit", 50, "--data-dir", fashion_dir]
    assert netadjust("train", "--widths", out / "final.json", "--out", trained, *limits).returncode == 0
    with pytest.raises(UserError, match="model="):
        netadjust_api_load(trained.with_suffix(".safetensors"))
    assert isinstance(netadjust_api_load(trained.with_suffix(".safetensors"), model=reference), nn.Module)
    # a new search from the run's final.json: the same model, from its searched widths
    again = tmp_path / "again"
    result = in_process(
        "search", "--widths", out / "final.json", "--data-dir", fashion_dir, "--iterations", 1,
        "--out", again, *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((again / "config.json").read_text())
    assert config["model"]["model"] == reference and config["initial_widths"] == final["widths"]


def netadjust_api_load(path, **options):
    import netadjust

    return netadjust.load(path, **options)


class TinyResNeXt(nn.Module):
    """A grouped 3x3 conv (4 groups) between two 1x1 convs, with an identity shortcut."""

    def __init__(self, num_classes=10, in_channels=3, stream=16, middle=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stream, 3, 1, 1, bias=False), nn.BatchNorm2d(stream))
        self.reduce = nn.Sequential(
            nn.Conv2d(stream, middle, 1, bias=False), nn.BatchNorm2d(middle), nn.ReLU()
        )
        self.grouped = nn.Sequential(
            nn.Conv2d(middle, middle, 3, 1, 1, groups=4, bias=False), nn.BatchNorm2d(middle), nn.ReLU()
        )
        self.expand = nn.Sequential(nn.Conv2d(middle, stream, 1, bias=False), nn.BatchNorm2d(stream))
        self.fc = nn.Linear(stream, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        return self.fc(F.relu(x + self.expand(self.grouped(self.reduce(x)))).mean((2, 3)))


class TinyDenseNet(nn.Module):
    """Two dense layers, each adding its growth to the concatenation, and a transition."""

    def __init__(self, num_classes=10, in_channels=3, stem=8, g1=4, g2=6, transition=10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.layer1 = nn.Sequential(nn.BatchNorm2d(stem), nn.ReLU(), nn.Conv2d(stem, g1, 3, 1, 1, bias=False))
        self.layer2 = nn.Sequential(
            nn.BatchNorm2d(stem + g1), nn.ReLU(), nn.Conv2d(stem + g1, g2, 3, 1, 1, bias=False)
        )
        self.transition = nn.Sequential(
            nn.BatchNorm2d(stem + g1 + g2), nn.Conv2d(stem + g1 + g2, transition, 1)
        )
        self.fc = nn.Linear(transition, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.layer1(x)], 1)
        x = torch.cat([x, self.layer2(x)], 1)
        return self.fc(self.transition(x).mean((2, 3)))


def test_grouped_convolutions_keep_widths_divisible_by_their_groups():
    plan = checked_plan(TinyResNeXt(), EXAMPLE)
    assert plan.widths == {"stem.0": 16, "reduce.0": 16, "grouped.0": 16}
    native = TinyResNeXt(stream=24, middle=20)
    assert discover(native, EXAMPLE).widths == {"stem.0": 24, "reduce.0": 20, "grouped.0": 20}
    widths = {"stem.0": 24, "reduce.0": 20, "grouped.0": 20}
    assert count(rebuild(TinyResNeXt(), plan, widths), (3, 16, 16)) == count(native, (3, 16, 16))
    with pytest.raises(UserError, match="groups"):
        rebuild(TinyResNeXt(), plan, {**widths, "reduce.0": 18, "grouped.0": 18})


def test_concatenated_parts_are_widths_of_their_own():
    plan = checked_plan(TinyDenseNet(), EXAMPLE)
    assert plan.widths == {"stem": 8, "layer1.2": 4, "layer2.2": 6, "transition.1": 10}
    native = TinyDenseNet(stem=5, g1=7, g2=3, transition=12)
    widths = {"stem": 5, "layer1.2": 7, "layer2.2": 3, "transition.1": 12}
    assert discover(native, EXAMPLE).widths == widths
    assert count(rebuild(TinyDenseNet(), plan, widths), (3, 16, 16)) == count(native, (3, 16, 16))


@pytest.mark.parametrize(
    "cls", [TinyResNet50, TinyMobileNetV3, TinyEfficientNet, TinyVGG, TinyResNeXt, TinyDenseNet]
)
def test_each_widths_share_of_macs_and_params_is_the_slope_of_the_rebuilt_models_count(cls):
    # f_i = c_i dF/dc_i from one traced pass, against a central difference of the MACs
    # of the model rebuilt one multiple wider and narrower
    model, shape = cls(), (3, 16, 16)
    plan = checked_plan(model, EXAMPLE)
    shares = width_shares(model, plan, plan.widths, shape)
    for name, width in plan.widths.items():
        step = plan.multiples[name]
        wider = count(rebuild(model, plan, {**plan.widths, name: width + step}), shape)
        narrower = count(rebuild(model, plan, {**plan.widths, name: width - step}), shape)
        for measure in ("macs", "params"):
            slope = (getattr(wider, measure) - getattr(narrower, measure)) / (2 * step)
            assert shares[measure][name] == pytest.approx(width * slope, rel=1e-9), (measure, name)
    assert all(share > 0 for share in shares["macs"].values())


class LayerScaled(TinyVGG):
    def __init__(self, c1=16):
        super().__init__(c1=c1)
        self.scale = nn.Parameter(torch.full((1, c1, 1, 1), 0.5))

    def forward(self, x):
        return self.classifier(self.features[4:](self.features[:4](x) * self.scale))


def test_a_layer_scale_is_resized_with_its_width_at_the_value_it_starts_at():
    plan = checked_plan(LayerScaled(), EXAMPLE)
    assert ("scale", "param") in next(group for group in plan.groups if group.name == "features.0").members
    rebuilt = rebuild(LayerScaled(), plan, {**plan.widths, "features.0": 24})
    assert rebuilt.scale.shape == (1, 24, 1, 1) and (rebuilt.scale == torch.tensor(0.5)).all()
    assert count(rebuilt, (3, 16, 16)) == count(LayerScaled(c1=24), (3, 16, 16))


class Shared(TinyVGG):
    def forward(self, x):  # the same convolution twice: its channels are tied to themselves
        x = self.features[:4](x)
        return self.classifier(self.features[4:](self.features[0](x[:, :3]) + x))


class Embedded(TinyVGG):
    def __init__(self):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, 16, 8, 8))

    def forward(self, x):
        return self.classifier(self.features[4:](self.features[:4](x) + self.position))


class NormedOverMaps(TinyVGG):
    def __init__(self):
        super().__init__()
        self.features[1] = nn.LayerNorm((16, 16, 16))


@pytest.mark.parametrize(
    "model, message",
    [
        (Embedded(), "position is a parameter of shape (1, 16, 8, 8) that no resizable layer owns"),
        (Shared(), "features.0 is called 2 times in one pass"),
        (NormedOverMaps(), "features.1 is a LayerNorm over 3 dimensions, which netadjust cannot resize"),
    ],
)
def test_what_cannot_be_resized_is_refused_by_name(model, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        checked_plan(model, EXAMPLE)


def test_cost_counts_your_model_as_it_counts_a_space(tmp_path):
    (tmp_path / "residual.py").write_text(RESIDUAL_NET)
    reference = f"{tmp_path / 'residual.py'}:net"
    result = in_process("cost", "--model", reference, "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)  # at search's default input: Fashion-MNIST's 1x28x28
    assert printed["macs"] == count(residual_from_file(tmp_path, in_channels=1), (1, 28, 28)).macs
    # inspect counts the same network at the same input, and so does the search's budget
    inspected = json.loads(in_process("inspect", "--model", reference, "--json").stdout)
    assert inspected["macs"] == printed["macs"]
    planned = dry_run("--model", reference)
    spec = ModelSpec("model", in_channels=planned["model"]["in_channels"], model=reference)
    assert (
        model_cost(dataclasses.replace(spec, image_size=planned["model"]["image_size"])).macs
        == printed["macs"]
    )
    assert (
        set(printed["sensitivities"]) == set(printed["widths"]) and min(printed["sensitivities"].values()) > 0
    )
    both = in_process("cost", "resnet20", "--model", reference)
    assert both.returncode == 2 and "one of them" in both.stderr


def residual_from_file(folder, in_channels=3):
    from netadjust.factories import load_factory

    return load_factory(f"{folder / 'residual.py'}:net")(num_classes=10, in_channels=in_channels)


def test_the_api_takes_a_factory_defined_in_a_module(tmp_path, monkeypatch, fashion_dir):
    import netadjust

    (tmp_path / "my_models.py").write_text(RESIDUAL_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_models

    model = netadjust.build("model", model=my_models.net, num_classes=10, in_channels=1, image_size=28)
    assert isinstance(model, nn.Module) and set(model.drop_sites) >= {"conv0", "4.conv2"}
    config = netadjust.api.search_config(model=my_models.net, data_dir=fashion_dir)
    assert config.model.model == "my_models:net"
    with pytest.raises(UserError, match="define the factory at the top of a module"):
        netadjust.api.search_config(
            model=lambda num_classes, in_channels: my_models.net(num_classes, in_channels)
        )


def test_without_torch_pruning_the_refusal_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # an import of it now fails
    assert_user_error(in_process("inspect", "--model", "netadjust.spaces:build"), "netadjust[models]")


class SigmoidRead(nn.Module):
    """A width without a norm layer, read through a sigmoid: dropping it after the layer that
    produces it would leave sigmoid(0) = 0.5 in its place."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1, self.conv2, self.bn2 = (
            nn.Conv2d(in_channels, 8, 3),
            nn.Conv2d(8, 16, 3),
            nn.BatchNorm2d(16),
        )
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn2(self.conv2(torch.sigmoid(self.conv1(x))))).mean((2, 3)))


def test_a_width_without_a_norm_is_dropped_where_it_is_read():
    from netadjust.anymodel import drop_sites
    from netadjust.channel_drop import ChannelDrop

    plan = checked_plan(SigmoidRead(), EXAMPLE)
    sites = {group.name: group.sites for group in plan.groups}
    assert sites == {"conv1": ("conv2:input",), "conv2": ("bn2",)}
    model = SigmoidRead().eval()
    read = {}
    with ChannelDrop(model, {"conv1": "conv2:input"}, seed=0) as drop:
        model.conv2.register_forward_pre_hook(lambda m, inputs: read.update(x=inputs[0]))  # after the drop's
        drop.set_rates({"conv1": 0.5})
        drop.use_keys(torch.zeros(2, dtype=torch.long), torch.arange(2))
        dropped = drop.keyed_mask("conv1", 8) == 0
        model(EXAMPLE)
    channels = read["x"].abs().sum((2, 3))
    assert dropped.any() and (channels[dropped] == 0).all() and (channels[~dropped] > 0).all()
    # where a reader also takes other channels (a concatenation), the producers' outputs serve
    members = {("a", "out"): 1, ("b", "in"): 1}
    assert drop_sites(
        nn.ModuleDict({"a": nn.Conv2d(3, 4, 1), "b": nn.Conv2d(6, 2, 1)}), members, ["a"], 4
    ) == ("a",)


def without_channel(model, group, channel):
    """A copy of ``model`` with one channel of ``group`` cut out of every layer it touches."""
    import copy

    copied = copy.deepcopy(model)
    for (name, side), per_channel in group.members.items():
        assert per_channel == 1  # no flatten in the models cut here
        layer = copied.get_submodule(name)
        size = layer.weight.shape[0 if side == "out" else 1]
        keep = torch.tensor([c for c in range(size) if c != channel])
        with torch.no_grad():
            if isinstance(layer, nn.BatchNorm2d):
                for tensor in ("weight", "bias", "running_mean", "running_var"):
                    setattr(layer, tensor, type(getattr(layer, tensor))(getattr(layer, tensor)[keep]))
                layer.num_features -= 1
            elif side == "out":
                layer.weight = nn.Parameter(layer.weight[keep])
                if layer.bias is not None:
                    layer.bias = nn.Parameter(layer.bias[keep])
            else:
                layer.weight = nn.Parameter(layer.weight[:, keep])
    return copied


@pytest.mark.parametrize("width", ["conv0", "4.conv1", "4.conv2", "5.conv2"])
def test_zeroing_a_channel_at_its_drop_sites_equals_cutting_it_out(tmp_path, width):
    # the property FUR rests on: what the masks do is what a narrower network would compute
    from netadjust.channel_drop import on_site, site_modules
    from netadjust.usermodel import user_model, user_plan

    (tmp_path / "residual.py").write_text(RESIDUAL_NET)
    spec = ModelSpec(model=f"{tmp_path / 'residual.py'}:net", in_channels=3, image_size=16)
    torch.manual_seed(0)
    model = user_model(spec, user_plan(spec)[1].widths).eval()
    for module in model.modules():  # statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.bias.data.uniform_(-0.5, 0.5)
    group = next(g for g in discover(model, EXAMPLE).groups if g.name == width)
    cut = without_channel(model, group, 3)(EXAMPLE)
    zero = torch.ones(group.width)
    zero[3] = 0
    for module, on_input, last in site_modules(model, width, model.drop_sites[width]):
        on_site(module, on_input, lambda x: x * zero.view(1, -1, *[1] * (x.dim() - 2)), last)
    assert torch.allclose(model(EXAMPLE), cut, atol=1e-5)


class HeadFirst(nn.Module):
    """TinyVGG with its classifier registered before its features: the output layer is
    found by what the model returns, not by registration order."""

    def __init__(self):
        super().__init__()
        vgg = TinyVGG()
        self.classifier = vgg.classifier
        self.features = vgg.features

    def forward(self, x):
        return self.classifier(self.features(x))


def test_the_output_layer_is_the_one_whose_output_the_model_returns():
    model = HeadFirst()
    assert [name for name, _ in model.named_children()] == ["classifier", "features"]
    assert checked_plan(model, EXAMPLE).widths == {"features.0": 16, "features.4": 32, "classifier.1": 64}


# the networks of the own-model issue, written in files as users write them
FUSED_BATCH_NORM_NET = """
import torch
from torch import nn


class BatchNormReLU(nn.BatchNorm2d):
    '''A batch norm with its activation fused, as timm's BatchNormAct2d.'''

    def forward(self, x):
        return torch.relu(super().forward(x))


def net(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), BatchNormReLU(8),
        nn.Conv2d(8, 16, 3, padding=1, stride=2, bias=False), BatchNormReLU(16),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), BatchNormReLU(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
"""

RESNEXT_NET = """
import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, channels, inner, groups=4):
        super().__init__()
        self.a = nn.Conv2d(channels, inner, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(inner)
        self.b = nn.Conv2d(inner, inner, 3, padding=1, groups=groups, bias=False)
        self.bn_b = nn.BatchNorm2d(inner)
        self.c = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn_c = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)))
        y = torch.relu(self.bn_b(self.b(y)))
        return torch.relu(x + self.bn_c(self.c(y)))


def net(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Bottleneck(16, 32), nn.MaxPool2d(2), Bottleneck(16, 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
"""

GROUP_NORM_NET = """
from torch import nn


def net(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.GroupNorm(4, 32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""

TINY_SEARCH = ["--train-limit", 300, "--val-limit", 100, "--test-limit", 100, "--epochs", 1, "--repeats", 1]


def searched(tmp_path, fashion_dir, source: str, *flags) -> tuple[dict, list[dict]]:
    """A 2-iteration search of the model in ``source`` on a little Fashion-MNIST."""
    (tmp_path / "mine.py").write_text(source)
    out = tmp_path / "run"
    result = in_process(
        "search", "--model", f"{tmp_path / 'mine.py'}:net", "--data-dir", fashion_dir, "--iterations", 2,
        "--adjust-rate", 0.5, "--out", out, *TINY_SEARCH, *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return json.loads((out / "final.json").read_text()), history


def test_a_subclass_of_a_layer_is_rebuilt_as_itself(tmp_path):
    (tmp_path / "fused.py").write_text(FUSED_BATCH_NORM_NET)
    spec = ModelSpec("model", in_channels=1, image_size=28, model=f"{tmp_path / 'fused.py'}:net")
    original = build(spec)
    widths = {name: 2 * width for name, width in base_widths(spec).items()}
    rebuilt = build(spec, widths)
    assert [type(module).__name__ for module in rebuilt.modules()] == [
        type(module).__name__ for module in original.modules()
    ]
    fused = [module for module in rebuilt.modules() if type(module).__name__ == "BatchNormReLU"]
    assert [module.num_features for module in fused] == [16, 32, 32]
    assert (rebuilt[:2](torch.randn(2, 1, 28, 28)) >= 0).all()  # its ReLU is still there


@pytest.mark.parametrize("source", [RESNEXT_NET, GROUP_NORM_NET], ids=["resnext-groups-4", "group-norm-4"])
def test_grouped_layers_are_searched_with_every_width_a_multiple_of_its_groups(tmp_path, fashion_dir, source):
    (tmp_path / "mine.py").write_text(source)
    shown = json.loads(in_process("inspect", "--model", f"{tmp_path / 'mine.py'}:net", "--json").stdout)
    multiples = {group["name"]: group["multiple"] for group in shown["groups"]}
    assert set(multiples.values()) == {4} or sorted(set(multiples.values())) == [1, 4]
    final, history = searched(tmp_path, fashion_dir, source)  # the preset's k, capped for 3 widths
    for widths in [record["next_widths"] for record in history] + [final["widths"]]:
        assert all(widths[name] % multiples[name] == 0 for name in widths), widths
    assert final["widths"] != final["original_widths"]
    # on the budget although a step of 4 channels moves these 3 small layers' MACs by 5-20%:
    # within its 1% band (on either side), and one step of any width beyond it
    spec = ModelSpec("model", in_channels=1, image_size=28, model=f"{tmp_path / 'mine.py'}:net")
    assert final["macs"] == model_cost(spec, final["widths"]).macs
    assert abs(final["macs"] / final["original_macs"] - 1) <= BUDGET_TOLERANCE
    for name, multiple in multiples.items():
        grown = {**final["widths"], name: final["widths"][name] + multiple}
        assert model_cost(spec, grown).macs > final["original_macs"], name
    # and the comparison's uniform network lies on the same grid
    result = in_process(
        "compare", tmp_path / "run", "--epochs", 1, "--train-limit", 200, "--test-limit", 100,
        "--data-dir", fashion_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    uniform = json.loads((tmp_path / "run" / "compare.json").read_text())["uniform"]["widths"]
    assert all(uniform[name] % multiples[name] == 0 for name in uniform), uniform


def test_a_model_of_three_widths_is_searched_with_the_default_k(tmp_path, fashion_dir):
    final, history = searched(tmp_path, fashion_dir, FUSED_BATCH_NORM_NET, "--k-decay", 0.5)
    # k capped at 1 and decaying by 0.5 is 1, then 0: the search stops once nothing can move
    assert len(final["widths"]) == 3 and len(history) == 1 and final["iterations"] == 1
    assert all(not set(record["grown"]) & set(record["shrunk"]) for record in history)


def test_a_factory_that_fails_inside_is_refused_in_one_line_naming_where(tmp_path):
    (tmp_path / "broken.py").write_text(
        "from torch import nn\n\ndef net(num_classes=10, in_channels=1):\n"
        "    widths = [8, 16]\n    return nn.Conv2d(in_channels, widths[2], 3)\n"
    )
    result = in_process("inspect", "--model", f"{tmp_path / 'broken.py'}:net")
    assert_user_error(result, "raised IndexError: list index out of range", "broken.py, line 5")
    (tmp_path / "typo.py").write_text(  # a TypeError of its own code is not a wrong argument
        "from torch import nn\n\ndef net(num_classes=10, in_channels=1):\n"
        "    return nn.Conv2d(in_channels, 8, 3, paddin=1)\n"
    )
    result = in_process("search", "--model", f"{tmp_path / 'typo.py'}:net", "--out", tmp_path / "run")
    assert_user_error(result, "raised TypeError", "typo.py, line 4")
    assert not (tmp_path / "run").exists()


def test_a_norm_over_a_concatenation_is_no_drop_site_and_the_model_is_searched(tmp_path):
    # DenseNet's pattern: each layer's output concatenated with its input, then one batch norm
    # over the concatenation; a mask of one width's channels must not be applied to that norm
    (tmp_path / "dense.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Dense(nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.stem, self.stem_bn = nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8)\n"
        "        self.grow = nn.Conv2d(8, 4, 3, padding=1)\n"
        "        self.joined = nn.BatchNorm2d(12)\n"
        "        self.head = nn.Linear(12, num_classes)\n"
        "    def forward(self, x):\n"
        "        x = torch.relu(self.stem_bn(self.stem(x)))\n"
        "        x = torch.relu(self.joined(torch.cat([x, self.grow(x)], 1)))\n"
        "        return self.head(x.mean((2, 3)))\n\n"
        "def net(num_classes, in_channels):\n    return Dense(num_classes, in_channels)\n"
    )
    reference = f"{tmp_path / 'dense.py'}:net"
    model = build(ModelSpec("model", in_channels=1, image_size=28, model=reference))
    assert model.drop_sites["grow"] == "grow" and model.drop_sites["stem"] == "stem_bn"
    data = write_mnist_like(tmp_path / "data", n_train=120, n_test=20)
    result = in_process(
        "search", "--model", reference, "--dataset", "mnist", "--data-dir", data, "--epochs", 1,
        "--repeats", 1, "--batch-size", 40, "--iterations", 1, "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# ConvNeXt's parts as torchvision and timm write them: a layer norm over the channels of an
# NCHW map (LayerNorm2d) and of a channels-last one, linear layers on channels-last maps, a
# layer scale that belongs to no layer
CONVNEXT_NET = """
import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.dwconv = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.layer_scale = nn.Parameter(torch.full((width, 1, 1), 0.1))

    def forward(self, x):
        y = self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(self.dwconv(x).permute(0, 2, 3, 1)))))
        return x + self.layer_scale * y.permute(0, 3, 1, 2)


class Net(nn.Module):
    def __init__(self, num_classes, in_channels, s1=8, h1=24, s2=16, h2=40):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, s1, 2, 2), LayerNorm2d(s1))
        self.block1 = Block(s1, h1)
        self.down = nn.Sequential(LayerNorm2d(s1), nn.Conv2d(s1, s2, 2, 2))
        self.block2 = Block(s2, h2)
        self.head_norm, self.fc = nn.LayerNorm(s2), nn.Linear(s2, num_classes)

    def forward(self, x):
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.fc(self.head_norm(x.mean((2, 3))))


def net(num_classes, in_channels, **widths):
    return Net(num_classes, in_channels, **widths)
"""


def convnext_from_file(folder, **widths):
    from netadjust.factories import load_factory

    (folder / "convnext.py").write_text(CONVNEXT_NET)
    return load_factory(f"{folder / 'convnext.py'}:net")(num_classes=10, in_channels=3, **widths)


def test_convnext_layer_norms_and_layer_scales_are_resized_with_their_widths(tmp_path):
    plan = checked_plan(convnext_from_file(tmp_path), EXAMPLE)
    assert plan.widths == {"stem.0": 8, "block1.fc1": 24, "down.1": 16, "block2.fc1": 40}
    sites = {group.name: group.sites for group in plan.groups}
    # the stream's channels go where its norms put them: last in the blocks', first in the
    # LayerNorm2d's; the hidden channels are read channels-last by the second linear layer
    assert sites["stem.0"] == ("stem.1", "block1.norm:last", "down.0")
    assert sites["block1.fc1"] == ("block1.fc2:input:last",)
    assert sites["down.1"] == ("block2.norm:last", "head_norm")
    natives = {"s1": 12, "h1": 20, "s2": 6, "h2": 52}
    widths = {"stem.0": 12, "block1.fc1": 20, "down.1": 6, "block2.fc1": 52}
    native = convnext_from_file(tmp_path, **natives)
    assert discover(native, EXAMPLE).widths == widths
    rebuilt = rebuild(convnext_from_file(tmp_path), plan, widths)
    assert count(rebuilt, (3, 16, 16)) == count(native, (3, 16, 16))
    assert (
        rebuilt.block1.layer_scale.shape == (12, 1, 1)
        and (rebuilt.block1.layer_scale == torch.tensor(0.1)).all()
    )


@pytest.mark.parametrize("width, channel", [("stem.0", 5), ("block1.fc1", 17), ("down.1", 3)])
def test_a_channel_masked_at_its_sites_reaches_no_layer_that_mixes_channels(tmp_path, width, channel):
    # a layer norm's statistics still count it (docs/models.md); every linear layer and
    # full convolution that reads the width sees it as zero, wherever its channels lie
    from netadjust.channel_drop import on_site, site_modules

    model = convnext_from_file(tmp_path).eval()
    group = next(g for g in checked_plan(model, EXAMPLE).groups if g.name == width)
    zero = torch.ones(group.width)
    zero[channel] = 0
    for module, on_input, last in site_modules(model, width, group.sites):
        on_site(module, on_input, lambda x: x * zero.view(1, -1, *[1] * (x.dim() - 2)), last)
    from netadjust.anymodel import is_depthwise

    read = {}
    for name, side in group.members:
        module = model.get_submodule(name) if side == "in" else None
        if module is not None and not is_depthwise(module):
            module.register_forward_pre_hook(lambda m, inputs, name=name: read.update({name: inputs[0]}))
    model(EXAMPLE)
    assert read
    for name, tensor in read.items():
        channels_last = isinstance(model.get_submodule(name), nn.Linear)
        values = tensor.movedim(-1, 1) if channels_last else tensor
        assert (values[:, channel] == 0).all() and values.abs().sum() > 0, name


class SplitByCount(nn.Module):
    """A CSP-style split: the expansion's channels cut in two by a count fixed at build time."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.half = 16
        self.branch = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.merge = nn.Sequential(nn.Conv2d(32, 24, 1), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        a, b = self.expand(self.stem(x)).split(self.half, 1)
        return self.fc(self.merge(torch.cat([self.branch(a), b], 1)).mean((2, 3)))


def test_a_width_split_by_a_fixed_count_is_held_and_the_others_searched():
    # the graph reads the split as if the branch produced all 32 channels: the widths it
    # ties there are held, the others searched
    plan = checked_plan(SplitByCount(), EXAMPLE)
    assert set(plan.held) == {"expand.0"} and "slice or split" in plan.held["expand.0"]
    assert plan.widths == {"stem.0": 16, "merge.0": 24}
    widths = {"stem.0": 8, "merge.0": 40}
    rebuilt = rebuild(SplitByCount(), plan, widths)
    assert rebuilt.expand[0].out_channels == 32 and rebuilt(EXAMPLE).shape == (2, 10)


def test_a_dependency_graph_that_keeps_growing_is_refused_after_a_count_of_checks(monkeypatch):
    # a count, not a time: the same verdict on every machine (timm's RexNet passes 50,000)
    from netadjust import anymodel

    assert checked_plan(TinyResNet50(), EXAMPLE).widths  # the default limit leaves it alone
    monkeypatch.setattr(anymodel, "DISCOVERY_CHECKS", 10)
    with pytest.raises(UserError, match="still growing its groups after 10 checks"):
        checked_plan(TinyResNet50(), EXAMPLE)
    monkeypatch.setattr(anymodel, "DISCOVERY_CHECKS", 50_000)
    # or of indices followed (Swin-V2's reshaped windows: 105M in 338 checks)
    monkeypatch.setattr(anymodel, "DISCOVERY_INDICES", 100)
    with pytest.raises(UserError, match="still growing its groups after 100 channel indices followed"):
        checked_plan(TinyResNet50(), EXAMPLE)


class SplitAttention(nn.Module):
    """ResNeSt's split attention at radix 2: a grouped convolution makes two splits of each
    channel, reshaped apart, weighed by a softmax over the splits and summed; the reshapes
    give Torch-Pruning's index lists back in another order each time round."""

    def __init__(self, num_classes=10, in_channels=3, width=16, radix=2):
        super().__init__()
        self.radix = radix
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.splits = nn.Sequential(
            nn.Conv2d(width, width * radix, 3, padding=1, groups=radix),
            nn.BatchNorm2d(width * radix),
            nn.ReLU(),
        )
        self.fc1 = nn.Sequential(nn.Conv2d(width, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc2 = nn.Conv2d(8, width * radix, 1, groups=radix)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.splits(self.stem(x))
        n, _, h, w = x.shape
        parts = x.reshape(n, self.radix, -1, h, w)
        attention = self.fc2(self.fc1(parts.sum(1).mean((2, 3), keepdim=True)))
        attention = attention.view(n, self.radix, -1).softmax(1).reshape(n, self.radix, -1, 1, 1)
        return self.head((parts * attention).sum(1).mean((2, 3)))


@pytest.mark.parametrize("cls", [SplitAttention, TinyDenseNet, TinyResNet50, TinyMobileNetV3])
def test_groups_found_by_index_sets_are_torch_prunings_own(cls, monkeypatch):
    # discovery follows each index set once and keeps the graph's index mapping; Torch-Pruning
    # unchanged (index lists compared in order, the mapping recomputed per group) finds the same
    from netadjust import anymodel

    ours = discover(cls(), EXAMPLE)
    monkeypatch.setattr(anymodel, "indexed_groups", lambda tp, *limits: contextlib.nullcontext())
    theirs = discover(cls(), EXAMPLE)
    assert ours.groups == theirs.groups and ours.fixed == theirs.fixed and ours.multiples == theirs.multiples
    assert set(ours.held) == set(theirs.held)


def test_a_rebuilt_model_shares_no_tensor_with_the_original_and_checks_need_no_initialisation():
    model = TinyResNet50()
    plan = discover(model, EXAMPLE)
    widths = {name: width + 8 for name, width in plan.widths.items()}
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for initialise in (True, False):
        rebuilt = rebuild(model, plan, widths, initialise)
        originals = {tensor.data_ptr() for tensor in model.state_dict().values()}
        assert not originals & {tensor.data_ptr() for tensor in rebuilt.state_dict().values()}
        assert rebuilt(EXAMPLE).shape == (2, 10) and discover(rebuilt, EXAMPLE).widths == widths
        with torch.no_grad():
            for tensor in rebuilt.state_dict().values():
                tensor.add_(1)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not any(
        tensor.abs().sum() for tensor in rebuild(model, plan, widths, False).parameters() if tensor.dim() > 1
    )


class TiedToANorm(TinyVGG):
    """A norm's scale also held by a module of no resizable type (never read)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__(num_classes, in_channels)
        self.keeper = nn.Module()
        self.keeper.weight = self.features[1].weight


def test_a_weight_tied_elsewhere_is_copied_not_shared_by_the_rebuilt_model():
    model = TiedToANorm()
    plan = discover(model, EXAMPLE)
    rebuilt = rebuild(model, plan, {**plan.widths, "features.0": plan.widths["features.0"] + 8})
    assert rebuilt.keeper.weight is not model.keeper.weight
    assert rebuilt.keeper.weight.data_ptr() != model.features[1].weight.data_ptr()


class DeviceLogged(nn.Module):
    """Two convs; each pass notes the device it ran on (in the class: rebuilt copies share it)
    and, where ``reads_values``, branches on a value, which meta tensors cannot give."""

    devices: list[str] = []

    def __init__(self, reads_values=False, num_classes=10, in_channels=3):
        super().__init__()
        self.reads_values = reads_values
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3)
        )
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        DeviceLogged.devices.append(x.device.type)
        features = self.body(x)
        if self.reads_values and features.abs().amax() < 0:  # never true: a value read, no more
            features = -features
        return self.fc(features.mean((2, 3)))


@pytest.mark.parametrize("reads_values", [False, True])
def test_the_plan_is_checked_on_the_meta_device_and_on_real_tensors_where_meta_cannot_run(reads_values):
    # a 644M-parameter RegNet's checks took 23 s on real tensors; shapes are all they read
    DeviceLogged.devices.clear()
    plan = checked_plan(DeviceLogged(reads_values), EXAMPLE)
    assert plan.widths == {"body.0": 8, "body.3": 16}
    # the original discovered (two passes) and run for its output's shape, on the CPU; then
    # per random width set one run and the two passes of its rediscovery
    assert DeviceLogged.devices[:3] == ["cpu"] * 3
    if reads_values:  # meta fails at the value read: each check is decided on the CPU
        assert DeviceLogged.devices[3:] == (["meta"] + ["cpu"] * 3) * 2
    else:
        assert DeviceLogged.devices[3:] == ["meta"] * 3 * 2


def test_a_width_the_model_cannot_run_without_is_held_on_what_meta_and_real_tensors_say():
    class FixedReshape(DeviceLogged):  # its head reads 16 channels whatever the width
        def forward(self, x):
            DeviceLogged.devices.append(x.device.type)
            return self.fc(self.body(x).mean((2, 3)).reshape(len(x), 16))

    DeviceLogged.devices.clear()
    plan = checked_plan(FixedReshape(), EXAMPLE)
    assert plan.widths == {"body.0": 8} and "does not run when it changes" in plan.held["body.3"]
    # the random widths fail on meta and on the CPU; body.3 narrower, likewise; body.0 runs
    # narrower and wider on meta: not held, never run on the CPU
    assert DeviceLogged.devices.count("cpu") == 3 + 1 + 1
