"""The protocol of a kind of leaderboard entry.

A kind is a subclass of :class:`Entry` registered in :mod:`benchmarks.leaderboard.kinds`; an entry is one row
of the leaderboard (a name, its seeds and ``spec``, its JSON-ready definition, and the track whose toolbox it
runs: None for the sweep's). The kind says

- its YAML section: ``section`` (the key), ``default`` (its value when the config leaves it out; None: no
  entries), :meth:`Entry.validate` (check it) and :meth:`Entry.entries` (the entries it defines);
- how one seed is evaluated on one test set: :meth:`Entry.toolbox` and :meth:`Entry.evaluate`, at an
  estimated cost (:meth:`Entry.eval_cost`);
- what a result depends on besides the test set: :meth:`Entry.fingerprint_spec`, the toolbox's
  fingerprint and :meth:`Entry.model_digest`;
- where it appears: ``marker`` of the PSNR plot, ``line`` of the performance profiles, ``comparison_side`` in
  the paper's comparison.

Kinds whose entries are trained by the sweep derive from :class:`LearnedEntry`, which adds the model file
(``model_name``), whether a seed is trained (:meth:`LearnedEntry.check_model`), the training schedule (for the
cost estimate and the progress bar) and the training itself (:meth:`LearnedEntry.fit`), resumed from
``checkpoint_name`` when the kind keeps one, and the training curve read from its CSV log (``log_name``,
``curve_columns``, ``curve_label``; :meth:`LearnedEntry.training_curve`).
"""

from __future__ import annotations

import csv
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.macs import chain_macs
from restore_gym.evaluation import Evaluation, run_policy
from restore_gym.lstm_dqn import toolbox_info
from restore_gym.records import config_differences, file_sha256
from restore_gym.rollout import Policy
from restore_gym.toolbox import Toolbox

DEFAULT_SEEDS = [0, 1, 2]
SWEEP_FIELDS = frozenset({"seed", "source", "arch"})  # training config fields the sweep sets itself
EVAL_SECONDS_PER_PATCH = 0.02  # the progress bar's estimate, unless a kind knows better


@dataclass
class Outcome:
    """An entry's evaluation on one test set: the report, final images, parameters and per-patch costs."""

    evaluation: Evaluation
    parameters: int
    decision_macs: int | None
    macs_per_patch: list[int]


@dataclass
class Entry(ABC):
    """One row of the leaderboard, of the kind its class implements (see the module's docstring)."""

    name: str
    seeds: list[int]
    spec: dict[str, Any] = field(default_factory=dict)
    track: str | None = None

    kind: ClassVar[str]  # the name of the kind in results and tables
    section: ClassVar[str]  # the key of the kind's section in the YAML config
    default: ClassVar[Any] = None
    learned: ClassVar[bool] = False
    uses_training_source: ClassVar[bool] = False  # whether results depend on the sweep's training images
    eval_seconds_per_patch: ClassVar[float] = EVAL_SECONDS_PER_PATCH
    marker: ClassVar[str] = "o"
    line: ClassVar[str] = "-"
    comparison_side: ClassVar[str | None] = None  # "toolchain" or "network" in the paper's comparison

    @classmethod
    @abstractmethod
    def validate(cls, value: Any, where: str) -> Any:
        """The section ``value`` checked and completed with defaults; ConfigError starting with ``where``."""

    @classmethod
    @abstractmethod
    def entries(cls, section: Any) -> list[Entry]:
        """The entries of a validated section, in leaderboard order."""

    @abstractmethod
    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        """Evaluate ``seed`` of this entry with ``toolbox`` (:meth:`toolbox`) on the test set of ``difficulty``."""

    def in_track(self, track: str) -> Entry:
        """This entry in ``track``: it runs the track's toolbox and is named ``<name>-<track>``."""
        return replace(self, name=f"{self.name}-{track}", track=track)

    @property
    def base_name(self) -> str:
        """The name without its track's suffix."""
        return self.name if self.track is None else self.name.removesuffix(f"-{self.track}")

    @property
    def public_spec(self) -> dict[str, Any]:
        """``spec`` as results record it (no path of this machine)."""
        return dict(self.spec)

    def fingerprint_spec(self, ctx: Context) -> dict[str, Any]:
        """The definition as the fingerprint of its results holds it."""
        spec = self.public_spec
        if self.uses_training_source:
            spec["source"] = ctx.source
        return spec

    def hyperparameters(self, ctx: Context, seed: int) -> dict[str, Any]:
        """The resolved training hyperparameters of ``seed``, or the entry's definition."""
        return self.public_spec

    def toolbox(self, ctx: Context) -> Toolbox | None:
        """The toolbox this entry runs (None: it restores without one)."""
        return ctx.track_toolbox(self.track)

    def toolbox_name(self, ctx: Context) -> str | None:
        """The toolbox this entry runs, as the config names it (None: it restores without one)."""
        return ctx.toolbox_names[self.track]

    def model_digest(self, ctx: Context, seed: int) -> str | None:
        """SHA-256 of the model of ``seed`` (None: the entry has none)."""
        return None

    def eval_cost(self, patches: int) -> float:
        """Estimated seconds to evaluate one seed on ``patches`` test patches."""
        return patches * self.eval_seconds_per_patch


