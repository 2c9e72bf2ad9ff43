"""What ``netadjust search --resume RUN_DIR`` does with the flags given beside it: the run's
recorded settings win, ``--iterations`` extends a search (or ends it sooner), and every
other setting given is named as ignored; a finished search is refused unless extended."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import SearchConfig
from .errors import UserError
from .rundir import extend_run, read_run_settings
from .settings import known_settings
from .store import user_path
from .wording import plural

RESUME_TAKES = {"device", "iterations"}  # the flags --resume applies; it keeps every other setting


def resume_notes(args: argparse.Namespace) -> None:
    """Before a resume: apply ``--iterations`` (a search extended, or ended sooner) and say
    which given flags it ignores."""
    given = sorted(name for name in known_settings(SearchConfig) if getattr(args, name, None) is not None)
    ignored = [name for name in given if name not in RESUME_TAKES]
    ignored += [
        name
        for name in ("preset", "widths")
        if any(token == f"--{name}" or token.startswith(f"--{name}=") for token in args.argv)
    ]
    if ignored:
        print(
            f"netadjust: --resume continues {args.resume} with its recorded settings, so it ignores "
            f"{', '.join('--' + name.replace('_', '-') for name in ignored)} (it takes --iterations and "
            "--device); start a new search with --out to change them",
            file=sys.stderr,
        )
    if args.iterations is not None:
        changed = extend_run(user_path(args.resume), args.iterations)
        if changed:
            print(f"netadjust: {changed}", file=sys.stderr)


def refuse_finished(out: Path, iterations: int | None) -> None:
    """A finished search has nothing to resume unless ``--iterations`` extends it."""
    if not (out / "final.json").exists():
        return
    planned = read_run_settings(out).get("iterations")
    if iterations is None or iterations == planned:
        raise UserError(
            f"{out} holds a finished search of {plural(planned, 'iteration')}: extend it with "
            f"`--resume {out} --iterations N` (N > {planned}), or use its result ({out}/final.json)"
        )
