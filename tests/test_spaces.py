import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from netadjust.cost import Cost, model_cost
from netadjust.errors import UserError
from netadjust.spaces import ChannelTap, ModelSpec, base_widths, build, check_widths, get_space, space_names
from netadjust.spaces.mobilenet import MNASNET_B1, MOBILENET_V2


@pytest.mark.parametrize("space", space_names())
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_every_space_builds_and_runs(space, channels, size):
    spec = ModelSpec(space, num_classes=7, in_channels=channels, image_size=size, width_mult=0.25)
    model = build(spec).eval()
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert list(model.drop_sites) == list(base_widths(spec))
    for site in model.drop_sites.values():  # after a batch norm, a conv where none follows, or a tap
        assert isinstance(model.get_submodule(site), torch.nn.BatchNorm2d | torch.nn.Conv2d | ChannelTap)


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
    space = data.draw(
        st.sampled_from(
            [
                "resnet20",
                "plain20",
                "resnet18",
                "resnet18-small",
                "resnet34-small",
                "densenet40",
                "pyramidnet20",
                "mobilenetv2",
                "mobilenetv2-small",
                "mnasnet-small",
            ]
        )
    )
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


def test_imagenet_resnets_count_the_published_figures():
    imagenet = dict(num_classes=1000, in_channels=3, image_size=224)
    assert model_cost(ModelSpec("resnet18", **imagenet)) == Cost(macs=1_814_073_344, params=11_689_512)
    assert model_cost(ModelSpec("resnet34", **imagenet)).params == 21_797_672  # torchvision's count
    small = ModelSpec("resnet18-small", num_classes=10, in_channels=3, image_size=32)
    model = build(small)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # by hand: a stride-1 3x3 stem and no max-pool, so stage 1 runs at 32x32; stages 2-4 at
    # 16, 8, 4 pixels a side with two 3x3 convs per block and one 1x1 projection each

    def stage(pixels: int, c_in: int, c: int) -> int:
        return pixels * (9 * (c_in * c + 3 * c * c) + c_in * c)

    by_hand = 3 * 64 * 9 * 1024 + 4 * 64 * 64 * 9 * 1024
    by_hand += stage(16 * 16, 64, 128) + stage(8 * 8, 128, 256) + stage(4 * 4, 256, 512) + 512 * 10
    assert model_cost(small).macs == by_hand == 555_422_720


def test_twice_as_wide_resnet20_is_four_times_the_body():
    one = model_cost(ModelSpec("resnet20", num_classes=100)).macs
    two = model_cost(ModelSpec("resnet20", num_classes=100, width_mult=2)).macs
    stem, head = 3 * 16 * 9 * 32 * 32, 64 * 100  # scale by 2 (one side of each grows)
    assert one == 40_556_800
    assert two == 4 * (one - stem - head) + 2 * stem + 2 * head == 161_329_664


def test_every_drop_site_changes_the_output():
    from netadjust.channel_drop import ChannelDrop

    for space in ("resnet18", "resnet34-small", "densenet40", "pyramidnet20", "mobilenetv2-small", "mnasnet"):
        spec = ModelSpec(space, in_channels=3, image_size=32, width_mult=0.125)
        torch.manual_seed(0)
        model = build(spec)
        x = torch.randn(4, 3, 32, 32)
        # batch norm statistics of this batch: freshly initialised deep nets without
        # shortcuts across stages (MobileNetV2) otherwise shrink every input to nothing
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
        with torch.no_grad():
            model(x)
        clean = model.eval()(x)
        assert list(model.drop_sites) == list(base_widths(spec))
        with ChannelDrop(model, model.drop_sites) as drop:
            for name in model.drop_sites:
                drop.set_rates({name: 0.5})
                assert not torch.allclose(model(x), clean), name


def test_densenet40_counts_by_hand():
    """Every layer reads all earlier outputs: its conv's input is the running concatenation."""
    macs, params = 3 * 16 * 9 * 32 * 32, 3 * 16 * 9
    width, size = 16, 32
    for block in range(3):
        for _ in range(12):
            params += 2 * width + width * 12 * 9  # batch norm, 3x3 conv to 12 new channels
            macs += width * 12 * 9 * size * size
            width += 12
        if block < 2:  # transition: batch norm, 1x1 conv keeping the width, average pool
            params += 2 * width + width * width
            macs += width * width * size * size
            size //= 2
    params += 2 * width + width * 10 + 10
    macs += width * 10
    assert model_cost(ModelSpec("densenet40", num_classes=10, in_channels=3, image_size=32)) == Cost(
        macs, params
    )
    assert params == 1_019_722  # the paper's "1.0M"


