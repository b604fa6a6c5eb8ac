"""RL-Restore as a Stable-Baselines3 ``VecEnv``: ``PPO``, ``A2C``, ``DQN``, ``QRDQN`` and ``RecurrentPPO`` train on it.

:class:`RLRestoreSB3VecEnv` drives one :class:`~restore_gym.vector_env.RLRestoreVectorEnv` (N episodes in one
batch, on the CPU or a GPU) with SB3's conventions:

- A finished sub-environment is reset in the same step: the returned observation starts its next episode,
  ``infos[i]["terminal_observation"]`` holds the last observation of the finished one (as the single
  environment shows it), and ``infos[i]`` keeps the finished episode's ``psnr``, ``psnr_input``, ``toolchain``,
  ``degradation`` and ``patch_source``; the new episode's info goes to ``reset_infos[i]``.
- ``infos[i]["TimeLimit.truncated"]`` is always False: every end of this MDP (stop, third tool, PSNR drop)
  is a termination, never a time limit, so value targets never bootstrap past an episode's end.
- ``seed(s)`` stores the seeds ``s + i`` that the next ``reset()`` uses: sub-environment ``i`` then replays the
  episodes of a single ``RLRestore-v0`` reset with seed ``s + i``, as the Gymnasium vector environment does.
  Reset options are not supported (``set_options`` with a non-empty dict is an error).
- Sub-environments are rows of one batch, so ``get_attr`` / ``set_attr`` / ``env_method`` act on the shared
  vector environment and give its answer for every index (``observation_space`` / ``action_space`` are the
  per-environment spaces); ``env_method("render")`` gives each row's frame. ``env_is_wrapped`` is always False.
- ``add_episode_listener`` is forwarded, also through SB3 wrappers such as ``VecMonitor``.

Policies per observation mode (``observation=``):

- ``"dict"``: ``MultiInputPolicy``. The float32 3 x 63 x 63 image is not an image space for SB3 (it is float),
  so ``CombinedExtractor`` flattens it (11,907 inputs) next to the tool one-hot and the step one-hot; an MLP
  such as ``policy_kwargs=dict(net_arch=[256, 256])`` suits it, or a custom ``features_extractor_class``.
- ``"uint8"``: ``MultiInputPolicy``. SB3 wraps ``VecTransposeImage`` itself and ``CombinedExtractor`` puts a
  NatureCNN on the 63 x 63 x 3 image (``features_extractor_kwargs=dict(cnn_output_dim=256)`` is its default).
- ``"image"``: ``CnnPolicy`` (``CnnLstmPolicy`` for ``RecurrentPPO``). NatureCNN works as is on the transposed
  5 x 63 x 63 image (its feature map is 64 x 4 x 4); no ``policy_kwargs`` are needed.

``RecurrentPPO`` takes ``MultiInputLstmPolicy`` for ``"dict"`` / ``"uint8"``; ``DQN`` / ``QRDQN`` the same policy
names as above. Size their ``buffer_size`` to memory: an observation takes 12 KB in ``"uint8"``, 20 KB in
``"image"`` and 48 KB in ``"dict"``, stored twice per transition (SB3's default of 10^6 transitions is far too many).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from restore_gym.engine import EpisodeListener, check_actions
from restore_gym.env import observation_row, render_batch_row
from restore_gym.vector_env import RLRestoreVectorEnv

# Vector-environment attributes whose per-environment meaning lives under another name.
_PER_ENV_ATTRIBUTES = {"observation_space": "single_observation_space", "action_space": "single_action_space"}


class RLRestoreSB3VecEnv(VecEnv):
    """N RL-Restore episodes as an SB3 ``VecEnv``; ``num_envs`` and the keyword arguments of
    :class:`RLRestoreVectorEnv` (difficulty, split, source, toolbox, device, observation, end_on_psnr_drop,
    quantize, render_mode; not ``autoreset_mode``: the adapter resets finished sub-environments itself, on a
    NEXT_STEP vector environment). See the module docstring for the semantics."""

    def __init__(self, num_envs: int = 1, **env_kwargs: Any) -> None:
        self._attach(RLRestoreVectorEnv(num_envs, **env_kwargs))

    @classmethod
    def from_vector_env(cls, vector_env: RLRestoreVectorEnv) -> RLRestoreSB3VecEnv:
        """An adapter driving ``vector_env`` (shared, not copied); call ``reset()`` before stepping."""
        if not isinstance(vector_env, RLRestoreVectorEnv):
            raise TypeError(f"expected an RLRestoreVectorEnv (not wrapped), got {type(vector_env).__name__}")
        adapter = cls.__new__(cls)
        adapter._attach(vector_env)
        return adapter

    def _attach(self, vector_env: RLRestoreVectorEnv) -> None:
        if vector_env.autoreset_mode is not AutoresetMode.NEXT_STEP:
            raise ValueError(f"RLRestoreSB3VecEnv resets finished sub-environments itself and needs a vector "
                             f"environment in AutoresetMode.NEXT_STEP (the default), got {vector_env.autoreset_mode}")
        self.vector_env = vector_env
        self._actions: np.ndarray | None = None
        self._started = False
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)

    def add_episode_listener(self, listener: EpisodeListener) -> None:
        """Call ``listener(reports)`` with the :class:`EpisodeReport` list of the episodes ending in a step."""
        self.vector_env.add_episode_listener(listener)

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Only empty options are accepted: this environment takes no reset options."""
        given = options if isinstance(options, list) else [options]
        if any(given):
            raise ValueError(f"RLRestoreSB3VecEnv takes no reset options, got {options!r}")
        self._reset_options()

    def reset(self) -> VecEnvObs:
        """Start a new episode in every sub-environment, with the seeds stored by ``seed()`` (then forgotten)."""
        obs, _ = self.vector_env.reset(seed=list(self._seeds))
        self.reset_infos = [self.vector_env.batch.info(row) for row in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        self._actions = None
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Validate and store one action (0..12) per sub-environment for ``step_wait``."""
        if not self._started:
            raise RuntimeError("step() was called before reset(); call reset() first")
        self._actions = check_actions(actions, self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-environment; those that end are reset at once (see the module docstring)."""
        if self._actions is None:
            raise RuntimeError("step_wait() was called without a pending step_async()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, _ = self.vector_env.step(actions)
        dones = terminated | truncated
        batch = self.vector_env.batch
        infos = [batch.info(row) for row in range(self.num_envs)]
        for row, info in enumerate(infos):
            info["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
        ended = np.nonzero(dones)[0].tolist()
        if ended:
            for row in ended:
                infos[row]["terminal_observation"] = observation_row(obs, row)
            obs, _ = self.vector_env.reset(options={"reset_mask": dones})
            for row in ended:
                self.reset_infos[row] = batch.info(row)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        """Close the shared vector environment."""
        self.vector_env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each sub-environment's frame (input, current and clean image), or Nones without ``rgb_array``."""
        return self._frames(range(self.num_envs))

    def _frames(self, rows: Sequence[int]) -> list[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(f"The render mode is {self.render_mode}, but rendering needs render_mode='rgb_array'.",
                          stacklevel=3)
            return [None for _ in rows]
        return [render_batch_row(self.vector_env.batch, row) for row in rows]

    def _rows(self, indices: VecEnvIndices) -> list[int]:
        rows = [int(i) for i in self._get_indices(indices)]
        bad = [i for i in rows if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"sub-environment indices {bad} out of range for {self.num_envs} environment(s)")
        return rows

    def _attribute_name(self, name: str) -> str:
        resolved = _PER_ENV_ATTRIBUTES.get(name, name)
        if not hasattr(self.vector_env, resolved):
            raise AttributeError(f"the RL-Restore environment has no attribute {name!r}")
        return resolved

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The shared environment's attribute ``attr_name``, once per index (AttributeError if it has none)."""
        rows = self._rows(indices)
        value = getattr(self.vector_env, self._attribute_name(attr_name))
        return [value for _ in rows]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an existing attribute of the shared environment; ``indices`` must cover every sub-environment."""
        rows = self._rows(indices)
        if set(rows) != set(range(self.num_envs)):
            raise ValueError(f"sub-environments share one environment: set_attr({attr_name!r}) must apply to all "
                             f"{self.num_envs} of them (indices=None), got indices {rows}")
        setattr(self.vector_env, self._attribute_name(attr_name), value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Call the shared environment's method once and return its result for every index; ``"render"`` gives
        each index its own frame. ``reset`` and ``step`` are refused: use the VecEnv's own."""
        rows = self._rows(indices)
        if method_name in ("reset", "step"):
            raise ValueError(f"env_method({method_name!r}) would act on every row of the shared batch; "
                             f"call the VecEnv's {method_name}() instead")
        if method_name == "render":
            return self._frames(rows)
        method = getattr(self.vector_env, self._attribute_name(method_name))
        if not callable(method):
            raise AttributeError(f"the RL-Restore environment's attribute {method_name!r} is not a method")
        if not rows:
            return []
        result = method(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Always False: the sub-environments are rows of one batch, not wrapped Gymnasium environments."""
        return [False for _ in self._rows(indices)]


def make_sb3_vec_env(num_envs: int = 1, **env_kwargs: Any) -> RLRestoreSB3VecEnv:
    """``RLRestoreSB3VecEnv(num_envs, **env_kwargs)``: N batched RL-Restore episodes for Stable-Baselines3."""
    return RLRestoreSB3VecEnv(num_envs, **env_kwargs)