class LearnedEntry(Entry):
    """An entry whose seeds the sweep trains into ``<runs>/<name>/seed<N>`` (see the module's docstring)."""

    learned = True
    uses_training_source = True
    model_name: ClassVar[str]  # the trained model in the run folder
    checkpoint_name: ClassVar[str | None] = None  # the training checkpoint (None: the training never resumes)
    progress_key: ClassVar[str] = ""  # the checkpoint's count of training units done
    log_name: ClassVar[str | None] = None  # the CSV training log in the run folder (None: no training curve)
    curve_columns: ClassVar[tuple[str, str]] = ("", "")  # its columns of the training curve: steps, gain in dB
    curve_label: ClassVar[str] = ""  # "STEPS; GAIN": what the curve's steps and gain are

    @abstractmethod
    def check_model(self, ctx: Context, seed: int, path: Path) -> bool:
        """Whether the model file ``path`` of ``seed`` is trained to the end; RuntimeError when it was trained
        with another config or toolbox, which the sweep never overwrites."""

    @abstractmethod
    def schedule(self, ctx: Context, seed: int) -> tuple[int, float]:
        """The training length of ``seed`` in the kind's units and the estimated seconds of one unit."""

    @abstractmethod
    def fit(self, ctx: Context, seed: int, resume: bool, advance: Callable[[int], None]) -> None:
        """Train ``seed`` into :meth:`run_dir` (from its checkpoint when ``resume``), calling ``advance`` with the
        training units done as it goes."""

    def run_dir(self, ctx: Context, seed: int) -> Path:
        """Where the run of ``seed`` lives."""
        return ctx.runs / self.name / f"seed{seed}"

    def model_file(self, ctx: Context, seed: int) -> Path:
        """The trained model of ``seed``."""
        return self.run_dir(ctx, seed) / self.model_name

    def checkpoint_file(self, ctx: Context, seed: int) -> Path | None:
        """Where the training of ``seed`` keeps its checkpoint (None for kinds that never resume)."""
        return None if self.checkpoint_name is None else self.run_dir(ctx, seed) / self.checkpoint_name

    def model_digest(self, ctx: Context, seed: int) -> str | None:
        path = self.model_file(ctx, seed)
        return file_sha256(path) if path.is_file() else None

    def training_curve(self, ctx: Context, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Steps and gain (dB) of the training log of ``seed``, in the order logged, without the rows whose gain is
        empty or not finite (no episode finished yet); None when the kind keeps no log or the run folder holds
        none."""
        if self.log_name is None or not (path := self.run_dir(ctx, seed) / self.log_name).is_file():
            return None
        step_column, gain_column = self.curve_columns
        with path.open(newline="") as handle:
            rows = [(float(row[step_column]), float(row[gain_column])) for row in csv.DictReader(handle)
                    if row.get(gain_column)]
        points = np.array([point for point in rows if math.isfinite(point[1])]).reshape(-1, 2)
        return points[:, 0], points[:, 1]

    def trained(self, ctx: Context, seed: int) -> bool:
        """Whether the model of ``seed`` exists and is trained to the end (see :meth:`check_model`)."""
        path = self.model_file(ctx, seed)
        return path.is_file() and self.check_model(ctx, seed, path)

    def units_done(self, ctx: Context, seed: int) -> int:
        """How much of the training of ``seed`` its checkpoint holds (0 without one)."""
        path = self.checkpoint_file(ctx, seed)
        if path is None or not path.is_file():
            return 0
        try:  # mapped, not read: an agent's checkpoint holds gigabytes of replay
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)[self.progress_key])
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise RuntimeError(f"the training checkpoint {path} cannot be read ({error}); delete it to train "
                               f"{self.name} seed {seed} anew") from error

    def train_cost(self, ctx: Context, seed: int) -> float:
        """Estimated seconds to train ``seed`` from where its run folder stands (a checkpoint's part is done)."""
        units, per_unit = self.schedule(ctx, seed)
        return max(units - self.units_done(ctx, seed), 0) * per_unit

    def train(self, ctx: Context, seed: int, advance: Callable[[float], None]) -> None:
        """Train (or resume) ``seed`` into its run folder, telling ``advance`` of the progress in estimated
        seconds of :meth:`train_cost` as it goes."""
        per_unit = self.schedule(ctx, seed)[1]
        checkpoint = self.checkpoint_file(ctx, seed)
        self.fit(ctx, seed, checkpoint is not None and checkpoint.is_file(), lambda units: advance(units * per_unit))

    @staticmethod
    def check_same_config(saved: dict[str, Any], wanted: dict[str, Any], growing: str | None, path: Path) -> None:
        """RuntimeError naming the differences unless ``saved`` equals ``wanted``, the field ``growing`` aside (a
        run may be extended)."""
        differences = config_differences(saved, wanted, growing, labels=("there", "here"))
        if differences:
            raise RuntimeError(f"{path} was trained with another config ({'; '.join(differences)}); delete "
                               f"{path.parent} to train it anew with this config, or restore the config of that run")

    def check_same_toolbox(self, trained_with: dict[str, Any], ctx: Context, path: Path) -> None:
        """RuntimeError unless the model of ``path`` was trained with this entry's toolbox (version and metadata)."""
        here = toolbox_info(self.toolbox(ctx))
        if trained_with != here:
            raise RuntimeError(f"{path} was trained with another toolbox ({trained_with}, not {here}); delete "
                               f"{path.parent} to train it anew with this toolbox")


def overridable(config_class: type) -> list[str]:
    """The fields of a training config dataclass that a section's ``overrides`` may set."""
    return [f.name for f in fields(config_class) if f.name not in SWEEP_FIELDS]


def policy_outcome(policy: Policy, ctx: Context, toolbox: Toolbox, difficulty: str, seed: int, parameters: int,
                   decision_macs: int | None) -> Outcome:
    """Evaluate ``policy`` on the test set of ``difficulty``; ``decision_macs``: its own network's per decision."""
    evaluation = run_policy(policy, difficulty, toolbox, seed=seed, device=ctx.device, max_patches=ctx.max_patches)
    macs = [chain_macs(chain, decision_macs) for chain in evaluation.report["per_patch"]["chain"]]
    return Outcome(evaluation, parameters, decision_macs, macs)
