"""Bookkeeping of resumable trainings: the run folder, whether a checkpoint may be resumed, its random states,
the CSV log.

:func:`start_run` prepares a run folder: a fresh run never overwrites a checkpoint, a resumed one needs one,
and the temp files a killed run left are removed. A checkpoint is resumed only under the config it was
written with, growable fields (iteration counts) aside: :func:`check_config` refuses any other change with
one message format, ``cannot resume PATH: it was trained with another config (KEY: SAVED there, WANTED here;
...); only GROWABLE may change: restore that config, or REMEDY``. :func:`rng_states` and :func:`restore_rngs`
capture and restore the generators a run draws from (numpy's, torch's and CUDA's). :class:`TrainingLog` is a
CSV log of one row per report: created atomically, appended with an fsync, rewritten atomically (whole, or
truncated to a checkpoint's step on resume); a line that is no row of its columns (the torn last line of a
killed run, garbage, an empty line) is dropped with a warning naming the log.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restore_gym.records import config_differences, remove_stale_temporaries, write_text_atomic

RNG_STREAMS: tuple[str, ...] = ("numpy", "torch", "cuda")


def start_run(out_dir: str | os.PathLike, checkpoint_name: str, resume: bool) -> Path:
    """The checkpoint ``out_dir / checkpoint_name`` of a run starting in ``out_dir``, which is created and rid of
    the temp files a killed run left there (:func:`restore_gym.records.remove_stale_temporaries`);
    FileNotFoundError when ``resume`` finds no checkpoint, FileExistsError when a fresh run would overwrite one."""
    out_dir = Path(out_dir)
    checkpoint = out_dir / checkpoint_name
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"cannot resume: there is no {checkpoint}")
    if not resume and checkpoint.exists():
        raise FileExistsError(f"{checkpoint} exists: resume it or choose another output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    return checkpoint


def check_checkpoint(payload: Any, keys: Collection[str], path: str | os.PathLike, hint: str,
                     error: type[Exception] = ValueError) -> None:
    """``error`` "PATH is not a training checkpoint (no KEY, ...); HINT" unless ``payload`` is a dict holding
    every key of ``keys``."""
    missing = sorted(set(keys) - (payload.keys() if isinstance(payload, dict) else set()))
    if missing:
        raise error(f"{path} is not a training checkpoint (no {', '.join(missing)}); {hint}")


def config_changes(saved: Mapping[str, Any], wanted: Mapping[str, Any], growable: Collection[str] = ()) -> list[str]:
    """``"KEY: SAVED there, WANTED here"`` for every key but ``growable`` whose values differ, sorted."""
    saved, wanted = ({k: v for k, v in c.items() if k not in growable} for c in (saved, wanted))
    return config_differences(saved, wanted, labels=("there", "here"))


def check_config(saved: Mapping[str, Any], wanted: Mapping[str, Any], path: str | os.PathLike,
                 growable: Collection[str] = (), remedy: str = "train in another output folder") -> None:
    """ValueError in the format of the module docstring unless the config ``saved`` with the checkpoint
    ``path`` agrees with ``wanted`` on every key but ``growable``."""
    changes = config_changes(saved, wanted, growable)
    if changes:
        grow = f"only {' and '.join(growable)} may change" if growable else "nothing may change"
        raise ValueError(f"cannot resume {path}: it was trained with another config ({'; '.join(changes)}); "
                         f"{grow}: restore that config, or {remedy}")


def rng_states(rng: np.random.Generator, streams: Collection[str] = RNG_STREAMS, suffix: str = ""
               ) -> dict[str, Any]:
    """The states of the generators ``streams`` (of :data:`RNG_STREAMS`), each keyed ``STREAM + suffix``:
    ``numpy`` is ``rng``'s bit generator, ``torch`` torch's CPU generator, ``cuda`` every CUDA device's (an
    empty list without CUDA)."""
    unknown = sorted(set(streams) - set(RNG_STREAMS))
    if unknown:
        raise ValueError(f"unknown random streams {unknown}; choose from {', '.join(RNG_STREAMS)}")
    states = {"numpy": rng.bit_generator.state} if "numpy" in streams else {}
    if "torch" in streams:
        states["torch"] = torch.get_rng_state()
    if "cuda" in streams:
        states["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {f"{name}{suffix}": state for name, state in states.items()}


def restore_rngs(states: Mapping[str, Any], rng: np.random.Generator, suffix: str = "") -> None:
    """Set the generators to ``states`` of :func:`rng_states` (keys ``STREAM + suffix``); a stream whose key
    is absent is left as it is, and CUDA states are restored only where CUDA is available."""
    if f"numpy{suffix}" in states:
        rng.bit_generator.state = states[f"numpy{suffix}"]
    if f"torch{suffix}" in states:
        torch.set_rng_state(states[f"torch{suffix}"])
    if states.get(f"cuda{suffix}") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states[f"cuda{suffix}"])


class TrainingLog:
    """The CSV log ``path`` of a training: a header of ``columns``, then one row per report, its step in
    ``step_column`` (default the first column); lines end with ``line_end``."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], step_column: str | None = None,
                 line_end: str = "\n") -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.step_column = step_column or self.columns[0]
        self.line_end = line_end

    def _lines(self, rows: Iterable[Mapping[str, Any]], header: bool = False) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator=self.line_end)
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def create(self, replace: bool = False) -> None:
        """Write the header alone, atomically, unless the log exists (and ``replace`` is False)."""
        if replace or not self.path.exists():
            write_text_atomic(self.path, self._lines([], header=True))

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write the header and ``rows`` (mappings of the columns), atomically."""
        write_text_atomic(self.path, self._lines(rows, header=True))

    def append(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` (a mapping of the columns) and fsync, creating the log first if there is none. A torn
        last line is ended first, so that the row stands on a line of its own."""
        self.create()
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - 1, 0))
            torn = size > 0 and handle.read(1) != b"\n"
        with self.path.open("a", newline="") as handle:  # O_APPEND: rows of parallel writers never overlap
            handle.write(self.line_end * torn + self._lines([row]))
            handle.flush()
            os.fsync(handle.fileno())

    def truncate(self, step: int) -> None:
        """Keep the rows up to ``step`` (a resumed run's checkpoint step: the later ones are written again),
        rewritten atomically; lines that are no rows are dropped with a warning naming the log. Creates the log
        if there is none."""
        if not self.path.exists():
            self.create()
            return
        header = self._lines([], header=True).removesuffix(self.line_end)
        position = self.columns.index(self.step_column)
        text = self.path.read_text()
        lines = text.splitlines()
        kept, damaged = [], []
        for number, line in enumerate(lines, start=1):
            if number == 1 and line == header:
                continue
            fields = next(csv.reader([line]), [])
            try:  # a row has every column and an integer step, and ends its line (else it is torn)
                complete = len(fields) == len(self.columns) and (number < len(lines) or text.endswith("\n"))
                row_step = int(fields[position]) if complete else None
            except ValueError:
                row_step = None
            if row_step is None:
                damaged.append(number)
            elif row_step <= step:
                kept.append(line)
        if damaged:
            warnings.warn(f"the training log {self.path} has damaged lines (line {', '.join(map(str, damaged))}: "
                          f"not rows of {', '.join(self.columns)}); dropping them", stacklevel=2)
        write_text_atomic(self.path, "".join(line + self.line_end for line in [header, *kept]))
