"""--inherit: trained weights carried into new widths (where that is free, channels kept by
importance and grown by splitting; else first channels kept, new ones read with zero
weights) on every built-in space and a user's network, and a search that uses them."""

import pytest
import torch
from torch import nn

from conftest import in_process
from netadjust.api import search_config
from netadjust.inherit import inherit
from netadjust.planning import iteration_recipe, regulariser_progress
from netadjust.presets import DEFAULT_PRESET
from netadjust.spaces import ModelSpec, base_widths, build, width_grid
from test_cli import assert_user_error

DENSE_NET = """
import torch
from torch import nn


class Net(nn.Module):
    '''Two dense layers concatenated to the stem, a 1x1 transition, a flatten of 2x2 maps.'''

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 6, 3, 1, 1, bias=False)
        self.layer1 = nn.Sequential(nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3, 1, 1, bias=False))
        self.layer2 = nn.Sequential(nn.BatchNorm2d(10), nn.ReLU(), nn.Conv2d(10, 5, 3, 1, 1, bias=False))
        self.transition = nn.Sequential(nn.BatchNorm2d(15), nn.ReLU(), nn.Conv2d(15, 8, 1))
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 12), nn.ReLU(), nn.Linear(12, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.layer1(x)], 1)
        x = torch.cat([x, self.layer2(x)], 1)
        return self.head(self.pool(self.transition(x)))
"""

EXAMPLE = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def trained_looking(spec: ModelSpec, widths: dict) -> nn.Module:
    """A network at ``widths`` whose norms are not at their initial values, in eval mode."""
    torch.manual_seed(0)
    model = build(spec, widths).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.2, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


def carried_into(spec: ModelSpec, parent: nn.Module, old: dict, new: dict):
    torch.manual_seed(1)
    model = build(spec, new).eval()
    return model, inherit(parent.state_dict(), old, model, spec, new)


def user_spec(tmp_path) -> ModelSpec:
    (tmp_path / "dense.py").write_text(DENSE_NET)
    return ModelSpec(model=f"{tmp_path / 'dense.py'}:Net", in_channels=1, image_size=28)


