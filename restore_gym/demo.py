"""The main job of the quick start: a batch of test episodes with a random and a ground-truth greedy policy."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from restore_gym.baselines import greedy_oracle_policy, random_policy
from restore_gym.rollout import run_one_episode_each


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
              f"{gain.mean():>+5.2f} dB {np.mean([len(c) for c in result['chains']]):>14.2f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
