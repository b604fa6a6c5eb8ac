"""Running policies on a batch of episodes in lockstep.

A policy is any callable ``policy(env, observation) -> actions`` over a :class:`RLRestoreVectorEnv`:
it returns one action (0..12) per sub-environment. A row whose ``observation["step"]`` is 0 begins a new
episode (recurrent policies reset their state there). Oracles may read the environment's ground truth
through ``env.batch``; learned agents must use the observation only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from restore_gym.vector_env import RLRestoreVectorEnv

Policy = Callable[[RLRestoreVectorEnv, Any], np.ndarray]


def run_one_episode_each(vec: RLRestoreVectorEnv, policy: Policy, seed: int | None = 0) -> dict[str, Any]:
    """Run every sub-environment through one episode from ``vec.reset(seed=seed)``.

    Returns per episode: ``psnr_input``, ``psnr_final``, ``chains`` (0-based tool ids) and ``final_images``
    (N x 3 x H x W float32, the image each episode ended with). ``vec`` must autoreset at the next step
    (``AutoresetMode.NEXT_STEP``, the default), which leaves each final image in ``vec.batch`` for a step.
    """
    if vec.autoreset_mode is not AutoresetMode.NEXT_STEP:
        raise ValueError(f"run_one_episode_each needs a vector environment in AutoresetMode.NEXT_STEP, got "
                         f"{vec.autoreset_mode}")
    obs, info = vec.reset(seed=seed)
    psnr_input = info["psnr_input"].copy()
    final = np.full(vec.num_envs, np.nan)
    chains: list[list[int]] = [[] for _ in range(vec.num_envs)]
    final_images = np.zeros((vec.num_envs, *vec.batch.images.shape[1:]), dtype=np.float32)
    while np.isnan(final).any():
        running = np.isnan(final)
        obs, _, terminated, truncated, info = vec.step(np.asarray(policy(vec, obs)))
        ended = np.nonzero(running & (terminated | truncated))[0]
        if ended.size:
            final[ended] = info["psnr"][ended]
            final_images[ended] = vec.batch.images[ended].cpu().numpy()
            for row in ended.tolist():
                chains[row] = list(info["toolchain"][row])
    return {"psnr_input": psnr_input, "psnr_final": final, "chains": chains, "final_images": final_images}
