"""The lookup table of ``--budget latency``: each layer's time at the shape it runs at, kept
on disk per device and torch version (``~/.cache/netadjust/latency/`` or
``--latency-table``), each entry with the disagreement of its two repeats."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

from .errors import UserError
from .rundir import read_json_file
from .speed import Timing
from .store import write_json

TABLE_VERSION = 3  # 1 kept bare seconds per entry; 2 {"seconds", "spread"}; 3 names it "disagreement"
NOISY_ENTRY = 0.1  # a table entry whose repeats disagreed by more is timed again when used


def device_description(device: torch.device, threads: int = 0) -> str:
    """What a timing depends on besides the network: the processor and the threads it is
    timed with (0: torch's current number), or the GPU."""
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
    count = threads or torch.get_num_threads()
    return f"{name}, {count} thread" + ("s" if count > 1 else "")


def default_table_path(device: torch.device, threads: int = 0) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    slug = "".join(c if c.isalnum() else "-" for c in device_description(device, threads).lower())
    return cache / "netadjust" / "latency" / f"{slug}-torch{torch.__version__}.json"


class LatencyTable:
    """Layer timings of one device, on disk, each with the disagreement of its two repeats:
    an entry found noisy on disk is timed again (once per process, before it is first used)
    and the steadier timing kept; otherwise entries are added, never changed, so a process
    sees one time per layer and a resumed search ranks with the times it saw before. A
    table of an older version is timed anew."""

    def __init__(self, path: Path, device: torch.device, threads: int = 0):
        self.path, self.device, self.threads = path, device, threads
        self.description = device_description(device, threads)
        self.entries: dict[str, dict[str, float]] = {}
        self.added = 0
        self.timed_here: set[str] = set()
        if path.exists():
            self.entries = self._read()

    def _read(self) -> dict[str, dict[str, float]]:
        recorded = read_json_file(self.path)
        if not isinstance(recorded, dict) or not isinstance(recorded.get("entries"), dict):
            raise UserError(f"{self.path} is not a latency table of netadjust; give another --latency-table")
        where = (recorded.get("device"), recorded.get("torch"))
        if where != (self.description, torch.__version__):
            raise UserError(
                f"latency table {self.path} was measured on {where[0]} with torch {where[1]}, not on this "
                f"{self.description} with torch {torch.__version__}: give another --latency-table "
                "(times of one device do not hold on another)"
            )
        if recorded.get("version") == 2:  # the same figure under its former name
            return {
                key: {"seconds": entry["seconds"], "disagreement": entry["spread"]}
                for key, entry in recorded["entries"].items()
            }
        if recorded.get("version") != TABLE_VERSION:
            return {}  # entries without their disagreement: timed again, and the file rewritten
        return recorded["entries"]

    def needs_timing(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is None or (entry["disagreement"] > NOISY_ENTRY and key not in self.timed_here)

    def add(self, key: str, timing: Timing) -> None:
        entry = {"seconds": timing.seconds, "disagreement": timing.disagreement}
        if key in self.entries:
            entry = min(entry, self.entries[key], key=lambda kept: kept["disagreement"])
        self.timed_here.add(key)
        self.entries[key] = entry
        self.added += 1

    def seconds(self, key: str) -> float:
        return self.entries[key]["seconds"]

    def save(self) -> None:
        """Write the entries, merged with those another process wrote meanwhile (the steadier
        of two timings of one layer kept), under a lock: two searches may share the table."""
        if not self.added:
            return
        try:
            with _locked(self.path):
                on_disk = self._read() if self.path.exists() else {}
                for key, entry in on_disk.items():
                    if key not in self.entries or entry["disagreement"] < self.entries[key]["disagreement"]:
                        self.entries[key] = entry
                record = {
                    "version": TABLE_VERSION,
                    "device": self.description,
                    "torch": torch.__version__,
                    "entries": self.entries,
                }
                write_json(self.path, record)
        except OSError as error:
            raise UserError(
                f"cannot write the latency table {self.path} ({error.strerror or error}); "
                "give a writable --latency-table"
            ) from None
        self.added = 0


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path``'s lock file beside it (where the system has flock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the merge still keeps another process's entries
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
