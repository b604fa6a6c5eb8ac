"""Trained Stable-Baselines3 models as RL-Restore policies, and their run folders.

A run folder of the SB3 training (``agents/sb3.py``) holds ``config.yml`` (its ``algo`` names the algorithm,
a key of :data:`ALGORITHMS`; its ``hyperparams`` the zoo-style block the model was built from) and
``model.zip`` (``model.save``). :func:`load_policy` reads it for inference; :class:`SB3Policy` acts greedily
on any :class:`~restore_gym.vector_env.RLRestoreVectorEnv`, whatever its observation mode.

Loading runs no code from the files. SB3's own ``load`` unpickles entries of the zip's ``data`` (spaces,
policy class, schedules), so it is not used: the model is rebuilt from ``config.yml`` (``yaml.safe_load``;
class names of ``policy_kwargs`` resolve from the fixed :data:`POLICY_CLASSES`) and the environment's known
spaces, then its state dicts (``policy.pth``, ``policy.optimizer.pth``) are read with
``torch.load(weights_only=True)``. Nothing else of the zip is read.
"""

from __future__ import annotations

import inspect
import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from gymnasium import spaces
from sb3_contrib import QRDQN, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecTransposeImage
from torch import nn

from restore_gym.engine import NUM_ACTIONS
from restore_gym.env import observation_space, observe
from restore_gym.records import verify_torch_file
from restore_gym.vector_env import RLRestoreVectorEnv

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C, "dqn": DQN, "ppo": PPO, "qrdqn": QRDQN, "recurrent_ppo": RecurrentPPO,
}
MODEL_FILE, CONFIG_FILE = "model.zip", "config.yml"
# Keys of a hyperparameter block that are not constructor arguments (the zoo's, and joint training's).
ZOO_KEYS: tuple[str, ...] = ("n_envs", "n_timesteps", "policy", "env_kwargs", "joint")
SCHEDULE_KEYS: tuple[str, ...] = ("learning_rate", "clip_range", "clip_range_vf")
# Names that policy_kwargs values of CLASS_KEYS may take (an optional "nn." prefix is allowed).
POLICY_CLASSES: dict[str, type] = {
    "ReLU": nn.ReLU, "Tanh": nn.Tanh, "ELU": nn.ELU, "LeakyReLU": nn.LeakyReLU, "GELU": nn.GELU, "SiLU": nn.SiLU,
    "NatureCNN": NatureCNN, "CombinedExtractor": CombinedExtractor, "FlattenExtractor": FlattenExtractor,
    "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "RMSprop": torch.optim.RMSprop,
}
CLASS_KEYS: tuple[str, ...] = ("activation_fn", "features_extractor_class", "optimizer_class")
_ADVICE = "restore it from a copy or train the model anew"
_DEFAULT_OBSERVATION: str = inspect.signature(RLRestoreVectorEnv).parameters["observation"].default


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``algo`` (a key of :data:`ALGORITHMS`); ValueError listing the known names otherwise."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; known algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def resolve_policy_kwargs(policy_kwargs: Mapping[str, Any], where: str = "policy_kwargs") -> dict[str, Any]:
    """``policy_kwargs`` with the class names of :data:`CLASS_KEYS` replaced by classes of :data:`POLICY_CLASSES`."""
    resolved = dict(policy_kwargs)
    for key in CLASS_KEYS:
        if key in resolved:
            name = resolved[key]
            cls = POLICY_CLASSES.get(name.removeprefix("nn.")) if isinstance(name, str) else None
            if cls is None:
                raise ValueError(f"{where}: policy_kwargs {key} {name!r} is not a known name; "
                                 f"known: {', '.join(POLICY_CLASSES)}")
            resolved[key] = cls
    return resolved


