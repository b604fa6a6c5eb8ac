"""The authors' LSTM-DQN agent with their toolbox, from their release (reference data beside the project, never
part of it). The config section ``official`` says where the release is: ``auto`` (:data:`OFFICIAL_DIR` when it
exists), a folder holding ``toolbox/`` and ``models/``, or false; :func:`official_folder` resolves it on this
machine and the entry exists only where the release does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.leaderboard.checks import ConfigError
from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds.base import Entry, Outcome
from benchmarks.leaderboard.kinds.lstm_dqn import agent_outcome
from benchmarks.toolbox import DEFAULT_OFFICIAL
from restore_gym.official import OFFICIAL
from restore_gym.records import file_sha256
from restore_gym.toolbox import Toolbox

OFFICIAL_DIR = DEFAULT_OFFICIAL.parent


def official_folder(setting: Any) -> tuple[Path | None, str | None]:
    """The authors' release to evaluate (or None) and, when it is skipped, why."""
    if setting is False:
        return None, "the authors' agent: switched off in the config (official: false)"
    folder = OFFICIAL_DIR if setting == "auto" else Path(setting)
    if not folder.is_dir():
        return None, (f"the authors' agent with their toolbox: skipped, their release is not at {folder} "
                      "(reference data beside the project, never part of it)")
    return folder, None


class OfficialEntry(Entry):
    """The authors' agent; ``spec["dir"]`` is their release."""

    kind = "official"
    section = "official"
    default = "auto"
    marker = "s"
    comparison_side = "toolchain"

    @classmethod
    def validate(cls, value: Any, where: str) -> Any:
        if value is not False and value != "auto" and not (isinstance(value, str) and Path(value).is_dir()):
            raise ConfigError(f"{where} must be 'auto' (the authors' release at {OFFICIAL_DIR} when it exists), "
                              f"false, or an existing folder holding toolbox/ and models/; got {value!r}")
        return value

    @classmethod
    def entries(cls, section: Path) -> list[Entry]:
        """The entry of the release folder ``section`` (the setting resolved by :func:`official_folder`)."""
        return [cls("official", [0], {"dir": str(section)})]

    @property
    def models(self) -> Path:
        """The folder of the authors' agent checkpoint."""
        return Path(self.spec["dir"]) / "models"

    @property
    def public_spec(self) -> dict[str, Any]:
        """The release by its folder name, not its path on this machine."""
        return {**self.spec, "dir": Path(self.spec["dir"]).name}

    def toolbox(self, ctx: Context) -> Toolbox:
        return Toolbox.from_official(Path(self.spec["dir"]) / "toolbox").to(ctx.device)

    def toolbox_name(self, ctx: Context) -> str:
        return OFFICIAL

    def model_digest(self, ctx: Context, seed: int) -> str:
        return file_sha256(self.models)

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        assert toolbox is not None
        return agent_outcome(self.kind, self.models, ctx, toolbox, difficulty, seed)
