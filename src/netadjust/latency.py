"""Measured time as the budget (``--budget latency``).

The budget is the original network's measured time, and the rescale holds it by timing
whole networks: the one scale factor is bisected, a dozen timings of a second or less per
iteration. The sensitivities f_i, which need the time of a few channels of one width,
come from NetAdapt's lookup table instead: each layer (every module without children:
conv, batch norm, activation, linear, ...) timed once in isolation at the shape it runs
at, kept on disk per device, so a width's f_i is a difference of table sums. On a CPU the
isolated layers do not add up to the network (bench/latency_table.py measures by how
much), which is why the table only ranks and the budget is timed.

Times are of one forward pass in eval mode (``--latency-mode infer``) or one forward and
backward pass in train mode (``train``), at ``--latency-batch`` images, in the training
recipe's precision and memory format. The table records the device and torch version it
was measured with; a table of another device is refused, not reused.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import LatencyConfig, ModelSpec, Widths
from .errors import UserError
from .rundir import read_json_file
from .spaces import build
from .speed import relative_spread, timed, timed_together
from .store import write_json
from .train import autocast_dtype

LATENCY_TOLERANCE = 0.03  # the rescale holds the measured time within 3% of the original's
TABLE_VERSION = 1


def device_description(device: torch.device) -> str:
    """What a timing depends on besides the network: the processor and its threads, or the GPU."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def default_table_path(device: torch.device) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    slug = "".join(c if c.isalnum() else "-" for c in device_description(device).lower())
    return cache / "netadjust" / "latency" / f"{slug}-torch{torch.__version__}.json"


class LatencyTable:
    """Layer timings of one device, on disk: entries are added, never changed, so a resumed
    search ranks with the times it saw before."""

    def __init__(self, path: Path, device: torch.device):
        self.path, self.device = path, device
        self.description = device_description(device)
        self.entries: dict[str, float] = {}
        self.added = 0
        if path.exists():
            recorded = read_json_file(path)
            if not isinstance(recorded, dict) or not isinstance(recorded.get("entries"), dict):
                raise UserError(f"{path} is not a latency table of netadjust; give another --latency-table")
            where = (recorded.get("device"), recorded.get("torch"))
            if where != (self.description, torch.__version__):
                raise UserError(
                    f"latency table {path} was measured on {where[0]} with torch {where[1]}, not on this "
                    f"{self.description} with torch {torch.__version__}: give another --latency-table "
                    "(times of one device do not hold on another)"
                )
            self.entries = recorded["entries"]

    def add(self, key: str, seconds: float) -> None:
        self.entries[key] = seconds
        self.added += 1

    def save(self) -> None:
        """Write the entries, keeping any another process added meanwhile."""
        if not self.added:
            return
        on_disk = LatencyTable(self.path, self.device).entries if self.path.exists() else {}
        self.entries = {**self.entries, **on_disk}
        record = {
            "version": TABLE_VERSION,
            "device": self.description,
            "torch": torch.__version__,
            "entries": self.entries,
        }
        try:
            write_json(self.path, record)
        except OSError as error:
            raise UserError(
                f"cannot write the latency table {self.path} ({error.strerror or error}); "
                "give a writable --latency-table"
            ) from None
        self.added = 0


