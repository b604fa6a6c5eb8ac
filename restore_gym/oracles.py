"""Ground-truth oracles: policies that look at the clean image, the ceilings a learned agent is measured against."""

from __future__ import annotations

import torch

from restore_gym.engine import STOP
from restore_gym.metrics import psnr_batch
from restore_gym.toolbox import NUM_TOOLS, Toolbox


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
