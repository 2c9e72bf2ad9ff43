"""Channel dropout through forward hooks at named sites, so model code holds no dropout logic.

One controller serves both uses of the paper: the training-time regulariser (small rates on
every width) and FUR estimation (one width at a time, model in eval mode). A site is the
module after which a width's channels can be dropped (its batch norm); the hook multiplies
the site's output by a Bernoulli mask per (sample, channel), kept channels scaled by
1 / (1 - p) so the expected activation is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .errors import UserError


def bernoulli_mask(
    shape: tuple[int, int], rate: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Mask of ``shape`` (N, C): 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    keep = torch.rand(shape, generator=generator, device=device) >= rate
    return keep.to(torch.float32) / (1.0 - rate)


class ChannelDrop:
    """Hooks on the drop sites of ``model``; rates are set per width name, 0 by default."""

    def __init__(self, model: nn.Module, sites: Mapping[str, str], generator: torch.Generator | None = None):
        self.rates: dict[str, float] = {name: 0.0 for name in sites}
        self.generator = generator
        self._handles = []
        for width_name, module_name in sites.items():
            try:
                module = model.get_submodule(module_name)
            except AttributeError:
                raise UserError(
                    f"drop site {module_name!r} of width {width_name!r} is not a module of the model"
                ) from None
            self._handles.append(module.register_forward_hook(self._hook(width_name)))

    def _hook(self, width_name: str):
        def drop(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
            rate = self.rates[width_name]
            if rate <= 0.0:
                return None  # leave the output untouched
            mask = bernoulli_mask(output.shape[:2], rate, self.generator, output.device)
            return output * mask.to(output.dtype)[:, :, None, None]

        return drop

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """Set the given widths' rates and zero all others."""
        for name in self.rates:
            rate = float(rates.get(name, 0.0))
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"drop rate {rate} of {name!r} outside [0, 1)")
            self.rates[name] = rate
        unknown = set(rates) - set(self.rates)
        if unknown:
            raise KeyError(f"no drop site for widths {sorted(unknown)}")

    def remove(self) -> None:
        """Detach the hooks; the model is plain again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ChannelDrop:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def regulariser_rates(widths: list[str], base_rate: float, epoch: int, epochs: int) -> dict[str, float]:
    """Training-time rates of the reference: ramped by epoch and by depth.

    Width i (0-based, forward order, L widths) gets ``base_rate * epoch/epochs * (i+1)/L``.
    """
    count = len(widths)
    return {name: base_rate * epoch / epochs * (index + 1) / count for index, name in enumerate(widths)}
