"""What every entry of one sweep shares: the toolbox, the device, the training images, the runs folder and
the test sets (whole, or their first ``max_patches`` patches)."""

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
    """What every entry shares in one sweep."""

    toolbox: Toolbox
    device: torch.device
    source: str
    runs: Path
    max_patches: int | None
    _test_sets: dict[str, TestSet] = field(default_factory=dict)

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


def build_context(config: dict[str, Any]) -> Context:
    """The toolbox, device, training source and folders that every entry of a validated config shares."""
    device = resolve_device(config["device"])
    toolbox = load_toolbox(None if config["toolbox"] == "pretrained" else config["toolbox"]).to(device)
    return Context(toolbox, device, resolve_training_source(config["source"]), Path(config["runs"]),
                   config["max_patches"])
