"""The main job of the quick start: a batch of test episodes with a random and a ground-truth greedy policy."""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from restore_gym.oracles import greedy_oracle_actions
from restore_gym.vector_env import RLRestoreVectorEnv

Policy = Callable[[RLRestoreVectorEnv, dict], np.ndarray]


def run_one_episode_each(vec: RLRestoreVectorEnv, policy: Policy, seed: int = 0) -> dict[str, np.ndarray]:
    """Run every sub-environment through one episode; returns per-episode input PSNR, final PSNR and chain length."""
    obs, info = vec.reset(seed=seed)
    psnr_input = info["psnr_input"].copy()
    final = np.full(vec.num_envs, np.nan)
    tools = np.zeros(vec.num_envs, dtype=np.int64)
    while np.isnan(final).any():
        running = np.isnan(final)
        obs, _, terminated, truncated, info = vec.step(policy(vec, obs))
        ended = running & (terminated | truncated)
        final[ended] = info["psnr"][ended]
        tools[ended] = [len(chain) for chain in info["toolchain"][ended]]
    return {"psnr_input": psnr_input, "psnr_final": final, "tools": tools}


def random_policy(seed: int = 0) -> Policy:
    """Uniformly random actions (tools and stop)."""
    rng = np.random.default_rng(seed)
    return lambda vec, obs: rng.integers(0, vec.single_action_space.n, vec.num_envs)


def greedy_oracle_policy(vec: RLRestoreVectorEnv, obs: dict) -> np.ndarray:
    """The tool with the best PSNR against the clean image, or stop when none gains."""
    batch = vec.batch
    return greedy_oracle_actions(batch.toolbox, batch.images, batch.clean, torch.from_numpy(batch.psnr_now)).numpy()


def main(difficulty: str = "moderate", num_envs: int = 64) -> None:
    """Print input and final PSNR of ``num_envs`` test patches under a random and a greedy-oracle policy."""
    start = time.perf_counter()
    vec = gym.make_vec("RLRestore-v0", num_envs=num_envs, difficulty=difficulty, split="test")
    print(f"RLRestore-v0 ({difficulty}, test split): {num_envs} patches, toolbox "
          f"{vec.toolbox.metadata.get('name', 'pretrained')} v{vec.toolbox.version}, "
          f"built in {time.perf_counter() - start:.1f} s")
    print(f"{'policy':<14} {'input PSNR':>11} {'final PSNR':>11} {'gain':>8} {'tools/episode':>14}")
    for name, policy in (("random", random_policy()), ("greedy oracle", greedy_oracle_policy)):
        result = run_one_episode_each(vec, policy)
        gain = result["psnr_final"] - result["psnr_input"]
        print(f"{name:<14} {result['psnr_input'].mean():>8.3f} dB {result['psnr_final'].mean():>8.3f} dB "
              f"{gain.mean():>+5.2f} dB {result['tools'].mean():>14.2f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
