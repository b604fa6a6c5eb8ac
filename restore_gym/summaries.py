"""TensorBoard logs of the project's trainings, beside their CSV logs.

Every training writes its scalars (losses, learning rate, validation and episode gains) as TensorBoard event
files in the ``tensorboard`` folder of its run folder (:data:`TENSORBOARD_DIR`), through torch's
``SummaryWriter``: ``tensorboard --logdir runs`` shows them all. The writer needs the ``tensorboard`` package
(``pip install restore-gym[training]``); without it a training warns once and writes its CSV log alone. A
resumed training purges the events its checkpoint's step and later ones left (``purge_step``), so the curves
show each step once.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package, which torch's ``SummaryWriter`` needs, is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class Scalars:
    """Scalars of one training as TensorBoard events in ``log_dir``, or nothing (after one warning) without
    tensorboard. ``purge_step``: the step a resumed training continues from. A context manager: leaving it
    flushes and closes the event file."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None
        if not tensorboard_available():
            warnings.warn("tensorboard is not installed, so this training writes no TensorBoard log (its CSV log "
                          "is written as always); pip install 'restore-gym[training]' for one", stacklevel=2)
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)

    @property
    def active(self) -> bool:
        """Whether the scalars are written (tensorboard is installed)."""
        return self.writer is not None

    def add(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log every ``tag: value`` of ``scalars`` at ``step``; a value that is not finite (a mean over no
        episode yet) is left out."""
        if self.writer is not None:
            for tag, value in scalars.items():
                if math.isfinite(value):
                    self.writer.add_scalar(tag, float(value), int(step))

    def close(self) -> None:
        """Write what is pending and close the event file."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> Scalars:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
