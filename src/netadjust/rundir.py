"""The run directory of a search, the one place that reads and writes it:

- ``config.json``: the ``SearchConfig`` (as its dataclasses' fields), the model settings
  the dataset decided, the starting widths, the number of processes, provenance and data sizes;
- ``history.jsonl``: one ``IterationRecord`` per finished iteration;
- ``final.json``: the ``FinalResult``;
- ``checkpoint.pt``: the current iteration's training state, written every epoch.

Resuming needs the same settings; ``completed_iterations`` checks that.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import AdjustRule, DataConfig, FurConfig, LatencyConfig, ModelSpec, Recipe, SearchConfig, Widths
from .errors import UserError
from .settings import from_record
from .store import append_jsonl, parse_jsonl, save_torch, user_path, write_json
from .version import __version__
from .wording import plural

CHECKPOINT = "checkpoint.pt"
RUN_FILES = ("config.json", "history.jsonl", "final.json", CHECKPOINT)
NOT_COMPARED = ("out", "device", "provenance", "data_sizes")  # may change between resumes


@dataclass(frozen=True, kw_only=True)
class IterationRecord:
    """One line of ``history.jsonl``: the network trained in one iteration, its FUR and
    the widths the adjustment chose for the next."""

    iteration: int
    widths: Widths
    macs: int
    params: int
    train: dict[str, float]  # the last epoch's loss, top-1, learning rate, ...
    val: dict[str, float]  # loss, top1, top5 on the held-out split
    test: dict[str, float]
    sensitivities: dict[str, float] | None = None  # f_i in the budget's measure
    drop_rates: dict[str, float] | None = None  # p_i
    clipped_drop_rates: list[str] | None = None  # widths whose p_i hit the maximum
    clean_val_loss: float | None = None
    loss_increase: dict[str, float] | None = None
    fur: dict[str, float]
    fur_method: str
    fur_halves: list[dict[str, float]] | None = None  # FUR of each half of the validation split
    fur_stability: dict[str, Any]  # split-half Spearman and grow/shrink overlaps
    k: int
    grown: list[str]
    shrunk: list[str]
    next_widths: Widths
    next_macs: int
    next_params: int | None = None
    next_excess: float | None = None  # (cost - budget) / cost of the next widths
    latency: float | None = None  # --budget latency: measured seconds per timed pass of widths
    next_latency: float | None = None  # and of next_widths
    seconds: dict[str, float]  # train, fur, adjust

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class FinalResult:
    """``final.json``: the searched widths beside the original ones, with their costs."""

    space: str
    model: ModelSpec
    widths: Widths
    macs: int
    params: int
    original_widths: Widths
    original_macs: int
    original_params: int | None = None
    budget: str = "macs"
    iterations: int | None = None
    latency: float | None = None  # --budget latency: seconds per timed pass, measured at the end
    original_latency: float | None = None
    latency_estimate: float | None = None  # the lookup table's estimate of ``latency``
    latency_table: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def parse_record(cls: type, value: Any, where: str):
    """A ``cls`` from a JSON object; one line naming the file when it does not fit."""
    if not isinstance(value, dict):
        raise UserError(f"{where} holds no JSON object where a record belongs; it is damaged")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    if not required <= set(value):
        missing = ", ".join(sorted(required - set(value))[:4])
        raise UserError(
            f"{where} lacks {missing}: it is damaged, or not a run directory of this version of netadjust"
        )
    known = {name: item for name, item in value.items() if name in fields}
    empty = [name for name, item in known.items() if item is None and "None" not in str(fields[name].type)]
    if empty:
        raise UserError(f"{where} holds null for {', '.join(empty[:4])}; it is damaged")
    try:
        if cls is FinalResult:
            known["model"] = ModelSpec(**known["model"])
        return cls(**known)
    except (TypeError, UserError) as error:
        raise UserError(f"{where} holds settings this version cannot read ({error}); it is damaged") from None


def read_json_file(path: Path, parse=json.loads):
    """``parse`` of the file's text; an unreadable or malformed file is a one-line UserError
    naming the file (and the line, for JSON)."""
    try:
        return parse(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path} is not valid JSON (line {error.lineno}: {error.msg}); it is damaged: "
            "restore or remove it"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path} ({getattr(error, 'strerror', None) or error})") from None


def read_run_settings(out: Path) -> dict:
    if not (out / "config.json").exists():
        raise UserError(f"{out} holds no search (no config.json); check the path")
    return read_json_file(out / "config.json")


def config_from_settings(settings: dict, out: str) -> SearchConfig:
    """The ``SearchConfig`` a ``config.json`` records (settings it lacks take their defaults)."""
    try:
        recorded = {key: value for key, value in settings.items() if key in SEARCH_FIELDS}
        return dataclasses.replace(from_record(SearchConfig, recorded), out=out)
    except (KeyError, TypeError, AttributeError) as error:
        raise UserError(
            f"{out}/config.json was not written by this version of netadjust ({error}); start a new search"
        ) from None


SEARCH_FIELDS = {f.name for f in dataclasses.fields(SearchConfig)}
# what a config.json must hold: runs of earlier versions lack the budget (then MACs), the
# latency settings and inherit (then none); out is the folder
SETTINGS_KEYS = (SEARCH_FIELDS - {"budget", "latency", "inherit", "out"}) | {"data_sizes", "provenance"}


@dataclass
class Run:
    """What a run directory holds: its settings, the iterations so far, the result if done."""

    path: Path
    settings: dict
    history: list[IterationRecord]
    final: FinalResult | None

    @property
    def config(self) -> SearchConfig:
        return config_from_settings(self.settings, str(self.path))

    @property
    def budget(self) -> str:
        return self.settings.get("budget", "macs")


def read_run(path: str | Path) -> Run:
    path = user_path(path)
    settings = read_run_settings(path)
    if not isinstance(settings, dict):
        raise UserError(f"{path}/config.json holds no JSON object where a record belongs; it is damaged")
    if not SETTINGS_KEYS <= set(settings):
        missing = ", ".join(sorted(SETTINGS_KEYS - set(settings))[:4])
        raise UserError(
            f"{path}/config.json lacks {missing}: it is damaged, or not a run directory of this "
            "version of netadjust"
        )
    history = read_history(path)
    final = None
    if (path / "final.json").exists():
        final = parse_record(FinalResult, read_json_file(path / "final.json"), f"{path}/final.json")
    return Run(path, settings, history, final)


def read_history(path: Path) -> list[IterationRecord]:
    if not (path / "history.jsonl").exists():
        return []
    lines = read_json_file(path / "history.jsonl", parse_jsonl)
    return [parse_record(IterationRecord, line, f"{path}/history.jsonl") for line in lines]


def extend_run(out: Path, iterations: int) -> str | None:
    """Let the search in ``out`` run to ``iterations`` in all (more than it was set to, or
    fewer, but not fewer than it has run); a finished search's ``final.json`` is kept as
    ``final-<its iterations>.json``. Returns a line saying what changed, None if nothing."""
    settings = read_run_settings(out)
    done, planned = len(read_history(out)), settings.get("iterations")
    if iterations < max(done, 1):
        raise UserError(f"--iterations is {iterations}, but {out} has run {done}; give more to extend it")
    if iterations == planned:
        return None
    said = f"{out}: {plural(planned, 'iteration')} set, now {iterations}"
    if (out / "final.json").exists():
        kept = out / f"final-{planned}.json"
        (out / "final.json").replace(kept)
        said += f"; the finished search's final.json kept as {kept.name}"
    write_json(out / "config.json", {**settings, "iterations": iterations})
    return said


def completed_iterations(out: Path, settings: dict, force: bool) -> list[IterationRecord]:
    """The history to continue from: [] for a new run; the recorded iterations when ``out``
    holds an unfinished run of the same settings. Anything else is refused unless ``force``,
    which clears the old run's files."""
    if not (out / "config.json").exists():
        leftovers = [name for name in RUN_FILES if (out / name).exists()]
        if leftovers and not force:
            raise UserError(
                f"{out} holds files of a search ({', '.join(leftovers)}) but no config.json; "
                "choose another --out, or pass --force to start it over"
            )
        for name in leftovers:
            (out / name).unlink()
        return []
    saved, compared = comparable(read_run_settings(out)), comparable(settings)
    differing = sorted(k for k in set(saved) | set(compared) if saved.get(k) != compared.get(k))
    finished = (out / "final.json").exists()
    if (differing or finished) and not force:
        why = f"other settings (differing: {', '.join(differing)})" if differing else "a finished search"
        raise UserError(f"{out} holds {why}; choose another --out, or pass --force to start it over")
    if differing or finished:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        return []
    return read_history(out)


