"""What every entry of one sweep shares: the toolboxes (the sweep's and each track's), the device, the training
images, the runs folder and the test sets (whole, or their first ``max_patches`` patches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from restore_gym.corpus import corpus_is_complete, default_out_dir
from restore_gym.data import TestSet, load_test_set
from restore_gym.devices import resolve_device
from restore_gym.evaluation import load_toolbox
from restore_gym.sources import CORPUS_SOURCE
from restore_gym.toolbox import Toolbox


@dataclass
class Context:
    """What every entry shares in one sweep; ``tracks`` holds the toolbox of each track that can run (see
    :func:`build_context`), ``toolbox_names`` the name the config gives each toolbox (None: the sweep's)."""

    toolbox: Toolbox
    device: torch.device
    source: str
    runs: Path
    max_patches: int | None
    tracks: dict[str, Toolbox] = field(default_factory=dict)
    toolbox_names: dict[str | None, str] = field(default_factory=dict)
    skipped_tracks: dict[str, str] = field(default_factory=dict)  # track: why it cannot run here
    _test_sets: dict[str, TestSet] = field(default_factory=dict)

    def track_toolbox(self, track: str | None) -> Toolbox:
        """The toolbox of ``track`` (None: the sweep's)."""
        return self.toolbox if track is None else self.tracks[track]

    def test_set(self, difficulty: str) -> TestSet:
        """The frozen test set of ``difficulty`` (whole; evaluations keep its first ``max_patches``)."""
        if difficulty not in self._test_sets:
            self._test_sets[difficulty] = load_test_set(difficulty)
        return self._test_sets[difficulty]

    def patches(self, difficulty: str) -> int:
        """How many patches of the test set of ``difficulty`` the evaluations use."""
        size = len(self.test_set(difficulty))
        return size if self.max_patches is None else min(size, self.max_patches)


def resolve_training_source(source: str) -> str:
    """``auto``: the tools' corpus folder (``python -m restore_gym.corpus``) when it is complete, else
    ``builtin``; any other value as given."""
    if source != "auto":
        return source
    return CORPUS_SOURCE if corpus_is_complete(default_out_dir()) else "builtin"


def load_named_toolbox(name: str, device: torch.device) -> Toolbox:
    """The toolbox a config names: ``pretrained`` (the shipped one), a shipped variant, ``official`` or a file."""
    return load_toolbox(None if name == "pretrained" else name).to(device)


def build_context(config: dict[str, Any]) -> Context:
    """The toolboxes, device, training source and folders that every entry of a validated config shares. A track
    whose toolbox is not on this machine (the authors' toolbox before ``restore-gym import-official``) is left
    out, and ``skipped_tracks`` says why."""
    device = resolve_device(config["device"])
    ctx = Context(load_named_toolbox(config["toolbox"], device), device, resolve_training_source(config["source"]),
                  Path(config["runs"]), config["max_patches"], toolbox_names={None: config["toolbox"]})
    for track, section in (config["tracks"] or {}).items():
        try:
            ctx.tracks[track] = load_named_toolbox(section["toolbox"], device)
        except FileNotFoundError as error:
            ctx.skipped_tracks[track] = (f"track {track} (toolbox {section['toolbox']}): skipped, its toolbox is not "
                                         f"on this machine: {error}")
            continue
        ctx.toolbox_names[track] = section["toolbox"]
    return ctx
