"""The LSTM-DQN agent of :mod:`agents.lstm_dqn` over several training seeds, from the config section
``lstm_dqn`` (a preset and overrides of its Config); a seed's training resumes from its checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from agents import lstm_dqn
from benchmarks.leaderboard.checks import check_built, check_mapping, check_overrides, check_seeds
from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds.base import DEFAULT_SEEDS, Entry, LearnedEntry, Outcome, overridable, policy_outcome
from benchmarks.leaderboard.macs import qnetwork_macs
from restore_gym.evaluation import make_policy
from restore_gym.lstm_dqn import read_agent_file
from restore_gym.toolbox import Toolbox, count_parameters

# The cpu preset's 400k steps on one thread: 87 minutes for the shipped agent, 2.5 hours for seed 1 beside another
# training on the 2-core machine.
SECONDS_PER_STEP = 0.02


def agent_outcome(kind: str, checkpoint: Path, ctx: Context, toolbox: Toolbox, difficulty: str,
                  seed: int) -> Outcome:
    """Evaluate the LSTM-DQN agent of ``checkpoint`` (``kind``: an agent of :func:`make_policy`)."""
    policy = make_policy(kind, toolbox, difficulty, seed, str(checkpoint), device=ctx.device)
    network = policy.act.network
    return policy_outcome(policy, ctx, toolbox, difficulty, seed, count_parameters(toolbox)
                          + count_parameters(network), qnetwork_macs(network))


class LstmDqnEntry(LearnedEntry):
    """The LSTM-DQN agent trained by the sweep."""

    kind = "lstm-dqn"
    section = "lstm_dqn"
    keys: ClassVar[dict[str, Any]] = {"preset": "cpu", "seeds": DEFAULT_SEEDS, "overrides": {}}
    model_name = lstm_dqn.AGENT_FILE
    checkpoint_name = lstm_dqn.CHECKPOINT_FILE
    progress_key = "global_step"
    log_name = lstm_dqn.LOG_FILE
    curve_columns = ("step", "mean_psnr_gain")
    curve_label = f"agent steps; gain of the latest {lstm_dqn.RECENT_EPISODES} training episodes (epsilon-greedy)"
    marker = "s"
    comparison_side = "toolchain"

    @classmethod
    def validate(cls, value: Any, where: str) -> dict[str, Any]:
        section = check_mapping(value, where, cls.keys)
        section["seeds"] = check_seeds(section["seeds"], f"{where}.seeds")
        section["overrides"] = check_overrides(section["overrides"], overridable(lstm_dqn.Config),
                                               f"{where}.overrides")
        check_built(lambda: lstm_dqn.preset(section["preset"], **section["overrides"]), where)
        return section

    @classmethod
    def entries(cls, section: dict[str, Any]) -> list[Entry]:
        return [cls("lstm-dqn", section["seeds"], {"preset": section["preset"], "overrides": section["overrides"]})]

    def lstm_config(self, ctx: Context, seed: int) -> lstm_dqn.Config:
        """The training config of ``seed``."""
        return lstm_dqn.preset(self.spec["preset"], seed=seed, source=ctx.source, **self.spec["overrides"])

    def hyperparameters(self, ctx: Context, seed: int) -> dict[str, Any]:
        return asdict(self.lstm_config(ctx, seed))

    def check_model(self, ctx: Context, seed: int, path: Path) -> bool:
        cfg = self.lstm_config(ctx, seed)
        payload = read_agent_file(path)
        self.check_same_config(lstm_dqn.stored_config(payload), asdict(cfg), "total_timesteps", path)
        self.check_same_toolbox(payload.get("base_toolbox", payload["toolbox"]), ctx, path)
        return payload["global_step"] >= cfg.total_timesteps

    def schedule(self, ctx: Context, seed: int) -> tuple[int, float]:
        return self.lstm_config(ctx, seed).total_timesteps, SECONDS_PER_STEP

    def fit(self, ctx: Context, seed: int, resume: bool, advance: Callable[[int], None]) -> None:
        lstm_dqn.train(self.lstm_config(ctx, seed), self.run_dir(ctx, seed), self.toolbox(ctx), ctx.device,
                       resume=resume, progress=False, on_steps=advance)

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        assert toolbox is not None
        return agent_outcome(self.kind, self.model_file(ctx, seed), ctx, toolbox, difficulty, seed)
