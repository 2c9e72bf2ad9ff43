"""Measured time as the budget (``--budget latency``).

The budget is the original network's measured time, and the rescale holds it by timing
whole networks: the one scale factor is bisected, a dozen timings of a second or less per
iteration. The sensitivities f_i, which need the time of a few channels of one width,
come from NetAdapt's lookup table instead: each layer (every module without children:
conv, batch norm, activation, linear, ...) timed once in isolation at the shape it runs
at, kept on disk per device, so a width's f_i is a difference of table sums. On a CPU the
isolated layers do not add up to the network (bench/latency_table.py measures by how
much), which is why the table only ranks and the budget is timed.

Times are of one forward pass in eval mode (``--latency-mode infer``) or one training step
in train mode (``train``: forward, backward and the SGD update of the weights), at
``--latency-batch`` images, in ``--latency-precision`` (fp32 unless asked: a deployment
figure) and the recipe's memory format, on ``--latency-threads`` CPU threads (one by
default: steady on a shared machine); bench/latency_train_mode.py checks the train-mode
figure against the training loop's own rate.
Every time is a low percentile of many short blocks in two repeats (speed.py), so sporadic
interruptions do not move it; the original's time is taken until two timings agree, so a
slowdown lasting a whole timing is outvoted, and a device whose timings never agree is
refused. The table records the device and torch version it was
measured with (a table of another device is refused, not reused) and how far each entry's
two repeats disagreed, so a layer timed in a noisy moment is timed again (``layer_table.py``).
Two words, two figures: a timing's *disagreement* is max / min - 1 of its two repeats; a
*spread* is the interquartile range of many rounds over their median (``speed.py``).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import LatencyConfig, ModelSpec, Widths
from .cost import measure, sensitivities
from .errors import UserError
from .layer_table import LatencyTable, default_table_path
from .spaces import build
from .speed import Clock, Timing, abba_ratio, time_work, using_threads
from .train import autocast_dtype

LATENCY_TOLERANCE = 0.03  # the rescale holds the measured time within 3% of the original's
LATENCY_FILL_SLACK = 0.01  # a rescaled time further under the budget is filled width by width


@dataclass
class LatencyModel:
    """A space's network timed on one device: whole, against the original network
    (``seconds``, the budget's measure) and estimated from the layer table (``estimate``:
    the layers summed, plus the constant they miss on the original network)."""

    spec: ModelSpec
    config: LatencyConfig
    device: torch.device
    latency_precision: str  # resolved: --latency-precision, or the recipe's for 'training'
    channels_last: bool
    table: LatencyTable
    overhead: float = 0.0  # seconds the layers' sum misses, from the original network
    _layers: dict[tuple, list[tuple[str, nn.Module, tuple[int, ...]]]] = field(default_factory=dict)
    original: Widths | None = None  # set by calibrate
    original_seconds: float = 0.0
    _ratios: dict[tuple, float] = field(default_factory=dict)  # time over the original's, timed here
    clock: Clock = time.perf_counter  # what every timing reads (a test's machine of its own)

    @property
    def dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.latency_precision, self.device)

    def calibrate(self, original: Widths) -> tuple[float, float]:
        """Set the overhead from the original network's measured time; return that time and
        how far the two timings it rests on lie apart. Timings of the original are taken
        until two agree within ``max_disagreement``, both steady within themselves (their two
        repeats agreeing too), and the faster is kept: a slowdown that lasts longer than one
        timing is outvoted, as a spike within one is by its low percentile. A device whose
        five timings never agree is refused."""
        limit = self.config.max_disagreement
        self.measure_network(original)  # the first timing of a process runs cold (measured: +30%)
        steady: list[float] = []
        for _ in range(5):
            timing = self.measure_network(original)
            if timing.disagreement <= limit:
                steady.append(timing.seconds)
            agreeing = _agreeing_pair(steady, limit)
            if agreeing is not None:
                break
        if agreeing is None:
            seen = ", ".join(f"{1e3 * seconds:.3f}" for seconds in sorted(steady)) or "none"
            raise UserError(
                f"five timings of the original network on {self.table.description} did not give two that "
                f"agree within --latency-max-disagreement {limit:.0%} (steady ones, ms: {seen}; the last "
                f"one's two repeats {timing.disagreement:.1%} apart): this device cannot be timed reliably "
                "now (other jobs running?); time it idle, raise --latency-max-disagreement, or use "
                "--budget macs"
            )
        seconds, apart = agreeing
        self.overhead = seconds - self.layers_sum(original)
        self.original, self.original_seconds, self._ratios = dict(original), seconds, {}
        self.table.save()
        return seconds, apart

    def seconds(self, widths: Widths) -> float:
        """The time of the network at ``widths``: the original's, times their ratio timed
        side by side (once per widths), which a shared machine's drift of several percent
        over minutes does not bias."""
        if widths == self.original:
            return self.original_seconds
        key = tuple(widths.items())
        if key not in self._ratios:
            self._ratios[key] = self._settled_ratio(widths)
        return self._ratios[key] * self.original_seconds

    def retimed(self, widths: Widths) -> int:
        """``nanoseconds`` timed afresh (and kept): a check independent of the timings that
        chose ``widths`` (``adjust.filled``)."""
        self._ratios.pop(tuple(widths.items()), None)
        return self.nanoseconds(widths)

    def _settled_ratio(self, widths: Widths) -> float:
        """The ratio of ``widths``' time to the original's, timed again (twice at most) while
        it lies within its own spread of 1, the budget, where the rescale decides: the
        median of the timings, not the one that happened to fall under it."""
        edge, ratios = 1.0, []
        for _ in range(3):
            ratio, spread = self.ratio(widths, self.original)
            ratios.append(ratio)
            if abs(ratio - edge) > spread * ratio:
                break
        return statistics.median(ratios)

    def ratio(self, widths: Widths, reference: Widths) -> tuple[float, float]:
        """The time of ``widths`` over that of ``reference``, timed in A B B A rounds, and
        the spread of the rounds' ratios."""
        with self._threads():
            return abba_ratio(
                self._network_pass(widths), self._network_pass(reference), self.device, clock=self.clock
            )

    def estimate(self, widths: Widths) -> float:
        """Seconds of one timed pass at ``widths``, from the table."""
        return self.layers_sum(widths) + self.overhead

    def nanoseconds(self, widths: Widths) -> int:
        """``seconds`` as a whole number: the budget measure the rescale holds."""
        return round(1e9 * self.seconds(widths))

    def layers_sum(self, widths: Widths) -> float:
        total = 0.0
        for index, (key, module, shape) in enumerate(self._traced(widths)):
            if self.table.needs_timing(key):
                self.table.add(key, self._time_layer(module, shape, first=index == 0))
            total += self.table.seconds(key)
        return total

    def sensitivities(self, widths: Widths) -> dict[str, float]:
        """``f_i = c_i dT/dc_i``, the slope a least-squares line through the table sums at
        ``c_i`` and 1 and 2 quarters of it either side (kernels make time step with the width,
        so one difference would be mostly the step, and one noisy entry would set it). A
        slope the table cannot resolve (zero or negative) gives the width its MACs' share of
        the time instead: a floor near zero would make its FUR arbitrarily large."""
        by_macs = sensitivities(self.spec, widths, "macs")
        seconds_per_mac = self.layers_sum(widths) / max(1, measure(self.spec, widths, "macs"))
        result = {}
        for name, c in widths.items():
            delta = max(1, c // 4)
            points = sorted({max(1, c + k * delta) for k in (-2, -1, 0, 1, 2)})
            times = [self.layers_sum({**widths, name: point}) for point in points]
            slope = statistics.linear_regression(points, times).slope
            result[name] = c * slope if slope > 0 else by_macs[name] * seconds_per_mac
        self.table.save()
        return result

    def measure_network(self, widths: Widths) -> Timing:
        """The timing of one pass of the whole network at ``widths``."""
        with self._threads():
            return time_work(self._network_pass(widths), self.device, clock=self.clock)

    def _network_pass(self, widths: Widths) -> Callable[[], None]:
        model = build(self.spec, widths).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        shape = (self.config.batch, self.spec.in_channels, self.spec.image_size, self.spec.image_size)
        return self._pass(model, shape, input_grad=False)

    def _context(self) -> str:
        return f"{self.config.mode}|batch {self.config.batch}|{self.dtype}|channels_last {self.channels_last}"

    def _traced(self, widths: Widths) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        """Each call of a module without children in one pass: its table key, the module
        (on the meta device) and its input shape."""
        cache_key = tuple(widths.items())
        if cache_key not in self._layers:
            calls: list[tuple[str, nn.Module, tuple[int, ...]]] = []
            context = self._context()

            def record(module: nn.Module, inputs: tuple, _output) -> None:
                shape = tuple(inputs[0].shape)
                # under autocast every layer but the first reads the lower precision
                first = "image input|" if not calls else ""
                key = f"{context}|{first}{type(module).__name__}({module.extra_repr()})|{list(shape)}"
                calls.append((key, module, shape))

            with torch.device("meta"):
                model = build(self.spec, widths).train(self.config.mode == "train")
            hooks = [
                module.register_forward_hook(record)
                for module in model.modules()
                if not list(module.children()) and module is not model
            ]
            shape = (self.config.batch, self.spec.in_channels, self.spec.image_size, self.spec.image_size)
            with torch.no_grad():
                model(torch.zeros(shape, device="meta"))
            for hook in hooks:
                hook.remove()
            if len(self._layers) > 4096:
                self._layers.clear()
            self._layers[cache_key] = calls
        return self._layers[cache_key]

    def _time_layer(self, meta_module: nn.Module, shape: tuple[int, ...], first: bool) -> Timing:
        module = _materialised(meta_module, self.device)
        if hasattr(module, "inplace"):
            module.inplace = False  # an in-place op on a leaf that needs its gradient is refused
        work = self._pass(module, shape, input_grad=not first, input_dtype=None if first else self.dtype)
        with self._threads():
            return time_work(work, self.device, blocks=8, block_seconds=0.002, clock=self.clock)

    def _threads(self):
        return using_threads(timing_threads(self.config, self.device))

    def _pass(
        self,
        module: nn.Module,
        shape: tuple[int, ...],
        input_grad: bool,
        input_dtype: torch.dtype | None = None,
    ) -> Callable[[], None]:
        """One timed pass of ``module`` on random input of ``shape`` and ``input_dtype``
        (float32 if None); in train mode with the input's gradient where ``input_grad``, as a
        layer inside a network computes it."""
        train = self.config.mode == "train"
        module.train(train)
        dtype = self.dtype
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=generator).to(self.device, input_dtype or torch.float32)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(train and input_grad)
        autocast = lambda: torch.autocast(  # noqa: E731
            self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        )

        def forward() -> None:
            with torch.no_grad(), autocast():
                module(x)

        if not train:
            return forward
        with autocast():
            gradient = torch.ones_like(module(x))
        parameters = [p for p in module.parameters() if p.requires_grad]
        wanted = [*([x] if input_grad else []), *parameters]
        if not wanted:  # a first layer without weights: its input's gradient stands in
            wanted = [x.detach().requires_grad_()]
            x = wanted[0]

        # the training step's update too (momentum and weight decay as the recipe's; a rate of
        # zero keeps the weights, and so the timings, fixed): its cost is per parameter, not per
        # image, and a small network's training loop pays it at every step
        optimizer = (
            torch.optim.SGD(parameters, lr=0.0, momentum=0.9, weight_decay=5e-4) if parameters else None
        )

        def forward_backward() -> None:
            with autocast():
                out = module(x)
            # the gradients returned, not added to .grad: no accumulation a network would not do
            gradients = torch.autograd.grad(out, wanted, gradient, allow_unused=True)
            if optimizer is not None:
                for parameter, grad in zip(
                    parameters, gradients[len(wanted) - len(parameters) :], strict=True
                ):
                    parameter.grad = grad
                optimizer.step()

        return forward_backward


