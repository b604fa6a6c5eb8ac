"""Policies that need no learning: random, and ground-truth oracles (the ceilings a learned agent is measured against).

Each policy follows :mod:`restore_gym.rollout`'s contract: ``policy(env, observation) -> actions``.
"""

from __future__ import annotations

import numpy as np
import torch

from restore_gym.engine import STOP
from restore_gym.metrics import psnr_batch
from restore_gym.rollout import Policy
from restore_gym.toolbox import NUM_TOOLS, Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv


@torch.inference_mode()
def all_tool_psnrs(toolbox: Toolbox, images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR (N x 12) of every tool applied to every image of the N x 3 x H x W batch, outputs unclipped."""
    n = images.shape[0]
    candidates = images.repeat_interleave(NUM_TOOLS, dim=0)
    tools = torch.arange(NUM_TOOLS).repeat(n)
    outputs = toolbox(candidates, tools)
    return psnr_batch(outputs, clean.repeat_interleave(NUM_TOOLS, dim=0)).view(n, NUM_TOOLS)


def greedy_oracle_actions(toolbox: Toolbox, images: torch.Tensor, clean: torch.Tensor, psnr_now: torch.Tensor
                          ) -> torch.Tensor:
    """The ground-truth greedy action per image: the tool with the best PSNR, or stop if no tool gains."""
    psnrs = all_tool_psnrs(toolbox, images, clean)
    best_psnr, best_tool = psnrs.max(dim=1)
    gains = best_psnr.cpu() > psnr_now.cpu().to(best_psnr.dtype)
    return torch.where(gains, best_tool.cpu(), torch.full_like(best_tool.cpu(), STOP))


def random_policy(seed: int = 0) -> Policy:
    """Uniformly random actions (tools and stop)."""
    rng = np.random.default_rng(seed)
    return lambda vec, obs: rng.integers(0, vec.single_action_space.n, vec.num_envs)


def greedy_oracle_policy(vec: RLRestoreVectorEnv, obs: dict) -> np.ndarray:
    """The tool with the best PSNR against the clean image, or stop when none gains."""
    batch = vec.batch
    return greedy_oracle_actions(batch.toolbox, batch.images, batch.clean, torch.from_numpy(batch.psnr_now)).numpy()
