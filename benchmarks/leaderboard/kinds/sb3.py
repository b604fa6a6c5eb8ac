"""Stable-Baselines3 agents of :mod:`agents.sb3` (zoo-style hyperparameters), from the config section ``sb3``: a
list of entries, each an algorithm over several training seeds. A seed trains once to its end (SB3 runs do not
resume) and is evaluated as a policy over the sweep's toolbox. SB3 is imported only where it is used: it loads
slowly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from benchmarks.leaderboard.checks import ConfigError, check_built, check_int, check_mapping, check_seeds
from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds.base import DEFAULT_SEEDS, Entry, LearnedEntry, Outcome, policy_outcome
from benchmarks.leaderboard.macs import forward_macs
from restore_gym.baselines import NamedPolicy
from restore_gym.toolbox import Toolbox, count_parameters

SECONDS_PER_STEP = 0.005
MODEL_FILE, CONFIG_FILE = "model.zip", "config.yml"  # restore_gym.sb3_policy's, without importing SB3


def hyperparams(section: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """The resolved hyperparameters of an sb3 entry, trained on ``source`` when given."""
    from agents import sb3

    overrides = {} if section["timesteps"] is None else {"n_timesteps": section["timesteps"]}
    block = sb3.load_hyperparams(section["algo"], section["env"], section["hyperparams"], overrides)
    if source is not None:
        block["env_kwargs"] = {**block.get("env_kwargs", {}), "source": source}
    return block


class Sb3Entry(LearnedEntry):
    """One SB3 algorithm trained by the sweep; ``spec`` holds its algo, timesteps, hyperparams file and env."""

    kind = "sb3"
    section = "sb3"
    keys: ClassVar[dict[str, Any]] = {"algo": None, "name": None, "seeds": DEFAULT_SEEDS, "timesteps": None,
                                      "hyperparams": None, "env": "RLRestore-v0"}
    model_name = MODEL_FILE
    log_name = "progress.csv"  # SB3's CSV log
    curve_columns = ("time/total_timesteps", "rollout/ep_rew_mean")
    curve_label = "timesteps; return (the PSNR gain) of the latest 100 training episodes"
    marker = "s"

    @classmethod
    def validate(cls, value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of entries (algo, seeds, timesteps, ...), got {value!r}")
        return [cls._validate_item(item, f"{where}[{i}]") for i, item in enumerate(value)]

    @classmethod
    def _validate_item(cls, item: Any, where: str) -> dict[str, Any]:
        from restore_gym.sb3_policy import ALGORITHMS

        section = check_mapping(item, where, cls.keys)
        if section["algo"] not in ALGORITHMS:
            raise ConfigError(f"{where}: algo must be one of {', '.join(ALGORITHMS)}, got {section['algo']!r}")
        section["name"] = section["name"] or f"sb3-{section['algo']}"
        section["seeds"] = check_seeds(section["seeds"], f"{where}.seeds")
        if section["timesteps"] is not None:
            check_int(section["timesteps"], f"{where}.timesteps", 1)
        if "joint" in check_built(lambda: hyperparams(section), where):
            raise ConfigError(f"{where}: hyperparameters with a joint block train the tools along with the agent, a "
                              "toolbox per seed, which the leaderboard does not evaluate; use one without joint")
        return section

    @classmethod
    def entries(cls, section: list[dict[str, Any]]) -> list[Entry]:
        return [cls(item["name"], item["seeds"], {k: item[k] for k in ("algo", "timesteps", "hyperparams", "env")})
                for item in section]

    def hyperparameters(self, ctx: Context, seed: int) -> dict[str, Any]:
        return {"seed": seed, **hyperparams(self.spec, ctx.source)}

    def check_model(self, ctx: Context, seed: int, path: Path) -> bool:
        saved = yaml.safe_load((path.parent / CONFIG_FILE).read_text())
        self.check_same_config({"seed": saved.get("seed"), **saved.get("hyperparams", {})},
                          self.hyperparameters(ctx, seed), None, path)
        if "toolbox_info" in saved:  # runs of older versions did not record it
            self.check_same_toolbox(saved["toolbox_info"], ctx, path)
        return True

    def schedule(self, ctx: Context, seed: int) -> tuple[int, float]:
        return int(hyperparams(self.spec)["n_timesteps"]), SECONDS_PER_STEP

    def fit(self, ctx: Context, seed: int, resume: bool, advance: Callable[[int], None]) -> None:
        from agents import sb3

        # The committed model.zip needs no optimizer statistics: SB3 runs are evaluated, never resumed.
        sb3.train(self.spec["algo"], self.spec["env"], seed, out=self.run_dir(ctx, seed),
                  hyperparams=self.spec["hyperparams"], overrides=hyperparams(self.spec, ctx.source),
                  toolbox=self.toolbox(ctx), device=str(ctx.device), optimizer_state=False)

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        from restore_gym.sb3_policy import load_policy

        assert toolbox is not None
        policy = load_policy(self.run_dir(ctx, seed), ctx.device)
        model = policy.model
        macs = forward_macs(model.policy, lambda: model.predict(model.observation_space.sample(), deterministic=True))
        named = NamedPolicy(self.name, policy, {"algo": self.spec["algo"], "seed": seed})
        return policy_outcome(named, ctx, toolbox, difficulty, seed, count_parameters(toolbox)
                              + count_parameters(model.policy), macs)