def observation_mode_of(space: spaces.Space) -> str:
    """The RL-Restore observation mode ("dict", "uint8" or "image") of ``space``, channel-first or last."""
    if isinstance(space, spaces.Box) and len(space.shape) == 3 and 5 in (space.shape[0], space.shape[-1]):
        return "image"
    if isinstance(space, spaces.Dict) and set(space.spaces) == {"image", "previous_tool", "step"}:
        return "uint8" if space["image"].dtype == np.uint8 else "dict"
    raise ValueError(f"not an RL-Restore observation space: {space}")


def _channels_first(space: spaces.Space) -> spaces.Space:
    if is_image_space(space) and not is_image_space_channels_first(space):
        return VecTransposeImage.transpose_space(space)
    return space


def model_observation_space(mode: str) -> spaces.Space:
    """The observation space an SB3 model trained on observation mode ``mode`` holds: the environment's, with
    its images channel-first as SB3's ``VecTransposeImage`` hands them to the model."""
    space = observation_space(mode)
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: _channels_first(subspace) for key, subspace in space.spaces.items()})
    return _channels_first(space)


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


def _model_of_config(config: Any, config_file: Path, device: str | torch.device) -> BaseAlgorithm:
    """The untrained model that ``config.yml``'s ``config`` describes (for inference: schedules take SB3's
    defaults); ValueError naming ``config_file`` when it describes none."""
    try:
        cls = algorithm_class(config["algo"])
        block = config["hyperparams"]
        mode = block.get("env_kwargs", {}).get("observation", _DEFAULT_OBSERVATION)
        kwargs = {key: value for key, value in block.items() if key not in (*ZOO_KEYS, *SCHEDULE_KEYS)}
        kwargs["policy_kwargs"] = resolve_policy_kwargs(block.get("policy_kwargs", {}))
        model = cls(block["policy"], env=None, device=device, _init_setup_model=False, **kwargs)
        model.observation_space, model.action_space = model_observation_space(mode), spaces.Discrete(NUM_ACTIONS)
        model.n_envs = int(block.get("n_envs", 1))
        model._setup_model()
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as error:  # SB3 checks with assert
        raise ValueError(f"{config_file} does not describe an SB3 model of restore-gym "
                         f"({type(error).__name__}: {error}); it is written by agents/sb3.py") from error
    return model


def _state_dicts(model_file: Path, names: list[str], device: str | torch.device) -> dict[str, Any]:
    """The state dicts ``names`` (``policy``, ``policy.optimizer``) of ``model_file``, each ``NAME.pth`` read
    with ``torch.load(weights_only=True)``; ValueError naming the file when it is damaged or lacks one."""
    verify_torch_file(model_file, advice=_ADVICE)
    states = {}
    try:
        with zipfile.ZipFile(model_file) as archive:
            for name in names:
                states[name] = torch.load(io.BytesIO(archive.read(f"{name}.pth")), map_location=device,
                                          weights_only=True)
    except Exception as error:  # no zip archive, a missing member (KeyError) or whatever torch.load raises
        raise ValueError(f"{model_file} is not a readable SB3 model ({type(error).__name__}: {error}); "
                         f"{_ADVICE}") from error
    return states


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> SB3Policy:
    """The greedy :class:`SB3Policy` of a run folder (or its ``model.zip``) written by ``agents/sb3.py``:
    the model ``config.yml`` describes, with the weights (and optimiser state) of ``model.zip``; no code of
    either file runs (see the module docstring). ValueError naming the file when they do not fit."""
    path = Path(path)
    folder, model_file = (path, path / MODEL_FILE) if path.is_dir() else (path.parent, path)
    config_file = folder / CONFIG_FILE
    if not model_file.is_file() or not config_file.is_file():
        raise FileNotFoundError(f"{path} is not an SB3 run: expected {model_file} and {config_file}")
    model = _model_of_config(yaml.safe_load(config_file.read_text()), config_file, device)
    try:
        model.set_parameters(_state_dicts(model_file, model._get_torch_save_params()[0], device), device=device)
    except RuntimeError as error:  # load_state_dict: missing, unexpected or misshapen weights
        raise ValueError(f"the weights of {model_file} do not fit the model {config_file} describes: {error}") \
            from error
    return SB3Policy(model)
