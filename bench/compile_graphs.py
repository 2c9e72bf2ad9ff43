"""Into how many graphs does ``torch.compile`` cut a training step with the regulariser on?

A compiled step can only launch fewer kernels (docs/performance.md: the GPU step is bound
by the host) if dynamo captures it whole. This traces ResNet-20 x0.25 with the regulariser's
hooks over a few epochs, with dynamo's ``eager`` backend (tracing only, no code generation,
so it runs in seconds on a CPU), and prints the graphs captured, the graph breaks by reason
and the frames that fell back to eager (graph breaks in loops, the recompile limit). A
compile-friendly regulariser gives one graph while the rates are 0 and one for all later
epochs: no breaks and no recompiles from epoch to epoch.

    .venv/bin/python bench/compile_graphs.py
"""

from __future__ import annotations

import collections

import torch
from torch._dynamo.utils import counters

from netadjust.channel_drop import ChannelDrop, regulariser_rates
from netadjust.spaces import ModelSpec, build

EPOCHS, STEPS = 4, 3
CHAINED = "*** While handling this graph break, another graph break occurred: ***"


def main() -> None:
    torch.manual_seed(0)
    model = build(ModelSpec("resnet20", width_mult=0.25))
    sites = model.drop_sites
    step = torch.compile(model, backend="eager")
    images = torch.randn(8, 3, 32, 32)
    with ChannelDrop(model, sites) as drop:
        for epoch in range(EPOCHS):
            drop.set_rates(regulariser_rates(list(sites), 0.05, epoch / EPOCHS))
            for _ in range(STEPS):
                step(images).sum().backward()
            print(f"after epoch {epoch}: {counters['stats']['unique_graphs']} graphs captured")
    for source, title in (
        ("graph_break", "graph breaks by reason"),
        ("unimplemented", "what dynamo could not trace (A; then B: B while handling A)"),
    ):
        reasons = collections.Counter()
        for reason, count in counters[source].items():
            reasons["; then ".join(part.strip().splitlines()[0] for part in reason.split(CHAINED))] += count
        print(f"{title}:")
        for reason, count in reasons.most_common():
            print(f"  {count:3d}  {reason}")


if __name__ == "__main__":
    main()
