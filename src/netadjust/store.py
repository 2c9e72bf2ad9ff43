"""Run-directory files: JSON a person can read, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import UserError


def write_json(path: Path, value) -> None:
    """Write ``value`` as JSON so that a crash leaves either the old file or the new one."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: Path, data: bytes) -> None:
    write_through_path(path, lambda temporary: temporary.write_bytes(data))


def save_torch(path: Path, value) -> None:
    """``torch.save`` with the same guarantee as ``write_json``."""
    write_through_path(path, lambda temporary: torch.save(value, temporary))


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM back while a file is replaced; they arrive right after."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_through_path(path: Path, write: Callable[[Path], None], hold_signals: bool = True) -> None:
    """The one way files are written: ``write`` fills a temporary file beside ``path``, which
    is fsynced and renamed over ``path``, so a crash leaves the old file or the new one;
    SIGINT and SIGTERM wait until it is done (unless not ``hold_signals``: a download of
    minutes stays interruptible). The file follows the umask, as any other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _signals_deferred() if hold_signals else contextlib.nullcontext():
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            write(Path(temporary))
            with open(temporary, "rb+") as file:
                os.chmod(file.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def append_jsonl(path: Path, record: dict) -> None:
    """Add one line; the file is rewritten atomically (it holds one line per iteration)."""
    old = path.read_text() if path.exists() else ""
    write_text(path, old + json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    return parse_jsonl(path.read_text())


def parse_jsonl(text: str) -> list:
    """One JSON value per non-empty line; a decoding error carries the file's line number."""
    records, offset = [], 0
    for line in text.splitlines(keepends=True):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise json.JSONDecodeError(error.msg, text, offset + error.pos) from None
        offset += len(line)
    return records


def read_widths_file(path: str | Path) -> tuple[dict[str, int], dict, dict]:
    """A widths file: ``{name: int}``, or a ``final.json`` written by a search (or the
    ``widths.json`` of ``netadjust export``, which has its shape).

    Returns the widths, the model settings the file records (space, width multiplier,
    padding, input, your model's reference; a plain widths file none) and the cost it
    records of that network (``macs`` and ``params``; a plain widths file none).
    """
    path = user_path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"widths file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read widths file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UserError(
            f"widths file {path} is not JSON ({error.msg} at line {error.lineno}); fix it"
        ) from None
    model, cost = {}, {}
    if isinstance(value, dict) and isinstance(value.get("widths"), dict):
        model = value.get("model") if isinstance(value.get("model"), dict) else {}
        cost = {key: value[key] for key in ("macs", "params") if isinstance(value.get(key), int)}
        value = value["widths"]
    if not isinstance(value, dict):
        raise UserError(f"widths file {path} must hold a JSON object {{width name: channels}}")
    return value, model, cost


def user_path(value: str | Path) -> Path:
    """A path as the user wrote it, ``~`` expanded as a shell would."""
    return Path(value).expanduser()


def check_writable(directory: Path) -> None:
    """Refuse an output directory that cannot be created or written, before any work."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".probe.")
        probe.close()
    except OSError as error:
        raise UserError(f"cannot write to {directory} ({error.strerror}); choose another --out") from None
