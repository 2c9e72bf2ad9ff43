"""What the channel-dropout regulariser costs a training epoch, in its three forms.

One process, ResNet-20 x1 at batch 128 on 3,072 random 32x32 images; each round trains
networks for two epochs and times the second (the regulariser's rate is 0 in the first):
the regulariser's first form (masks drawn with ``rand``, the activation multiplied in
float32 and cast back), its second (a Bernoulli mask scaled in the activation's dtype, the
scale a Python number rounded through ``.item()``, a generator of its own), as it is
now (the second's arithmetic with the scales and keep probabilities read from tensors and
the device's default generator, so that ``torch.compile`` traces it), and off. Prints the
medians over rounds and the ratios to "off".

    .venv/bin/python bench/regulariser_cost.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch

from gpu_speed import epoch_seconds, random_images
from netadjust.channel_drop import ChannelDrop, per_channel
from netadjust.config import Recipe
from netadjust.data import dataset_info
from netadjust.spaces import ModelSpec, build


def float32_round_trip(self: ChannelDrop, width_name: str, index: int):
    """The first hook: keep mask from ``rand``, the activation multiplied in float32."""

    def drop(output: torch.Tensor) -> torch.Tensor:
        rate = self.rates[width_name]
        if rate <= 0.0:
            return output
        keep = torch.rand(output.shape[:2], device=output.device) >= rate
        mask = keep.to(torch.float32) / (1.0 - rate)
        return (output.float() * per_channel(mask, output)).to(output.dtype)

    return drop


def python_scale(self: ChannelDrop, width_name: str, index: int):
    """The second hook: the scale rounded to the activation's dtype through ``.item()`` (once
    per rate and dtype), the keep probability a Python number, a generator of its own."""
    generator = torch.Generator().manual_seed(index)  # the CPU's: this benchmark runs there
    rounded = functools.lru_cache(maxsize=64)(lambda value, dtype: torch.tensor(value, dtype=dtype).item())

    def drop(output: torch.Tensor) -> torch.Tensor:
        rate = self.rates[width_name]
        if rate <= 0.0:
            return output
        scale = rounded(1.0 / (1.0 - rate), output.dtype)
        mask = torch.empty(output.shape[:2], dtype=output.dtype, device=output.device)
        mask = mask.bernoulli_(1.0 / scale, generator=generator)
        return output * per_channel(mask.mul_(scale), output)

    return drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    info = dataset_info("cifar10")
    train = random_images(128 * 24, 3, 32)
    spec = ModelSpec("resnet20", 10, 3, 32)
    current = ChannelDrop._hook
    variants = {
        "float32 round trip": (float32_round_trip, 0.05),
        "Python scale": (python_scale, 0.05),
        "now": (current, 0.05),
        "off": (current, 0.0),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (hook, rate) in variants.items():
                ChannelDrop._hook = hook
                torch.manual_seed(0)
                recipe = Recipe(epochs=2, batch_size=128, lr=0.1, drop_rate=rate)
                seconds[name].append(epoch_seconds(build(spec), train, info, recipe)[1])
    finally:
        ChannelDrop._hook = current
    off = statistics.median(seconds["off"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; second epoch of {len(train)} images"
    )
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"regulariser {name}: median {median:.3f} s ({', '.join(f'{v:.2f}' for v in values)}), "
            f"{median / off:.3f}x off"
        )


if __name__ == "__main__":
    main()
