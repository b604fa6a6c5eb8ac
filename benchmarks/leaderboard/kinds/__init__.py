"""The registry of entry kinds (:class:`~benchmarks.leaderboard.kinds.base.Entry` subclasses), in leaderboard order.

A new kind is one module here with its :class:`Entry` subclass, and one :func:`register` call: its config section,
its rows, tables, plots and result files then follow from the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.leaderboard.kinds.base import Entry, LearnedEntry, Outcome
from benchmarks.leaderboard.kinds.baseline import BaselineEntry
from benchmarks.leaderboard.kinds.lstm_dqn import LstmDqnEntry
from benchmarks.leaderboard.kinds.official import OfficialEntry, official_folder
from benchmarks.leaderboard.kinds.sb3 import Sb3Entry
from benchmarks.leaderboard.kinds.single_network import SingleNetworkEntry

KINDS: dict[str, type[Entry]] = {}  # by kind name, in the order of their entries


def register(kind: type[Entry]) -> type[Entry]:
    """Add ``kind`` to the leaderboard, its entries after those of the kinds registered before."""
    taken = {(k.kind, k.section) for k in KINDS.values()}
    if any(kind.kind == name or kind.section == section for name, section in taken):
        raise ValueError(f"a kind named {kind.kind!r} or reading the section {kind.section!r} is registered "
                         "already; give the new kind its own kind and section")
    KINDS[kind.kind] = kind
    return kind


for _kind in (BaselineEntry, OfficialEntry, LstmDqnEntry, SingleNetworkEntry, Sb3Entry):
    register(_kind)

# The kinds a track may hold: those that run a toolbox and are defined by their section alone.
TRACK_KINDS: tuple[type[Entry], ...] = (BaselineEntry, LstmDqnEntry, Sb3Entry)


def build_entries(config: dict[str, Any], official_dir: Path | None,
                  tracks: Iterable[str] | None = None) -> list[Entry]:
    """The entries of a validated config, in leaderboard order; the official one when ``official_dir`` (the
    release :func:`official_folder` found) is given; then those of the tracks named in ``tracks`` (the ones
    that can run here), in the config's order, each named ``<name>-<track>``."""
    sections = {**config, OfficialEntry.section: official_dir}
    entries = [entry for kind in KINDS.values() if sections[kind.section] is not None
               for entry in kind.entries(sections[kind.section])]
    wanted = set(tracks or ())
    for track, section in (config["tracks"] or {}).items():
        if track not in wanted:
            continue
        for kind in TRACK_KINDS:
            if section[kind.section] is not None:
                entries += [entry.in_track(track) for entry in kind.entries(section[kind.section])]
    return entries


__all__ = ["KINDS", "TRACK_KINDS", "Entry", "LearnedEntry", "Outcome", "build_entries", "official_folder",
           "register"]
