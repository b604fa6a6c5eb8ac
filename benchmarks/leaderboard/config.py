"""The leaderboard's YAML config: loading it, checking it and completing it with defaults.

Its keys are documented in ``benchmarks/leaderboard.yml``: the general keys of :data:`GENERAL`, one section
per registered kind (:mod:`benchmarks.leaderboard.kinds`), which the kind checks, and ``tracks``: more entries,
each track with a toolbox of its own and sections of the kinds that run a toolbox (:data:`TRACK_KINDS`).
Unknown keys, a config that defines no entry and entry names that are not plain names (:data:`ENTRY_NAME`:
they name folders) are errors.
Every error is a :class:`ConfigError` whose message starts with the file and names the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from benchmarks.leaderboard.checks import ConfigError, check_int, check_mapping, check_names
from benchmarks.leaderboard.kinds import KINDS, TRACK_KINDS, build_entries
from restore_gym.degrade import DIFFICULTIES
from restore_gym.official import OFFICIAL
from restore_gym.toolbox import PRETRAINED_FILES

GENERAL: dict[str, Any] = {
    "difficulties": list(DIFFICULTIES),
    "device": "cpu",
    "toolbox": "pretrained",
    "source": "auto",
    "runs": "benchmarks/results/leaderboard/models",
    "out": "benchmarks/results",
    "max_patches": None,
    "stats": None,
    "gallery": None,
    "tracks": None,
}
STATS = {"reps": 2000, "confidence": 0.95, "seed": 0, "task_bootstrap": False}
GALLERY = {"difficulty": "moderate", "patches": 4}
ENTRY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def top_level() -> dict[str, Any]:
    """The config's keys and their defaults: the general ones, then the registered kinds' sections."""
    return {**GENERAL, **{kind.section: kind.default for kind in KINDS.values()}}


def validate_config(data: Any, where: str = "config") -> dict[str, Any]:
    """The config ``data`` (parsed YAML) checked and completed with defaults; ConfigError naming the key.

    A kind's section whose default is None (``baselines``, ``lstm_dqn``, ``single_networks``, ``sb3``) may be
    left out: it adds no entry; a section given with some keys takes the defaults for the others.
    """
    config = check_mapping(data if data is not None else {}, where, top_level())
    _check_general(config, where)
    config["stats"] = _check_stats(config["stats"] or {}, f"{where}: stats")
    config["gallery"] = check_mapping(config["gallery"] or {}, f"{where}: gallery", GALLERY)
    if config["gallery"]["difficulty"] not in config["difficulties"]:
        raise ConfigError(f"{where}: gallery.difficulty {config['gallery']['difficulty']!r} is not among the "
                          f"difficulties {config['difficulties']}")
    check_int(config["gallery"]["patches"], f"{where}: gallery.patches", 1)
    for kind in KINDS.values():
        if config[kind.section] is not None or kind.default is not None:
            config[kind.section] = kind.validate(config[kind.section], f"{where}: {kind.section}")
    config["tracks"] = _check_tracks(config["tracks"], f"{where}: tracks")
    _check_entry_names(config, where)
    return config


def check_toolbox_name(value: Any, where: str) -> str:
    """A toolbox a config may name: ``pretrained`` (the shipped one), a shipped variant, ``official`` (the authors'
    toolbox once converted; whether it is is decided when the sweep runs) or an existing file."""
    names = ("pretrained", *PRETRAINED_FILES, OFFICIAL)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    if value not in names and not Path(value).is_file():
        raise ConfigError(f"{where}: toolbox file {value} does not exist; give a file written by Toolbox.save or "
                          f"one of {', '.join(names)}")
    return value


def _check_tracks(value: Any, where: str) -> dict[str, dict[str, Any]] | None:
    """The ``tracks`` section: track names (plain names) to a toolbox and the sections of :data:`TRACK_KINDS`."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where} must be a mapping of track names to sections (toolbox, then "
                          f"{', '.join(kind.section for kind in TRACK_KINDS)}), got {value!r}")
    tracks = {}
    for track, section in value.items():
        at = f"{where}.{track}"
        if not isinstance(track, str) or not ENTRY_NAME.fullmatch(track):
            raise ConfigError(f"{at}: a track name must match {ENTRY_NAME.pattern}: it ends its entries' names")
        section = check_mapping(section, at, {"toolbox": None, **{kind.section: None for kind in TRACK_KINDS}})
        if section["toolbox"] is None:
            raise ConfigError(f"{at} needs a toolbox: the toolbox its entries run")
        section["toolbox"] = check_toolbox_name(section["toolbox"], f"{at}.toolbox")
        given = [kind for kind in TRACK_KINDS if section[kind.section] is not None]
        if not given:
            raise ConfigError(f"{at} defines no entry: give {', '.join(kind.section for kind in TRACK_KINDS)}")
        for kind in given:
            section[kind.section] = kind.validate(section[kind.section], f"{at}.{kind.section}")
        tracks[track] = section
    return tracks


def _check_general(config: dict[str, Any], where: str) -> None:
    config["difficulties"] = check_names(config["difficulties"], DIFFICULTIES, f"{where}: difficulties")
    for key in ("device", "source", "runs", "out"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {config[key]!r}")
    config["toolbox"] = check_toolbox_name(config["toolbox"], f"{where}: toolbox")
    if config["source"] not in ("auto", "builtin") and not Path(config["source"]).expanduser().is_dir():
        raise ConfigError(f"{where}: source folder {config['source']} does not exist; give 'auto' (the tools' "
                          "corpus if built, else builtin), 'builtin' or a folder of images")
    if config["max_patches"] is not None:
        check_int(config["max_patches"], f"{where}: max_patches", 1)


def _check_stats(value: Any, where: str) -> dict[str, Any]:
    stats = check_mapping(value, where, STATS)
    check_int(stats["reps"], f"{where}.reps", 1)
    check_int(stats["seed"], f"{where}.seed", 0)
    if not isinstance(stats["confidence"], float) or not 0.0 < stats["confidence"] < 1.0:
        raise ConfigError(f"{where}.confidence must be a number in (0, 1), got {stats['confidence']!r}")
    if not isinstance(stats["task_bootstrap"], bool):
        raise ConfigError(f"{where}.task_bootstrap must be true or false")
    return stats


def _check_entry_names(config: dict[str, Any], where: str) -> None:
    """ConfigError unless the config defines entries, each with its own plain name."""
    entries = build_entries(config, official_dir=None, tracks=config["tracks"])
    if not entries:
        optional = [kind.section for kind in KINDS.values() if kind.default is None]
        raise ConfigError(f"{where} defines no entry: give {', '.join(optional[:-1])} or {optional[-1]}")
    for entry in entries:
        if not isinstance(entry.name, str) or not ENTRY_NAME.fullmatch(entry.name):
            raise ConfigError(f"{where}: the {entry.kind} entry name {entry.name!r} is not a plain name; entry "
                              f"names must match {ENTRY_NAME.pattern} (lower-case letters, digits, '-' and '_', "
                              "not starting with '-' or '_') because they name the entry's run and result folders")
    names = [entry.name for entry in entries]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{where}: entry name(s) {', '.join(repeated)} appear twice; each entry needs its own "
                          "name (an sb3 entry takes one in 'name')")


def load_config(path: str | Path) -> dict[str, Any]:
    """The validated config of the YAML file ``path`` (see :func:`validate_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"leaderboard config {path} does not exist; see benchmarks/leaderboard.yml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    return validate_config(data, str(path))
