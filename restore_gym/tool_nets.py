"""The two tool architectures of RL-Restore (BasicSR-style: small, explicit definitions and a registry) and the
costs of a network: parameters and multiply-adds.

Both are residual (``out = x + net(x)``) with SAME zero padding and take N x 3 x H x W float images of any
size; their submodules are named after the authors' TensorFlow variable scopes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from restore_gym.degrade import PATCH_SIZE


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Stride-1 convolution with SAME zero padding (odd kernels)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class SmallTool(nn.Module):
    """conv 9x9 3->32, ReLU, conv 5x5 32->16, ReLU, conv 5x5 16->3, plus the input (21,827 parameters).

    Submodules are named after the authors' TensorFlow variable scopes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 32, 9)
        self.conv2 = _conv(32, 16, 5)
        self.conv3 = _conv(16, 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restored N x 3 x H x W batch (not clipped)."""
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        return x + self.conv3(y)


class LargeTool(nn.Module):
    """Residual CNN with two inner residual blocks (50,851 parameters).

    a = conv1x1 64->32 (ReLU(conv 5x5 3->64 (x))); s2 = a + conv3x3(ReLU(conv3x3(ReLU(a))));
    s3 = s2 + conv3x3(ReLU(conv3x3(ReLU(s2)))); out = x + conv5x5 64->3 (ReLU(conv1x1 32->64 (s3))).
    Submodules are named after the authors' TensorFlow variable scopes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 64, 5)
        self.conv1_2 = _conv(64, 32, 1)
        self.conv2 = _conv(32, 32, 3)
        self.conv2a = _conv(32, 32, 3)
        self.conv2c = _conv(32, 32, 3)
        self.conv2d = _conv(32, 32, 3)
        self.conv2_2 = _conv(32, 64, 1)
        self.conv3 = _conv(64, 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restored N x 3 x H x W batch (not clipped)."""
        a = self.conv1_2(F.relu(self.conv1(x)))
        s2 = a + self.conv2a(F.relu(self.conv2(F.relu(a))))
        s3 = s2 + self.conv2d(F.relu(self.conv2c(F.relu(s2))))
        return x + self.conv3(F.relu(self.conv2_2(s3)))


TOOL_CLASSES: dict[str, type[nn.Module]] = {"small": SmallTool, "large": LargeTool}
"""The two architectures of the toolbox by size."""


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, height: int = PATCH_SIZE, width: int = PATCH_SIZE) -> int:
    """Multiply-adds of the convolutions of ``module`` on one 3 x ``height`` x ``width`` input (biases excluded).

    Runs a copy of the module on the meta device, so it costs no real computation.
    """
    total = 0

    def hook(conv: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += output.numel() * (conv.in_channels // conv.groups) * kh * kw

    meta = copy.deepcopy(module).to("meta")
    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        meta(torch.empty(1, 3, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total
