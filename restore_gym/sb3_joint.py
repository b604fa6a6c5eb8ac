"""Joint training of the tools while a Stable-Baselines3 model learns (:mod:`restore_gym.joint` under SB3)."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from restore_gym.joint import JointTrainer


class JointTrainingCallback(BaseCallback):
    """Joint training of the tools while a Stable-Baselines3 model learns: attaches ``trainer`` to the
    model's training environment (which must run ``trainer.toolbox``) and logs ``joint/rounds``,
    ``joint/toolbox_version`` and ``joint/loss``."""

    def __init__(self, trainer: JointTrainer, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.trainer = trainer

    def _on_training_start(self) -> None:
        self.trainer.attach(self.training_env)

    def _on_step(self) -> bool:
        if self.trainer.losses:
            self.logger.record("joint/rounds", self.trainer.rounds)
            self.logger.record("joint/toolbox_version", self.trainer.toolbox.version)
            self.logger.record("joint/loss", self.trainer.losses[-1])
        return True
