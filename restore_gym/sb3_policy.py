"""Trained Stable-Baselines3 models as RL-Restore policies, and their run folders.

A run folder of the SB3 training (``agents/sb3.py``) holds ``config.yml`` (its ``algo`` names the algorithm,
a key of :data:`ALGORITHMS`) and ``model.zip``. :func:`load_policy` reads it for inference; :class:`SB3Policy`
acts greedily on any :class:`~restore_gym.vector_env.RLRestoreVectorEnv`, whatever its observation mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from gymnasium import spaces
from sb3_contrib import QRDQN, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from restore_gym.env import observe

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C, "dqn": DQN, "ppo": PPO, "qrdqn": QRDQN, "recurrent_ppo": RecurrentPPO,
}
MODEL_FILE, CONFIG_FILE = "model.zip", "config.yml"
# Loading for inference only: schedules saved with a model are not needed (and may not unpickle elsewhere).
_INFERENCE_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0,
                      "exploration_schedule": lambda _: 0.0}


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``algo`` (a key of :data:`ALGORITHMS`); ValueError listing the known names otherwise."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; known algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def observation_mode_of(space: spaces.Space) -> str:
    """The RL-Restore observation mode ("dict", "uint8" or "image") of ``space``, channel-first or last."""
    if isinstance(space, spaces.Box) and len(space.shape) == 3 and 5 in (space.shape[0], space.shape[-1]):
        return "image"
    if isinstance(space, spaces.Dict) and set(space.spaces) == {"image", "previous_tool", "step"}:
        return "uint8" if space["image"].dtype == np.uint8 else "dict"
    raise ValueError(f"not an RL-Restore observation space: {space}")


class SB3Policy:
    """A trained SB3 model as a policy of :mod:`restore_gym.rollout`: ``policy(env, obs) -> actions``, greedy.

    ``observation_mode`` is the mode the model was trained on (default: read from the model). An environment
    of another mode is re-observed in the model's mode (``observe(env.batch, mode)``: the same state, encoded
    differently), so the policy runs on any :class:`RLRestoreVectorEnv`. For ``RecurrentPPO`` the LSTM states
    are carried between calls and reset on rows whose step is 0 (and on a change of batch size).
    """

    def __init__(self, model: BaseAlgorithm, observation_mode: str | None = None) -> None:
        inferred = observation_mode_of(model.observation_space)
        if observation_mode is not None and observation_mode != inferred:
            raise ValueError(f"the model was trained on observation mode {inferred!r}, not {observation_mode!r}")
        self.model = model
        self.observation_mode = inferred
        self.recurrent = isinstance(model, RecurrentPPO)
        self.state: tuple[np.ndarray, ...] | None = None

    def _steps(self, observation: Any) -> np.ndarray:
        if self.observation_mode == "image":
            return observation[:, 0, 0, 4] // 85  # the step plane holds 85 * step
        return np.asarray(observation["step"])

    def __call__(self, env: Any, observation: Any) -> np.ndarray:
        if getattr(env, "observation_mode", self.observation_mode) != self.observation_mode:
            observation = observe(env.batch, self.observation_mode)
        if not self.recurrent:
            return self.model.predict(observation, deterministic=True)[0]
        starts = self._steps(observation) == 0
        if self.state is not None and self.state[0].shape[1] != len(starts):
            self.state = None
        actions, self.state = self.model.predict(observation, state=self.state, episode_start=starts,
                                                 deterministic=True)
        return actions


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> SB3Policy:
    """The greedy :class:`SB3Policy` of a run folder (or its ``model.zip``) written by :func:`train`; the
    algorithm is read from the folder's ``config.yml``."""
    path = Path(path)
    folder, model_file = (path, path / MODEL_FILE) if path.is_dir() else (path.parent, path)
    config_file = folder / CONFIG_FILE
    if not model_file.is_file() or not config_file.is_file():
        raise FileNotFoundError(f"{path} is not an SB3 run: expected {model_file} and {config_file}")
    algo = yaml.safe_load(config_file.read_text())["algo"]
    model = algorithm_class(algo).load(model_file, device=device, custom_objects=_INFERENCE_OBJECTS)
    return SB3Policy(model)
