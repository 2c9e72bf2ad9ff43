import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from netadjust.errors import UserError
from netadjust.spaces import ModelSpec, base_widths, build, check_widths, get_space, space_names


@pytest.mark.parametrize("space", space_names())
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_every_space_builds_and_runs(space, channels, size):
    spec = ModelSpec(space, num_classes=7, in_channels=channels, image_size=size, width_mult=0.25)
    model = build(spec).eval()
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert list(model.drop_sites) == list(base_widths(spec))
    for site in model.drop_sites.values():
        assert isinstance(model.get_submodule(site), torch.nn.BatchNorm2d)


def test_width_names_are_readable_and_in_forward_order():
    names = list(base_widths(ModelSpec("resnet20")))
    assert names[:3] == ["stage1.block0.conv1", "stage1.block0.conv2", "stage1.block1.conv1"]
    assert names[-1] == "stage3.block2.conv2"
    assert len(names) == 18
    assert len(base_widths(ModelSpec("resnet110"))) == 108


def test_conv_widths_follow_the_mapping():
    spec = ModelSpec("resnet20", in_channels=1, image_size=28)
    widths = {**base_widths(spec), "stage2.block1.conv1": 5, "stage3.block0.conv2": 70}
    model = build(spec, widths)
    assert model.stage2.block1.conv1.out_channels == 5
    assert model.stage2.block1.conv2.in_channels == 5
    assert model.stage3.block0.conv2.out_channels == 70


def test_max_padding_keeps_the_stream_as_wide_as_the_widest_output():
    spec = ModelSpec("resnet20", in_channels=1, image_size=28, padding="max")
    widths = {**base_widths(spec), "stage1.block0.conv2": 20, "stage1.block1.conv2": 12}
    model = build(spec, widths)
    assert model.stage1.block1.conv1.in_channels == 20
    assert model.stage1.block2.conv1.in_channels == 20  # 12 < 20: stays 20
    local = build(ModelSpec("resnet20", in_channels=1, image_size=28, padding="local"), widths)
    assert local.stage1.block2.conv1.in_channels == 12
    x = torch.randn(2, 1, 28, 28)
    assert local.eval()(x).shape == model.eval()(x).shape == (2, 10)


def test_plain_net_has_no_shortcut():
    spec = ModelSpec("plain20", in_channels=1, image_size=28)
    model = build(spec).eval()
    block = model.stage1.block0
    x = torch.randn(1, 16, 28, 28)
    # zeroing the last BN's affine output leaves only the shortcut: zero for a plain block
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    assert torch.count_nonzero(block(x)) == 0


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_random_widths_build_and_run(data):
    space = data.draw(st.sampled_from(["resnet20", "plain20"]))
    padding = data.draw(st.sampled_from(["max", "local"]))
    spec = ModelSpec(
        space, in_channels=3, image_size=data.draw(st.sampled_from([17, 28, 32])), padding=padding
    )
    widths = {name: data.draw(st.integers(1, 24)) for name in base_widths(spec)}
    out = build(spec, widths).eval()(torch.randn(2, 3, spec.image_size, spec.image_size))
    assert out.shape == (2, 10)


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(UserError, match="resnet20"):
        get_space("vgg16")


def test_any_depth_of_the_form_6n_plus_2():
    assert len(base_widths(ModelSpec("resnet26"))) == 24
    assert len(base_widths(ModelSpec("plain32"))) == 30
    for bad in ("resnet21", "plain2", "resnet0"):
        with pytest.raises(UserError, match="6n\\+2"):
            get_space(bad)


def test_bad_widths_are_refused():
    spec = ModelSpec("resnet20")
    good = base_widths(spec)
    with pytest.raises(UserError, match="unknown"):
        check_widths(spec, {**good, "stage9.conv": 3})
    with pytest.raises(UserError, match="miss"):
        check_widths(spec, dict(list(good.items())[:-1]))
    for bad in (0, -3, 2.5, "16", True):
        with pytest.raises(UserError, match="positive integers"):
            check_widths(spec, {**good, "stage1.block0.conv1": bad})