def _materialised(meta_module: nn.Module, device: torch.device) -> nn.Module:
    """A real copy of a module built on the meta device, with finite values (uninitialised
    memory can hold denormals, which are slow)."""
    module = copy.deepcopy(meta_module).to_empty(device=device)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point():
                tensor.zero_()
            elif "var" in name:
                tensor.fill_(1.0)
            else:
                tensor.normal_(0, 0.1)
    return module


def _agreeing_pair(times: list[float], limit: float) -> tuple[float, float] | None:
    """The faster of the two closest neighbours among ``times`` when they lie within
    ``limit`` of each other, and how far apart they lie; None if no two do."""
    ordered = sorted(times)
    pairs = [(b / a - 1, a) for a, b in zip(ordered, ordered[1:], strict=False)]
    if not pairs or min(pairs)[0] > limit:
        return None
    apart, faster = min(pairs)
    return faster, apart


def timed_precision(config: LatencyConfig, recipe_precision: str) -> str:
    """The precision networks are timed in: ``--latency-precision``, or the recipe's own."""
    return recipe_precision if config.latency_precision == "training" else config.latency_precision


def timing_threads(config: LatencyConfig, device: torch.device) -> int:
    """The CPU threads timings use (``--latency-threads``); 0 (as they are) on a GPU."""
    return config.threads if device.type == "cpu" else 0


def latency_model(
    spec: ModelSpec, config: LatencyConfig, device: torch.device, recipe_precision: str, channels_last: bool
) -> LatencyModel:
    threads = timing_threads(config, device)
    path = Path(config.table).expanduser() if config.table else default_table_path(device, threads)
    precision = timed_precision(config, recipe_precision)
    return LatencyModel(spec, config, device, precision, channels_last, LatencyTable(path, device, threads))
