"""Words for messages: counts (``1 epoch``, ``3 epochs``), one-line errors, progress bars."""

import sys


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def after_bar() -> str:
    """A newline where a progress bar may hold the terminal's current line, else nothing."""
    return "\n" if sys.stderr.isatty() else ""


def one_line(message: str) -> str:
    """Escape control characters (a user's argument may hold any) to keep the message one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
