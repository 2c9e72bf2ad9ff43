import pytest
import torch
from torch import nn

from netadjust.channel_drop import ChannelDrop, regulariser_rates
from netadjust.errors import UserError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_masks_are_per_sample_and_channel_with_inverse_keep_scaling():
    model = Tiny().eval()
    x = torch.randn(400, 2, 3, 3)
    clean = model(x)
    torch.manual_seed(0)  # the regulariser draws from the default generator
    with ChannelDrop(model, {"w": "bn"}) as drop:
        drop.set_rates({"w": 0.25})
        dropped = model(x)
    # each (sample, channel) plane is either all zero or the clean plane times 1 / (1 - p)
    zero = (dropped == 0).all(3).all(2)  # (N, C)
    scaled = torch.isclose(dropped, clean / 0.75, rtol=1e-5, atol=1e-6).all(3).all(2)
    assert (zero | scaled).all()
    dropped_share = zero.float().mean().item()
    assert abs(dropped_share - 0.25) < 0.04  # 2400 draws: 4.5 standard deviations
    assert len({tuple(row.tolist()) for row in zero[:20]}) > 1  # masks differ between samples


def test_expected_activation_is_unchanged():
    model = Tiny().eval()
    x = torch.randn(1, 2, 1, 1).expand(20000, 2, 1, 1)
    clean = model(x)[0]
    torch.manual_seed(1)
    with ChannelDrop(model, {"w": "bn"}) as drop:
        drop.set_rates({"w": 0.4})
        mean = model(x).mean(0)
    assert torch.allclose(mean, clean, rtol=0.05, atol=0.02)


def test_rate_zero_is_the_identity_and_hooks_go_away():
    model = Tiny().eval()
    x = torch.randn(8, 2, 4, 4)
    clean = model(x)
    drop = ChannelDrop(model, {"w": "bn"})
    assert torch.equal(model(x), clean)
    drop.set_rates({"w": 0.5})
    assert not torch.equal(model(x), clean)
    drop.remove()
    assert torch.equal(model(x), clean)


def test_sites_are_resolved_by_name():
    with pytest.raises(UserError, match="nothere"):
        ChannelDrop(Tiny(), {"w": "nothere"})
    drop = ChannelDrop(Tiny(), {"w": "bn"})
    with pytest.raises(KeyError):
        drop.set_rates({"other": 0.1})
    with pytest.raises(ValueError):
        drop.set_rates({"w": 1.0})


def test_regulariser_ramps_by_epoch_and_depth():
    rates = regulariser_rates(["a", "b", "c", "d"], 0.05, progress=5 / 10)
    assert rates == pytest.approx({"a": 0.00625, "b": 0.0125, "c": 0.01875, "d": 0.025})
    assert set(regulariser_rates(["a", "b"], 0.05, 0 / 10).values()) == {0.0}
    # the reference's ImageNet search (--layerd=F): the same rate at every depth
    assert regulariser_rates(["a", "b", "c"], 0.05, 5 / 10, depth_ramp=False) == pytest.approx(
        {"a": 0.025, "b": 0.025, "c": 0.025}
    )


def test_bfloat16_activations_are_scaled_in_bfloat16_without_the_bias_of_a_bfloat16_scale():
    # 1 / (1 - 0.3) = 1.428571 is 1.4296875 in bfloat16 (+0.08%); keeping each channel with
    # probability 1 / 1.4296875 makes the mean multiplier 1. On 16M channels its standard
    # error is 0.00016, so 3 of them (0.0005) tell it from the biased 1.00078
    site = nn.Identity()
    x = torch.ones(400_000, 40, 1, 1, dtype=torch.bfloat16)
    torch.manual_seed(0)
    with ChannelDrop(site, {"w": ""}) as drop:
        drop.set_rates({"w": 0.3})
        dropped = site(x)
    assert dropped.dtype == torch.bfloat16
    assert set(dropped.unique().tolist()) == {0.0, 1.4296875}
    assert dropped.double().mean().item() == pytest.approx(1.0, abs=0.0005)


def test_compiled_training_with_the_regulariser_is_one_graph_whatever_the_epochs_rates():
    # a compiled step launches fewer kernels only if dynamo captures it whole: the hooks must
    # not break the graph, and each epoch's new rates must not recompile it (rates 0 skip the
    # masks: that is the one other graph)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6)
    )
    step = torch.compile(model, backend="eager")  # dynamo's tracing alone
    x = torch.randn(4, 2, 8, 8)
    with ChannelDrop(model, {"a": "1", "b": "4"}) as drop:
        for epoch in range(5):
            drop.set_rates(regulariser_rates(["a", "b"], 0.3, epoch / 5))
            for dtype in (torch.bfloat16, None):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                    step(x).float().sum().backward()
    torch._dynamo.reset()
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 4  # (rates 0, rates on) x (bf16, float32)
