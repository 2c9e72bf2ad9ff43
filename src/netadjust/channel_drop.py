"""Channel dropout through forward hooks at named sites, so model code holds no dropout logic.

One controller serves both uses of the paper: the training-time regulariser (small rates on
every width) and FUR estimation (one width at a time, model in eval mode). A site is the
module after which a width's channels can be dropped (its batch norm); the hook multiplies
the site's output by a Bernoulli mask per (sample, channel), kept channels scaled by
1 / (1 - p) so the expected activation is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import nn

from .errors import UserError

_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash on int64 tensors; multipliers below 2**31 keep products < 2**63."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    return x ^ (x >> 16)


def keyed_uniform(
    seed: int, width_index: int, repeats: torch.Tensor, samples: torch.Tensor, channels: int
) -> torch.Tensor:
    """Uniform numbers in [0, 1) of shape (N, channels), each a function of
    (seed, width, repeat, sample index, channel) alone.

    The same sample gets the same mask whatever batch it sits in and whatever else is
    computed around it, so differently organised computations (the fast and the reference
    FUR paths, one process or several) draw identical masks.
    """
    device = samples.device
    key = _mix32(torch.tensor([(seed & _M32) ^ 0x9E3779B9], device=device))
    key = _mix32(key ^ width_index)
    per_sample = _mix32(_mix32(key ^ repeats.long()) ^ samples.long())  # (N,)
    bits = _mix32(per_sample[:, None] ^ torch.arange(channels, device=device)[None, :])
    return (bits >> 8).to(torch.float32) / float(1 << 24)  # 24 random bits, exact in float32


def regulariser_multipliers(
    rates: list[float], device: torch.device
) -> dict[torch.dtype, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Per activation dtype, every width's training-time scale s and keep probability 1 / s.

    s is 1 / (1 - rate) rounded to the dtype (bfloat16 rounds 1 / 0.7 up by 0.08%) and a
    channel is kept with probability 1 / s, a drop rate within 0.4% of the rate: so the
    activation is multiplied in its own dtype (no float32 copies of it, forward or backward)
    and the mean multiplier is exactly 1. Tensors, not Python numbers, so that a compiled
    training step reads each epoch's rates without recompiling and without a ``.item()``."""
    exact = 1.0 / (1.0 - torch.tensor(rates, dtype=torch.float64, device=device))
    tables = {}
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        scales = exact.to(dtype)
        tables[dtype] = (scales.unbind(), (1.0 / scales.float()).unbind())  # no indexing op per step
    return tables


Site = str | tuple[str, ...]  # a width's drop site: one module, or several that one mask serves
INPUT = ":input"  # a site named "layer:input" is the layer's input, not its output
LAST = ":last"  # ... and "layer:last" a tensor with its channels last (a channels-last layer norm)


def site_modules(model: nn.Module, width_name: str, site: Site) -> list[tuple[nn.Module, bool, bool]]:
    """The modules of a width's drop site (a user's model may tie several, e.g. the norms of
    every addend of a residual sum), each with whether its input (not its output) is masked
    and whether that tensor holds its channels last; a name that is no module is refused."""
    modules = []
    for name in (site,) if isinstance(site, str) else site:
        last = name.endswith(LAST)
        on_input = name.removesuffix(LAST).endswith(INPUT)
        module_name = name.removesuffix(LAST).removesuffix(INPUT)
        try:
            modules.append((model.get_submodule(module_name), on_input, last))
        except AttributeError:
            raise UserError(
                f"drop site {module_name!r} of width {width_name!r} is not a module of the model"
            ) from None
    return modules


def on_site(module: nn.Module, on_input: bool, multiply, last: bool = False):
    """A hook that replaces the module's output, or its input, by ``multiply`` of it; a
    tensor with its channels last is seen by ``multiply`` with them at dimension 1."""
    if last:
        multiply = functools.partial(channels_first, multiply)
    if on_input:
        return module.register_forward_pre_hook(lambda m, inputs: (multiply(inputs[0]), *inputs[1:]))
    return module.register_forward_hook(lambda m, inputs, output: multiply(output))


