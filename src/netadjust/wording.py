"""Words for messages: counts (``1 epoch``, ``3 epochs``), one-line errors, progress bars,
and the command as it can be run here."""

import os
import shlex
import shutil
import sys
from pathlib import Path


def invocation() -> str:
    """How to run netadjust again from here, for the commands messages suggest: ``netadjust``
    where that name on the PATH is this installation; else the path this process was started
    by (``.venv/bin/netadjust`` when the virtual environment is not activated), or
    ``python -m netadjust`` where no ``netadjust`` of that python is on the PATH."""
    program = Path(sys.argv[0])
    found = shutil.which("netadjust")
    if program.name != "netadjust":  # started as python -m netadjust (by torchrun, or by hand)
        if found and Path(found).absolute().parent == Path(sys.executable).absolute().parent:
            return "netadjust"  # that python's own netadjust is the one on the PATH
        return f"{shlex.quote(sys.executable)} -m netadjust"
    if found and Path(found).resolve() == program.resolve():
        return "netadjust"
    relative = os.path.relpath(program.resolve())
    return shlex.quote(relative if not relative.startswith("..") else str(program.resolve()))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def after_bar() -> str:
    """A newline where a progress bar may hold the terminal's current line, else nothing."""
    return "\n" if sys.stderr.isatty() else ""


def one_line(message: str) -> str:
    """Escape control characters (a user's argument may hold any) to keep the message one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