@dataclass
class LatencyModel:
    """A space's network timed on one device: whole, against the original network
    (``seconds``, the budget's measure) and estimated from the layer table (``estimate``:
    the layers summed, plus the constant they miss on the original network)."""

    spec: ModelSpec
    config: LatencyConfig
    device: torch.device
    precision: str
    channels_last: bool
    table: LatencyTable
    overhead: float = 0.0  # seconds the layers' sum misses, from the original network
    _layers: dict[tuple, list[tuple[str, nn.Module, tuple[int, ...]]]] = field(default_factory=dict)
    original: Widths | None = None  # set by calibrate
    original_seconds: float = 0.0
    _ratios: dict[tuple, float] = field(default_factory=dict)  # time over the original's, timed here

    @property
    def dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.precision, self.device)

    def calibrate(self, original: Widths) -> tuple[float, float]:
        """Set the overhead from the original network's measured time; return that time and
        its spread. A device whose timings spread more than ``max_spread`` is refused."""
        limit = self.config.max_spread
        self.measure_network(original)  # the first timing of a process runs cold (measured: +30%)
        for _ in range(3):  # a moment of noise is not a noisy device: up to two more tries
            measured, spread = self.measure_network(original)
            if spread <= limit:
                break
        if spread > limit:
            raise UserError(
                f"timings of the original network on {self.table.description} spread by {spread:.1%} between "
                f"rounds, more than --latency-max-spread {limit:.0%}: this device cannot be timed reliably "
                "now (other jobs running?); time it idle, raise --latency-batch, or use --budget macs"
            )
        self.overhead = measured - self.layers_sum(original)
        self.original, self.original_seconds, self._ratios = dict(original), measured, {}
        self.table.save()
        return measured, spread

    def seconds(self, widths: Widths) -> float:
        """The time of the network at ``widths``: the original's, times their ratio timed
        side by side (once per widths), which a shared machine's drift of several percent
        over minutes does not bias."""
        if widths == self.original:
            return self.original_seconds
        key = tuple(widths.items())
        if key not in self._ratios:
            self._ratios[key] = self.ratio(widths, self.original)[0]
        return self._ratios[key] * self.original_seconds

    def ratio(self, widths: Widths, reference: Widths) -> tuple[float, float]:
        """The time of ``widths`` over that of ``reference``, the median of rounds in which
        the two take turns, and the spread of the rounds' ratios."""
        works = [self._network_pass(widths), self._network_pass(reference)]
        mine, theirs = timed_together(works, self.device, rounds=9, round_seconds=0.03)
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        return statistics.median(ratios), relative_spread(ratios)

    def estimate(self, widths: Widths) -> float:
        """Seconds of one timed pass at ``widths``, from the table."""
        return self.layers_sum(widths) + self.overhead

    def nanoseconds(self, widths: Widths) -> int:
        """``seconds`` as a whole number: the budget measure the rescale holds."""
        return round(1e9 * self.seconds(widths))

    def layers_sum(self, widths: Widths) -> float:
        total = 0.0
        for index, (key, module, shape) in enumerate(self._traced(widths)):
            if key not in self.table.entries:
                self.table.add(key, self._time_layer(module, shape, first=index == 0))
            total += self.table.entries[key]
        return total

    def sensitivities(self, widths: Widths) -> dict[str, float]:
        """``f_i = c_i dT/dc_i`` from a central secant of a quarter of the width: kernels
        make time step with the width, so a one-channel difference would be mostly the
        step; never below a thousandth of the mean, so FUR's drop rates stay finite."""
        result = {}
        for name, c in widths.items():
            delta = max(1, c // 4)
            low = max(1, c - delta)
            after, before = {**widths, name: c + delta}, {**widths, name: low}
            result[name] = c * (self.layers_sum(after) - self.layers_sum(before)) / (c + delta - low)
        floor = max(1e-3 * statistics.fmean(abs(value) for value in result.values()), 1e-12)
        self.table.save()
        return {name: max(value, floor) for name, value in result.items()}

    def measure_network(self, widths: Widths) -> tuple[float, float]:
        """Measured seconds of one timed pass of the whole network at ``widths`` and the
        spread of the rounds."""
        return timed(self._network_pass(widths), self.device, rounds=11, round_seconds=0.05)

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

    def _time_layer(self, meta_module: nn.Module, shape: tuple[int, ...], first: bool) -> float:
        module = _materialised(meta_module, self.device)
        if hasattr(module, "inplace"):
            module.inplace = False  # an in-place op on a leaf that needs its gradient is refused
        work = self._pass(module, shape, input_grad=not first, input_dtype=None if first else self.dtype)
        seconds, _ = timed(work, self.device, rounds=5, round_seconds=0.002)
        return seconds

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
        wanted = [*([x] if input_grad else []), *(p for p in module.parameters() if p.requires_grad)]
        if not wanted:  # a first layer without weights: its input's gradient stands in
            wanted = [x.detach().requires_grad_()]
            x = wanted[0]

        def forward_backward() -> None:
            with autocast():
                out = module(x)
            # the gradients returned, not added to .grad: no accumulation a network would not do
            torch.autograd.grad(out, wanted, gradient, allow_unused=True)

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


def latency_model(
    spec: ModelSpec, config: LatencyConfig, device: torch.device, precision: str, channels_last: bool
) -> LatencyModel:
    path = Path(config.table).expanduser() if config.table else default_table_path(device)
    return LatencyModel(spec, config, device, precision, channels_last, LatencyTable(path, device))
