"""FUR's expected loss rise to second order: no masks, so no mask noise.

Dropping width i multiplies channel c of every sample by delta_c = m_c / (1 - p), with
E[delta_c] = 1 and Var[delta_c] = p / (1 - p), independently per (sample, channel). Write
the loss of one sample as a function of per-channel multipliers s (s = 1: the clean
network) and expand around s = 1: the first-order term has zero mean, the channels are
independent, so

    E[loss rise] ~= 1/2 * p / (1 - p) * sum_c H_cc,    H_cc = d^2 loss / d s_c^2.

The derivation and the measurements that chose the default curvature are in
docs/fur-noise.md. With the model in eval mode, batch norm is affine and ReLU piecewise
linear, so the logits z are piecewise linear in s and H_cc is the Gauss-Newton term
J_c^T (diag(q) - q q^T) J_c (J_c = dz/ds_c, q the softmax): the second derivatives of the
network itself vanish almost everywhere. Three ways to get it, all from backward passes
through probes (one multiplier per sample and channel at every drop site), all widths at
once:

- ``exact``: one backward pass per class gives J; H_cc = sum_k q_k (J_ck - Jbar_c)^2.
- ``sampled``: labels y drawn from q; H_cc ~= g_c^2 with g the gradient of -log q_y; its
  expectation over y is the exact term; ``repeats`` draws per sample, one backward each.
- ``empirical``: the true label in place of the draw (the "empirical Fisher"); one
  backward pass, biased where the network is confident and right (g ~ 0 there).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .channel_drop import Site, keyed_uniform, on_site, per_channel, site_modules
from .config import CURVATURES

_LABEL_STREAM = 1 << 20  # keys the label draws apart from every width's masks


@contextmanager
def channel_probes(model: nn.Module, sites: Mapping[str, Site]) -> Iterator[dict[str, torch.Tensor]]:
    """Multiply each site's output by a ones tensor of shape (N, C) that requires grad; the
    dict yielded holds, after each forward pass, that pass's probe per width. A site called
    several times in one pass (a ``ChannelTap`` that tied blocks share) multiplies every
    call by the same probe: one multiplier per channel of the width, wherever it is read."""
    probes: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def probe(output: torch.Tensor) -> torch.Tensor:
            if name not in probes:
                probes[name] = torch.ones(output.shape[:2], device=output.device, requires_grad=True)
            return output * per_channel(probes[name], output).to(output.dtype)

        return probe

    handles = [model.register_forward_pre_hook(lambda module, inputs: probes.clear())]  # a new pass
    handles += [
        on_site(module, on_input, hook_for(name), last)
        for name, site in sites.items()
        for module, on_input, last in site_modules(model, name, site)
    ]
    try:
        yield probes
    finally:
        for handle in handles:
            handle.remove()


def probe_gradients(
    output: torch.Tensor, probes: dict[str, torch.Tensor], retain: bool
) -> list[torch.Tensor]:
    """d output / d probe for each width, float32 (zeros for a probe the output does not use)."""
    names = list(probes)
    grads = torch.autograd.grad(output, [probes[n] for n in names], retain_graph=retain, allow_unused=True)
    return [
        torch.zeros_like(probes[n]) if g is None else g.float() for n, g in zip(names, grads, strict=True)
    ]


def curvature_sums(
    logits: torch.Tensor,
    labels: torch.Tensor,
    samples: torch.Tensor,
    probes: dict[str, torch.Tensor],
    curvature: str,
    repeats: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Per width, sum_c H_cc summed over the even- and the odd-indexed samples, shape (2,)."""
    logits = logits.float()
    count = len(probes)
    if curvature == "exact":
        q = logits.softmax(1).detach()  # (N, K)
        per_class = [probe_gradients(logits[:, k].sum(), probes, retain=True) for k in range(logits.shape[1])]
        diagonals = []
        for i in range(count):
            jacobian = torch.stack([grads[i] for grads in per_class], dim=2)  # (N, C, K)
            mean = (jacobian * q[:, None, :]).sum(2, keepdim=True)
            diagonals.append(((jacobian - mean) ** 2 * q[:, None, :]).sum(2))
    elif curvature in ("sampled", "empirical"):
        draws = repeats if curvature == "sampled" else 1
        diagonals = [torch.zeros_like(probe, dtype=torch.float32) for probe in probes.values()]
        for draw in range(draws):
            if curvature == "sampled":
                u = keyed_uniform(seed, _LABEL_STREAM, torch.full_like(samples, draw), samples, 1)
                cumulative = logits.detach().softmax(1).cumsum(1)
                targets = torch.searchsorted(cumulative, u).clamp_(max=logits.shape[1] - 1).squeeze(1)
            else:
                targets = labels
            loss = F.cross_entropy(logits, targets, reduction="sum")
            for diagonal, grad in zip(
                diagonals, probe_gradients(loss, probes, retain=draw < draws - 1), strict=True
            ):
                diagonal += grad**2 / draws
    else:
        raise ValueError(f"unknown curvature {curvature!r}; choose one of {CURVATURES}")
    halves = samples % 2
    sums = {}
    for name, diagonal in zip(probes, diagonals, strict=True):
        per_sample = diagonal.double().sum(1)
        sums[name] = torch.zeros(2, dtype=torch.float64, device=per_sample.device).index_add_(
            0, halves, per_sample
        )
    return sums