def channels_first(multiply, tensor: torch.Tensor) -> torch.Tensor:
    return multiply(tensor.movedim(-1, 1)).movedim(1, -1)


def per_channel(values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """(N, C) values shaped to multiply ``output`` (N, C, ...): maps or a linear layer's features."""
    return values.view(*values.shape, *[1] * (output.dim() - 2))


class ChannelDrop:
    """Hooks on the drop sites of ``model``; rates are set per width name, 0 by default.

    Masks are drawn from the default generator of the activation's device (training: the
    caller seeds it, and ``torch.compile`` traces the whole step, hooks included), or, once
    ``use_keys`` has named the repeat and sample index of every row of the coming batch,
    from ``keyed_uniform`` with ``seed`` (FUR estimation).
    """

    def __init__(self, model: nn.Module, sites: Mapping[str, Site], seed: int = 0):
        self.model = model
        self.sites = dict(sites)
        self.rates: dict[str, float] = {name: 0.0 for name in sites}
        self.seed = seed
        self.keys: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dropping = {name: False for name in sites}  # booleans: a compiled step guards on them
        self._multipliers: dict[torch.dtype, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}
        self._handles = []
        for index, (width_name, site) in enumerate(sites.items()):
            for module, on_input, last in site_modules(model, width_name, site):
                self._handles.append(on_site(module, on_input, self._hook(width_name, index), last))

    def _hook(self, width_name: str, index: int):
        def drop(output: torch.Tensor) -> torch.Tensor:
            if not self._dropping[width_name]:
                return output  # untouched
            if self.keys is None:
                scales, keeps = self._multipliers[output.dtype]
                mask = torch.empty(output.shape[:2], dtype=output.dtype, device=output.device)
                mask = mask.bernoulli_(keeps[index]).mul_(scales[index])
                return output * per_channel(mask, output)
            mask = self.keyed_mask(width_name, output.shape[1])
            return (output.float() * per_channel(mask, output)).to(output.dtype)

        return drop

    def keyed_mask(self, width_name: str, channels: int) -> torch.Tensor:
        """The multipliers (rows, channels) the hook applies to width ``width_name`` for the
        rows ``use_keys`` named: 0 or 1 / (1 - p). In float32: 1 / (1 - p) rounded to
        bfloat16 would bias every kept channel by up to 0.4%, a bias on FUR's small loss
        differences."""
        rate = self.rates[width_name]
        index = list(self.sites).index(width_name)
        keep = keyed_uniform(self.seed, index, *self.keys, channels) >= rate
        return keep.to(torch.float32) / (1.0 - rate)

    def use_keys(self, repeats: torch.Tensor, samples: torch.Tensor) -> None:
        """Key the masks of the next forward passes by (repeat, sample index) per row."""
        self.keys = (repeats, samples)

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """Set the given widths' rates and zero all others."""
        unknown = set(rates) - set(self.rates)
        if unknown:
            raise KeyError(f"no drop site for widths {sorted(unknown)}")
        for name in self.rates:
            rate = float(rates.get(name, 0.0))
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"drop rate {rate} of {name!r} outside [0, 1)")
            self.rates[name] = rate
            self._dropping[name] = rate > 0.0
        if self.keys is None:  # keyed masks (FUR) need no tables, nor a copy to the device per width
            device = next(self.model.parameters(), torch.empty(0)).device
            self._multipliers = regulariser_multipliers(list(self.rates.values()), device)

    def remove(self) -> None:
        """Detach the hooks; the model is plain again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ChannelDrop:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def regulariser_rates(
    widths: list[str], base_rate: float, progress: float, depth_ramp: bool = True
) -> dict[str, float]:
    """Training-time rates of the reference: ramped by the training's ``progress`` (epoch /
    epochs, from 0) and (unless not ``depth_ramp``, its ImageNet search) by depth.

    Width i (0-based, forward order, L widths) gets ``base_rate * progress * (i+1)/L``.
    """
    count = len(widths)
    return {
        name: base_rate * progress * ((index + 1) / count if depth_ramp else 1.0)
        for index, name in enumerate(widths)
    }
