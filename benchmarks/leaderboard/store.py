"""The result files of a sweep: ``OUT/leaderboard/runs/<entry>/<difficulty>-seed<N>.json``, one per evaluation.

Each file holds the evaluation's report, costs and hyperparameters with the fingerprint (SHA-256 of the sorted
JSON) of its inputs (:meth:`ResultStore.inputs`: the entry's definition, seed, test-set digest, patch limit,
toolbox and model digests, gallery patches). A stored result is valid while its fingerprint matches today's
inputs; the entry's first seed on the gallery's difficulty also keeps its restored gallery patches in the
``.npz`` beside it. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds import Entry
from restore_gym.records import write_json_atomic, write_npz_atomic
from restore_gym.toolbox import Toolbox

RESULT_FORMAT = 1


@dataclass
class StoredResult:
    """What one evaluation writes: the result file's JSON and, for a gallery run, its restored patches."""

    record: dict[str, Any]
    gallery: dict[str, np.ndarray] | None  # "indices" and "images" of the ``.npz`` beside the result file


def fingerprint(inputs: dict[str, Any]) -> str:
    """The hash of a result's inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def gallery_indices(count: int, patches: int) -> list[int]:
    """``count`` patch indices spread evenly over the first ``patches`` of a test set."""
    return sorted({int(i) for i in np.linspace(0, patches - 1, min(count, patches)).round()})


class ResultStore:
    """The result files under ``out``, for the entries of one context and ``gallery`` config section."""

    def __init__(self, out: Path, ctx: Context, gallery: dict[str, Any]) -> None:
        self.folder, self.ctx, self.gallery_spec = out / "leaderboard" / "runs", ctx, gallery
        self._toolboxes: dict[str, Toolbox | None] = {}
        self._fingerprints: dict[str, str | None] = {}

    def path(self, entry: Entry, difficulty: str, seed: int) -> Path:
        """The result file of (``entry``, ``difficulty``, ``seed``)."""
        return self.folder / entry.name / f"{difficulty}-seed{seed}.json"

    def toolbox(self, entry: Entry) -> Toolbox | None:
        """The toolbox ``entry`` runs, loaded once."""
        if entry.name not in self._toolboxes:
            self._toolboxes[entry.name] = entry.toolbox(self.ctx)
        return self._toolboxes[entry.name]

    def toolbox_fingerprint(self, entry: Entry) -> str | None:
        """The fingerprint of the toolbox ``entry`` runs (None: it runs none), computed once."""
        if entry.name not in self._fingerprints:
            toolbox = self.toolbox(entry)
            self._fingerprints[entry.name] = None if toolbox is None else toolbox.fingerprint()
        return self._fingerprints[entry.name]

    def gallery(self, entry: Entry, difficulty: str, seed: int) -> list[int] | None:
        """The gallery's patch indices where this run's images are kept (the entry's first seed), else None."""
        if difficulty != self.gallery_spec["difficulty"] or seed != entry.seeds[0]:
            return None
        return gallery_indices(self.gallery_spec["patches"], self.ctx.patches(difficulty))

    def inputs(self, entry: Entry, difficulty: str, seed: int) -> dict[str, Any]:
        """Everything a result depends on; its hash decides whether a stored result is still valid."""
        return {
            "format": RESULT_FORMAT, "entry": entry.name, "kind": entry.kind, "spec": entry.fingerprint_spec(self.ctx),
            "seed": seed, "difficulty": difficulty, "test_set": self.ctx.test_set(difficulty).digest,
            "max_patches": self.ctx.max_patches, "toolbox": self.toolbox_fingerprint(entry),
            "model": entry.model_digest(self.ctx, seed), "gallery": self.gallery(entry, difficulty, seed),
        }

    def finished(self, entry: Entry, difficulty: str, seed: int) -> bool:
        """Whether the result file exists with the fingerprint of today's inputs (and its gallery file)."""
        path = self.path(entry, difficulty, seed)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if stored.get("fingerprint") != fingerprint(self.inputs(entry, difficulty, seed)):
            return False
        return self.gallery(entry, difficulty, seed) is None or path.with_suffix(".npz").is_file()

    def compute(self, entry: Entry, difficulty: str, seed: int) -> StoredResult:
        """Evaluate one (entry, difficulty, seed): the result file's contents and its gallery images, unwritten
        (a Ray task computes them, the driver writes them)."""
        inputs = self.inputs(entry, difficulty, seed)
        outcome = entry.evaluate(self.ctx, self.toolbox(entry), difficulty, seed)
        indices = self.gallery(entry, difficulty, seed)
        gallery = None
        if indices is not None:
            images = np.round(np.clip(outcome.evaluation.images[indices], 0.0, 1.0) * 255.0).astype(np.uint8)
            gallery = {"indices": np.array(indices), "images": images}
        return StoredResult({
            "format": RESULT_FORMAT, "entry": entry.name, "kind": entry.kind, "seed": seed,
            "difficulty": difficulty, "fingerprint": fingerprint(inputs), "inputs": inputs,
            "hyperparameters": entry.hyperparameters(self.ctx, seed), "parameters": outcome.parameters,
            "decision_macs": outcome.decision_macs, "macs_per_patch": outcome.macs_per_patch,
            "report": outcome.evaluation.report,
        }, gallery)

    def write(self, entry: Entry, difficulty: str, seed: int, result: StoredResult) -> None:
        """Write the result file of (``entry``, ``difficulty``, ``seed``) atomically, its gallery images first."""
        path = self.path(entry, difficulty, seed)
        if result.gallery is not None:
            write_npz_atomic(path.with_suffix(".npz"), **result.gallery)
        write_json_atomic(path, result.record)

    def evaluate(self, entry: Entry, difficulty: str, seed: int) -> None:
        """Evaluate one (entry, difficulty, seed) and write its result file (and gallery images)."""
        self.write(entry, difficulty, seed, self.compute(entry, difficulty, seed))

    def load(self, entry: Entry, difficulty: str, seed: int) -> dict[str, Any]:
        """The stored result of (``entry``, ``difficulty``, ``seed``)."""
        return json.loads(self.path(entry, difficulty, seed).read_text())

    def gallery_images(self, entry: Entry, difficulty: str, seed: int) -> np.ndarray:
        """The restored gallery patches stored with that result."""
        with np.load(self.path(entry, difficulty, seed).with_suffix(".npz")) as stored:
            return stored["images"]
