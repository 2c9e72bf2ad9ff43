"""Optional TensorBoard scalars (``--tensorboard``): one event-file run per search iteration
for its training curves, and one run ``search`` for the per-iteration figures. TensorBoard
is not a dependency of netadjust; asking for it without it installed is refused early."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


def require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package; install it with pip install tensorboard"
        ) from None


class ScalarLog:
    """Writers under ``folder``, one per named run, opened on first use; does nothing when
    ``folder`` is None."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.writers = {}

    def add(self, run: str, values: dict[str, float], step: int) -> None:
        if self.folder is None:
            return
        if run not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[run] = SummaryWriter(log_dir=str(self.folder / run))
        for tag, value in values.items():
            self.writers[run].add_scalar(tag, value, step)
        self.writers[run].flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
