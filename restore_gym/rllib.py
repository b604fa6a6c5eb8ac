"""RL-Restore under RLlib (``pip install 'restore-gym[ray]'``, RLlib's new API stack)::

    from ray.rllib.algorithms.ppo import PPOConfig
    from restore_gym.rllib import flatten_observations, register

    config = (PPOConfig().environment(register(), env_config={"observation": "uint8"})
              .env_runners(env_to_module_connector=flatten_observations))
    algo = config.build_algo()

:func:`register` names :func:`make_env` to ``ray.tune.register_env``, so that RLlib's env runners, in this process
or on other machines, build the environment from ``env_config`` (keyword arguments of ``gym.make``). The
environment needs no adapter: its Gymnasium API and spaces go through RLlib's env runners and connectors as they
are, and as every reward is a PSNR gain, an episode's return in RLlib's metrics is its PSNR gain. RLlib's default
models take flat float vectors (an MLP) or float images (a CNN, which refuses uint8), so the Dict observations of
the ``dict`` and ``uint8`` modes (and the ``image`` mode's uint8 image) go through RLlib's own
``FlattenObservations`` connector (:func:`flatten_observations`): one float32 vector, the image flattened, the
previous tool as it is and the step one-hot. A model of one's own may take the Dict instead.

This module is the only one of the library that imports Ray; nothing else imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

try:
    from ray.rllib.connectors.env_to_module import FlattenObservations
    from ray.tune.registry import register_env
except ImportError as error:
    raise ImportError("restore_gym.rllib needs RLlib: pip install 'restore-gym[ray]'") from error

ENV_ID = "RLRestore-v0"


def make_env(env_config: Mapping[str, Any]) -> gym.Env:
    """The environment of one RLlib env runner: ``gym.make(env_config.get("id", "RLRestore-v0"), **rest)``, so
    ``id`` names one of the registered variants (``RLRestoreSevere-v0``, ...) and the other keys are arguments of
    :class:`restore_gym.env.RLRestoreEnv`."""
    kwargs = dict(env_config)  # importing this module imported restore_gym, which registered the ids
    return gym.make(kwargs.pop("id", ENV_ID), **kwargs)


def register(name: str = ENV_ID) -> str:
    """Register :func:`make_env` with ``ray.tune.register_env`` under ``name``; returns ``name`` for
    ``AlgorithmConfig.environment``."""
    register_env(name, make_env)
    return name


def flatten_observations(*args: Any, **kwargs: Any) -> FlattenObservations:
    """RLlib's ``FlattenObservations`` connector, as ``env_to_module_connector`` builds it (its arguments, the
    env and spaces, are not needed)."""
    return FlattenObservations()
