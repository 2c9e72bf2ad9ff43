"""Which precision trains faster on this CPU: bf16 autocast or fp32, per network.

bf16 autocast speeds dense convolutions up on a CPU with native bf16, but the backward of a
depthwise convolution in bf16 is far slower than in fp32 when it is strided or works on 1-2
pixels (as a MobileNet's deep layers do at 28 x 28). ``--precision auto`` therefore trains
networks with depthwise convolutions in fp32 on a CPU. This script measures the grounds:
SGD steps (batch 128, channels-last, random 28 x 28 one-channel images, train mode) in both
precisions, interleaved over ``--rounds`` rounds, medians; for the built-in spaces and, where
torchvision imports, two zoo MobileNets. Each line: images/s in bf16 and fp32, their ratio,
whether the network has a depthwise convolution and what ``auto`` picks. Then FUR (the
default bf16 FUR, T = 2, ``--fur-images`` test images, random weights) with the network in
NHWC, as FUR runs it, against NCHW, as it ran before, best of 2. Last line:
``depthwise fp32/bf16=<lowest>..<highest> dense fp32/bf16=<lowest>..<highest>
fur nchw/nhwc=<lowest>..<highest>``.

    .venv/bin/python bench/precision_speed.py [--rounds 5] [--threads 1] [--fur-images 500]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

from netadjust import fur
from netadjust.config import FurConfig
from netadjust.data import load
from netadjust.errors import UserError
from netadjust.spaces import ModelSpec, base_widths, build
from netadjust.train import autocast_dtype, has_depthwise

SPACES = (("resnet20", 1.0), ("resnet18-small", 0.25), ("mobilenetv2-small", 0.5), ("mnasnet-small", 0.5))
ZOO = (("torchvision:mobilenet_v3_small", {}), ("torchvision:mobilenet_v2", {"width_mult": 0.5}))
BATCH = 128
RECORD = Path(__file__).resolve().parent / "results" / "precision_speed.txt"


def networks() -> dict[str, torch.nn.Module]:
    """The measured networks by name: built-in spaces, then zoo models where they import (built
    as a search builds them, with their drop sites)."""
    models = {}
    for space, width_mult in SPACES:
        spec = ModelSpec(space, 10, 1, 28, width_mult)
        models[f"{space} x{width_mult}"] = build(spec, base_widths(spec))
    for reference, arguments in ZOO:
        spec = ModelSpec(
            "model", 10, 1, 28, model=reference, model_args=json.dumps(arguments) if arguments else None
        )
        try:
            models[f"{reference} {arguments or ''}".strip()] = build(spec)
        except UserError as error:  # torchvision missing: the spaces still answer
            print(f"skipped {reference}: {error}")
    return models


def fur_seconds(model: torch.nn.Module, images, info, layout: torch.memory_format) -> float:
    """Seconds of the default bf16 FUR (T = 2) on ``images``, the network in ``layout``; best of 2."""
    fur.BF16_MEMORY_FORMAT = layout
    config = FurConfig(repeats=2, bf16=True)
    ones = {name: 1.0 for name in model.drop_sites}
    return min(fur.estimate_fur(model, images, info, ones, config, seed=0).seconds for _ in range(2))


def steps_per_second(model: torch.nn.Module, bf16: bool, steps: int) -> float:
    """Images per second over ``steps`` SGD steps, after two unmeasured ones."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 1, 28, 28, generator=generator).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (BATCH,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return BATCH * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round and precision")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fur-images", type=int, default=500)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, 28 x 28, channels-last")
    ratios: dict[bool, list[float]] = {True: [], False: []}
    models = networks()
    for name, original in models.items():
        model = copy.deepcopy(original).train().to(memory_format=torch.channels_last)
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for bf16 in (True, False):
                rates[bf16].append(steps_per_second(model, bf16, args.steps))
        bf16_rate, fp32_rate = median(rates[True]), median(rates[False])
        depthwise = has_depthwise(model)
        auto = autocast_dtype("auto", cpu, trained=model) or torch.float32
        ratios[depthwise].append(fp32_rate / bf16_rate)
        print(
            f"{name}: bf16 {bf16_rate:,.0f} images/s, fp32 {fp32_rate:,.0f}, fp32/bf16 "
            f"{fp32_rate / bf16_rate:.2f}; depthwise {'yes' if depthwise else 'no'}; auto trains in {auto}"
        )
    _, test, info = load("fashion-mnist", args.data_dir)
    images, fur_ratios = test.subset(slice(0, args.fur_images)), []
    for name, model in models.items():
        nchw, nhwc = (
            fur_seconds(model, images, info, layout)
            for layout in (torch.contiguous_format, torch.channels_last)
        )
        fur_ratios.append(nchw / nhwc)
        print(
            f"{name}: FUR (bf16, T = 2, {len(images)} images) NCHW {nchw:.1f} s, "
            f"NHWC {nhwc:.1f} s, {nchw / nhwc:.2f}x"
        )
    spans = {kind: f"{min(r):.2f}..{max(r):.2f}" if r else "none" for kind, r in ratios.items()}
    print(
        f"depthwise fp32/bf16={spans[True]} dense fp32/bf16={spans[False]} "
        f"fur nchw/nhwc={min(fur_ratios):.2f}..{max(fur_ratios):.2f}"
    )