def comparable(settings: dict) -> dict:
    """The settings a resume must match: runs of earlier versions lack the newer settings,
    which had their defaults then; decoding workers change only the speed."""
    kept = {k: v for k, v in settings.items() if k not in NOT_COMPARED}
    data = {**dataclasses.asdict(DataConfig()), **kept.get("data", {})}
    kept["data"] = {k: v for k, v in data.items() if k != "workers"}
    kept["recipe"] = {**dataclasses.asdict(Recipe()), **kept.get("recipe", {})}
    kept["rule"] = {**dataclasses.asdict(AdjustRule()), **kept.get("rule", {})}
    kept.setdefault("inherit", None)
    kept["latency"] = {**dataclasses.asdict(LatencyConfig()), **kept.get("latency", {})}
    # runs before the control variate existed ran without it, whatever today's default
    kept["fur"] = {**dataclasses.asdict(FurConfig()), "control_variate": False, **kept.get("fur", {})}
    return kept


def provenance(device: torch.device) -> dict:
    return {
        "netadjust": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
    }


def append_record(out: Path, record: IterationRecord) -> None:
    append_jsonl(out / "history.jsonl", record.to_json())


def write_final(out: Path, final: FinalResult, keep_checkpoint: bool = False) -> None:
    """The search's result; its checkpoint goes, but for an inheriting search: extended
    (``--resume --iterations N``), its next iteration starts from the last one's weights."""
    write_json(out / "final.json", final.to_json())
    if not keep_checkpoint:
        (out / CHECKPOINT).unlink(missing_ok=True)


def save_checkpoint(out: Path, iteration: int, widths: Widths, phase: str, state: dict) -> None:
    save_torch(out / CHECKPOINT, {"iteration": iteration, "phase": phase, "widths": widths, "train": state})


def load_checkpoint(out: Path, iteration: int, widths: Widths) -> dict | None:
    """The training state saved for this iteration and these widths, if any."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["iteration"] != iteration or saved["widths"] != widths:
        return None
    return saved["train"]