@pytest.mark.parametrize(
    "space, width_mult",
    [
        ("plain20", 0.25),
        ("resnet18", 0.25),
        ("densenet40", 0.25),
        ("mobilenetv2", 0.25),
        ("mnasnet", 0.25),
        ("own", 1.0),
    ],
)
def test_growing_every_width_keeps_what_the_network_computes(space, width_mult, tmp_path):
    # concatenations (DenseNet, the user's net) and a flatten included; the ImageNet
    # ResNet's shortcuts are convolutions, so its streams hold no index-aligned channels
    spec = user_spec(tmp_path) if space == "own" else ModelSpec(space, 10, 1, 28, width_mult)
    old = base_widths(spec)
    grid = width_grid(spec, 1)
    new = {name: width + 2 * grid[name] for name, width in old.items()}
    parent = trained_looking(spec, old)
    model, carried = carried_into(spec, parent, old, new)
    assert carried.by_importance == carried.first_channels == ()
    assert set(carried.split) | set(carried.fresh) == set(old) and carried.split
    if space != "resnet18":  # its blocks' second convs add into zero-padded streams: fresh there
        assert carried.fresh == ()
    with torch.no_grad():
        assert torch.allclose(model(EXAMPLE), parent(EXAMPLE), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(model(EXAMPLE), build(spec, new).eval()(EXAMPLE), atol=1e-3)  # not by chance


@pytest.mark.parametrize(
    "space",
    [
        "resnet20",
        "pyramidnet20",
        "plain20",
        "resnet18-small",
        "densenet40",
        "mobilenetv2-small",
        "mnasnet-small",
    ],
)
def test_every_space_carries_widths_shrunk_and_grown_at_once_close_to_what_it_computed(space):
    # every other width shrunk one step, the rest grown two: each width carried by the kind
    # its move allows, and the network's output near the trained one (a fresh one's is not)
    spec = ModelSpec(space, 10, 1, 28, 0.5)
    old, grid = base_widths(spec), width_grid(spec, 1)
    shrunk = set(list(old)[::2])
    new = {n: w - grid[n] if n in shrunk else w + 2 * grid[n] for n, w in old.items()}
    assert all(width >= 1 for width in new.values())
    parent = trained_looking(spec, old)
    model, carried = carried_into(spec, parent, old, new)
    kinds = (carried.by_importance, carried.first_channels, carried.split, carried.fresh)
    assert sorted(name for kind in kinds for name in kind) == sorted(old)  # each width once
    assert set(carried.by_importance) | set(carried.first_channels) == shrunk
    with torch.no_grad():
        trained = parent(EXAMPLE)
        moved = lambda network: float((network(EXAMPLE) - trained).norm() / trained.norm())  # noqa: E731
        # measured: 0.002-0.11 of a fresh network's distance (0.8-1.6), DenseNet 0.26 (a dense
        # layer's channels reach every later layer)
        assert moved(model) < 0.3 * moved(build(spec, new).eval())


def test_a_shrunk_width_keeps_its_largest_gamma_channels_in_every_layer_that_reads_them():
    spec = ModelSpec("plain20", 10, 1, 28, 0.5)
    old = base_widths(spec)
    name = "stage2.block1.conv1"
    parent = trained_looking(spec, old)
    gamma = torch.tensor(
        [0.3, -2.0, 0.1, 0.5, 1.5, -0.05, 0.9, 0.2, 0.4, 0.6, 0.7, 0.01, 0.8, 0.02, 1.2, 0.03]
    )
    parent.get_submodule("stage2.block1.bn1").weight.data.copy_(gamma)
    model, carried = carried_into(spec, parent, old, {**old, name: 5})
    kept = torch.tensor([1, 4, 6, 12, 14])  # the five largest |gamma|, in their order
    assert carried.by_importance == (name,) and carried.first_channels == ()
    for layer, dim in (("stage2.block1.conv1.weight", 0), ("stage2.block1.conv2.weight", 1)):
        assert torch.equal(model.state_dict()[layer], parent.state_dict()[layer].index_select(dim, kept))
    for entry in ("weight", "bias", "running_mean", "running_var"):
        key = f"stage2.block1.bn1.{entry}"
        assert torch.equal(model.state_dict()[key], parent.state_dict()[key][kept])
    assert torch.equal(
        model.state_dict()["stage3.block0.conv1.weight"], parent.state_dict()["stage3.block0.conv1.weight"]
    )


def test_a_grown_width_splits_old_channels_and_its_readers_share_their_weights():
    spec = ModelSpec("plain20", 10, 1, 28, 0.5)
    old = base_widths(spec)
    name = "stage2.block1.conv1"  # 16 channels, read by stage2.block1.conv2
    parent = trained_looking(spec, old)
    model, carried = carried_into(spec, parent, old, {**old, name: 22})
    assert carried.split == (name,) and carried.fresh == ()
    rows, old_rows = model.state_dict()[f"{name}.weight"], parent.state_dict()[f"{name}.weight"]
    assert torch.equal(rows[:16], old_rows)
    copied = [next(c for c in range(16) if torch.equal(rows[j], old_rows[c])) for j in range(16, 22)]
    assert len(set(copied)) == 6  # six different channels split, each once
    reads, old_reads = (
        model.state_dict()["stage2.block1.conv2.weight"],
        parent.state_dict()["stage2.block1.conv2.weight"],
    )
    for j, c in zip(range(16, 22), copied, strict=True):
        assert torch.allclose(reads[:, c] + reads[:, j], old_reads[:, c])
        assert not torch.allclose(reads[:, c], reads[:, j])  # unequal shares: the copies can drift apart
    assert torch.equal(
        model.state_dict()["stage2.block1.bn1.running_var"][16:],
        parent.state_dict()["stage2.block1.bn1.running_var"][copied],
    )


def test_a_residual_streams_addend_keeps_its_first_channels_an_inner_width_its_best():
    spec = ModelSpec("resnet20", 10, 1, 28, 0.5)
    old = base_widths(spec)
    parent = trained_looking(spec, old)
    new = {**old, "stage2.block1.conv1": 12, "stage2.block1.conv2": 12}
    model, carried = carried_into(spec, parent, old, new)
    # conv2's channel p is added to the stream's channel p: any other choice breaks the sum
    assert carried.by_importance == ("stage2.block1.conv1",)
    assert carried.first_channels == ("stage2.block1.conv2",)
    weight = "stage2.block1.conv2.weight"
    kept = parent.get_submodule("stage2.block1.bn1").weight.abs().topk(12).indices.sort().values
    assert torch.equal(model.state_dict()[weight], parent.state_dict()[weight][:12][:, kept])


def test_a_dense_layer_shrunk_drops_its_own_part_of_every_concatenation(tmp_path):
    # the width's drop sites are the norms that read the concatenations, its channels' part
    # of them; the two channels of least |gamma| there carry nothing (zero weights, the
    # norms zero-mean and unshifted there), so without them the network computes what it
    # did: only if every reader's part of the concatenations (norms, convs) was matched
    spec = user_spec(tmp_path)
    old = base_widths(spec)
    assert old == {"stem": 6, "layer1.2": 4, "layer2.2": 5, "transition.2": 8, "head.1": 12}
    parent = trained_looking(spec, old)
    dropped = [0, 2]  # of layer1's 4 channels: 6 and 8 of both concatenations
    parent.get_submodule("layer1.2").weight.data[dropped] = 0
    for reader in ("layer2.0", "transition.0"):
        norm = parent.get_submodule(reader)
        norm.weight.data[[6, 8]], norm.bias.data[[6, 8]], norm.running_mean[[6, 8]] = 0.1, 0.0, 0.0
    model, carried = carried_into(spec, parent, old, {**old, "layer1.2": 2})
    assert carried.by_importance == ("layer1.2",)
    with torch.no_grad():
        assert torch.allclose(model(EXAMPLE), parent(EXAMPLE), atol=1e-6, rtol=1e-5)


def test_inherit_takes_whole_epochs_or_a_share_of_one_and_0_trains_from_scratch(tmp_path):
    for value in ("1.5", "-1", "inf", "nan"):
        result = in_process("search", "--dry-run", "--inherit", value, "--out", tmp_path / "run")
        assert_user_error(result, "--inherit")
    assert in_process("search", "--dry-run", "--inherit", "0.25", "--out", tmp_path / "run").returncode == 0
    # 0 turns the default's inheritance off: every iteration trains the whole recipe from scratch
    scratch = search_config(DEFAULT_PRESET, inherit=0)
    assert in_process("search", "--dry-run", "--inherit", "0", "--out", tmp_path / "run").returncode == 0
    assert iteration_recipe(scratch, 1) == (scratch.recipe, 1.0)
    assert regulariser_progress(scratch, 1) is None
    cheap = search_config(DEFAULT_PRESET)
    assert cheap.inherit == 0.25 and iteration_recipe(cheap, 1)[1] == 0.25


def test_a_width_that_sizes_a_group_norm_keeps_its_first_channels_and_grows_fresh(tmp_path):
    # reversing a group norm's channels keeps its groups whole (the probe passes), but choosing
    # channels by |gamma| or splitting them would mix groups: such a width is never "free"
    (tmp_path / "grouped.py").write_text(
        "from torch import nn\n\ndef net(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(),\n"
        "                         nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))\n"
    )
    spec = ModelSpec(model=f"{tmp_path / 'grouped.py'}:net", in_channels=1, image_size=28)
    old = base_widths(spec)
    assert old == {"conv0": 8, "conv3": 16}
    torch.manual_seed(0)
    parent = build(spec, old).eval()
    _, shrunk = carried_into(spec, parent, old, {"conv0": 4, "conv3": 12})
    assert shrunk.first_channels == ("conv0",) and shrunk.by_importance == ("conv3",)
    _, grown = carried_into(spec, parent, old, {"conv0": 12, "conv3": 20})
    assert grown.fresh == ("conv0",) and grown.split == ("conv3",)


def test_an_inheriting_iteration_trains_with_the_regulariser_where_the_first_ended(
    tmp_path, monkeypatch, fashion_dir
):
    # iteration 0's ramp ends at (E - 1) / E of the rate; a fine-tune continues there (a
    # ramp over its own fraction of an epoch would leave the regulariser off)
    import importlib

    from netadjust.api import search

    search_module = importlib.import_module("netadjust.search")

    passed = []

    def recording_fit(*args, **kwargs):
        passed.append(kwargs.get("drop_progress"))
        return fit(*args, **kwargs)

    fit = search_module.fit
    monkeypatch.setattr(search_module, "fit", recording_fit)
    search(
        space="resnet20", width_mult=0.25, iterations=3, epochs=4, inherit=0.25, train_limit=200,
        val_limit=100, data_dir=str(fashion_dir), out=str(tmp_path / "run"), log=lambda *lines: None,
    )  # fmt: skip
    assert passed == [None, 0.75, 0.75]