def recorded(text: str) -> dict[str, dict[str, float]]:
    """This script's printout read back: per network, fp32/bf16 training speed (``train``)
    and FUR's seconds in NCHW and NHWC with their ratio as printed (from unrounded seconds)."""
    found: dict[str, dict[str, float]] = {}
    for name, ratio in re.findall(r"^(.+?): bf16 .* fp32/bf16 ([0-9.]+);", text, re.MULTILINE):
        found.setdefault(name, {})["train"] = float(ratio)
    fur_line = r"^(.+?): FUR .* NCHW ([0-9.]+) s, NHWC ([0-9.]+) s, ([0-9.]+)x"
    for name, nchw, nhwc, ratio in re.findall(fur_line, text, re.MULTILINE):
        found.setdefault(name, {}).update(nchw=float(nchw), nhwc=float(nhwc), fur=float(ratio))
    return found


def documented(found: dict[str, dict[str, float]]) -> list[str]:
    """The phrases docs/performance.md quotes from the record."""
    mnv3, mnv2 = (
        found["torchvision:mobilenet_v3_small"],
        found["torchvision:mobilenet_v2 {'width_mult': 0.5}"],
    )
    small = [found[f"{space} x0.5"] for space in ("mobilenetv2-small", "mnasnet-small")]
    resnets = [found[name] for name in ("resnet20 x1.0", "resnet18-small x0.25")]

    def fur_span(records: list[dict[str, float]]) -> str:
        return "–".join(f"{bound(r['fur'] for r in records):.2f}" for bound in (min, max))

    return [
        f"fp32/bf16 training speed {mnv3['train']:.2f} for torchvision's MobileNetV3-Small, "
        f"{mnv2['train']:.2f} for MobileNetV2 ×0.5, {found['mnasnet-small x0.5']['train']:.2f} for the "
        f"built-in MnasNet-small, but {found['mobilenetv2-small x0.5']['train']:.2f} for the built-in "
        "MobileNetV2-small",
        "ResNet-20 and ResNet-18-small "
        + "–".join(f"{bound(r['train'] for r in resnets):.2f}" for bound in (min, max)),
        f"MobileNetV3-Small {mnv3['nchw']:.1f} → {mnv3['nhwc']:.1f} s ({mnv3['fur']:.1f}×), "
        f"MobileNetV2 ×0.5 {mnv2['fur']:.2f}×, the built-in MobileNetV2-/MnasNet-small "
        f"{fur_span(small)}×, ResNets {fur_span(resnets)}×",
    ]


if __name__ == "__main__":
    main()