def test_pyramidnet20_grows_additively_and_counts_by_hand():
    spec = ModelSpec("pyramidnet20", num_classes=100, in_channels=3, image_size=32)
    widths = list(base_widths(spec).values())
    grown = [16 + 48 * k // 9 for k in range(1, 10)]  # floor(16 + alpha k / N), alpha 48, N 9 blocks
    assert widths == [w for w in grown for _ in range(2)]
    model = build(spec)
    assert model.stage1.block0.conv1.in_channels == 16 and model.stage3.block2.conv2.out_channels == 64
    # by hand: stem; per block conv1 (stream -> w, strided in the first block of stages 2-3)
    # and conv2 (w -> w) at the block's output resolution; the head reads the last width
    macs, stream = 3 * 16 * 9 * 32 * 32, 16
    for k, width in enumerate(grown):
        pixels = (32 >> (k // 3)) ** 2
        macs += 9 * (stream * width + width * width) * pixels
        stream = width
    assert model_cost(spec).macs == macs + 64 * 100


def inverted_residual_macs(stages, size: int, stem_stride: int, classes: int) -> int:
    """MobileNetV2-style MACs by hand from a stage table: 1x1 expansion, k x k depthwise
    (one filter per channel), 1x1 projection; stem 3x3 to 32, last 1x1 conv to 1280."""
    side = size // stem_stride
    macs, stream = 3 * 32 * 9 * side * side, 32
    for stage in stages:
        for block in range(stage.blocks):
            hidden = stream * stage.expansion
            macs += stream * hidden * side * side if stage.expansion > 1 else 0
            side = side // stage.stride if block == 0 else side
            macs += hidden * stage.kernel**2 * side * side + hidden * stage.width * side * side
            stream = stage.width
    return macs + stream * 1280 * side * side + 1280 * classes


def test_mobilenetv2_and_mnasnet_count_by_hand_and_match_torchvision_params():
    imagenet = dict(num_classes=1000, in_channels=3, image_size=224)
    mobilenet = model_cost(ModelSpec("mobilenetv2", **imagenet))
    assert mobilenet.macs == inverted_residual_macs(MOBILENET_V2, 224, 2, 1000) == 300_774_272
    assert mobilenet.params == 3_504_872  # torchvision's mobilenet_v2
    mnasnet = model_cost(ModelSpec("mnasnet", **imagenet))
    assert mnasnet.macs == inverted_residual_macs(MNASNET_B1, 224, 2, 1000)
    assert mnasnet.params == 4_383_312  # torchvision's mnasnet1_0
    names = list(base_widths(ModelSpec("mobilenetv2", **imagenet)))
    assert names[:4] == ["stage1.out", "stage2.block0.expand", "stage2.out", "stage2.block1.expand"]
    assert len(names) == 16 + 7  # an expansion width per block with expansion > 1, one output per stage


def test_a_stage_output_width_leaves_the_whole_residual_stream():
    from netadjust.channel_drop import ChannelDrop

    spec = ModelSpec("mobilenetv2-small", in_channels=3, image_size=32, width_mult=0.5)
    torch.manual_seed(0)
    model = build(spec).eval()
    stage = model.stage4  # four blocks tied by residual additions
    outputs = []
    hooks = [block.register_forward_hook(lambda m, i, o: outputs.append(o)) for block in stage]
    with torch.no_grad(), ChannelDrop(model, model.drop_sites, seed=3) as drop:
        drop.set_rates({"stage4.out": 0.5})
        drop.use_keys(torch.zeros(2, dtype=torch.long), torch.arange(2))
        model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    dropped = outputs[0].abs().sum((2, 3)) == 0  # (sample, channel) removed at the first block
    assert 0 < dropped.float().mean() < 1
    for out in outputs[1:]:  # ... and still absent after every later block's addition
        assert torch.equal(out.abs().sum((2, 3)) == 0, dropped)
    widths = {**base_widths(spec), "stage4.out": 40, "stage4.block2.expand": 7}
    model = build(spec, widths)
    assert all(block.project[0].out_channels == 40 for block in model.stage4)
    assert model.stage5.block0.expand[0].in_channels == 40
    assert model.stage4.block2.depthwise[0].groups == 7 == model.stage4.block2.project[0].in_channels
