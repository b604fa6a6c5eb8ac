"""Where the authors' converted release lives: the user cache, once ``restore-gym import-official DIR`` has run.

The authors of RL-Restore (Ke Yu et al., CVPR 2018; MIT licence, Copyright (c) 2018 Ke YU) released their
12 tools and their agent as TensorFlow checkpoints. :mod:`restore_gym.official_import` converts them once
to this project's formats, into ``cache_dir() / "official"``: ``toolbox.pt`` (a :class:`~restore_gym.toolbox.
Toolbox` file), ``agent.pt`` (an agent file of :mod:`restore_gym.lstm_dqn`) and ``MANIFEST.json`` (the
SHA-256 of every source file and of every converted file, the authors' copyright and licence, the layout
facts). Afterwards ``"official"`` names them everywhere a toolbox or an agent is named. The converted files
never go into the repository or the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from restore_gym.data import cache_dir
from restore_gym.records import file_sha256

OFFICIAL = "official"
MANIFEST_FILE = "MANIFEST.json"
PART_FILES: dict[str, str] = {"toolbox": "toolbox.pt", "agent": "agent.pt"}
HOW_TO_IMPORT = ("convert the authors' release once with `python -m restore_gym import-official DIR`, where DIR "
                 "holds their toolbox/ (tool01..tool12) and models/ (model.index) folders as published with "
                 "RL-Restore (Yu et al., CVPR 2018; the authors' GitHub repository yuke93/RL-Restore)")


def official_dir() -> Path:
    """The folder of the converted release in the user cache."""
    return cache_dir() / OFFICIAL


def read_manifest(folder: Path | None = None) -> dict[str, Any] | None:
    """The manifest of the converted release in ``folder`` (default :func:`official_dir`), or None if absent."""
    path = (folder or official_dir()) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is damaged ({error}); {HOW_TO_IMPORT} again") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("converted"), dict):
        raise ValueError(f"{path} is not a manifest of the converted release; {HOW_TO_IMPORT} again")
    return manifest


def converted_file(part: str) -> Path:
    """The converted ``part`` (``"toolbox"`` or ``"agent"``) of the authors' release, checked against the
    manifest's SHA-256. FileNotFoundError saying which command to run when it was never converted; ValueError
    when the file is damaged or not the one the manifest records."""
    if part not in PART_FILES:
        raise ValueError(f"unknown part {part!r} of the authors' release; choose one of {', '.join(PART_FILES)}")
    folder = official_dir()
    manifest = read_manifest(folder)
    name = PART_FILES[part]
    if manifest is None or name not in manifest["converted"]:
        raise FileNotFoundError(f"the authors' {part} is not converted (no {folder / name}): {HOW_TO_IMPORT}")
    path = folder / name
    if not path.is_file() or file_sha256(path) != manifest["converted"][name]:
        raise ValueError(f"{path} is missing or differs from what {folder / MANIFEST_FILE} records; "
                         f"{HOW_TO_IMPORT} again")
    return path
