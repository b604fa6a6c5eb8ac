"""Single restoration networks of the paper's comparison: DnCNN, VDSR, VDSR-s, their files and restoring with them.

The paper compares RL-Restore with one network that restores every mixture of distortions in one pass
(DnCNN and VDSR, and a small VDSR, "VDSR-s", whose size the reference does not give). Here:

- ``dncnn``: DnCNN-S (Zhang et al. 2017) as KAIR builds it: conv 3->w + ReLU, ``depth - 2`` x (conv w->w,
  BatchNorm, ReLU; the convolution without the bias BatchNorm makes redundant), conv w->3; it predicts the
  distortion, ``out = x - net(x)``. Its depth is DnCNN-S's 17; its width is narrowed from 64 to 56 so that
  it has about the toolbox's parameter budget (428,123 parameters against the toolbox's 436,068, -1.8%).
- ``vdsr``: VDSR (Kim et al. 2016): 20 convolutions 3x3 of 64 channels (ReLU between), 3 channels in and
  out, residual ``out = x + net(x)``: 668,227 parameters, VDSR's published size.
- ``vdsr-s``: our small VDSR, since the reference gives no size: the same 20 layers at half the width
  (32 channels), 168,227 parameters and 0.67 G multiply-adds per 63x63 patch, about what the costliest
  toolchain (three large tools, 0.60 G) spends; its 41x41 receptive field still covers the 21x21 blur.

A network file is a ``torch.save`` dict (``format``, ``arch``, ``config``, ``iteration``, ``state_dict``);
training checkpoints hold the same keys and more. Their training is the script ``agents/single_network.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restore_gym.devices import resolve_device
from restore_gym.engine import STATE_RANGE
from restore_gym.records import load_torch_file

NETWORK_FORMAT = "restore-gym-single-network-v1"


def _conv(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, stride 1, SAME zero padding."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def _he_init(network: nn.Module) -> None:
    """He-normal weights (fan in, ReLU) and zero biases for every convolution, as VDSR and DnCNN initialise."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class DnCNN(nn.Module):
    """DnCNN: conv+ReLU, ``depth - 2`` x (conv without bias, BatchNorm, ReLU), conv; ``out = x - net(x)``."""

    def __init__(self, depth: int = 17, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [_conv(width, width, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(_conv(width, channels))
        self.body = nn.Sequential(*layers)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restored N x C x H x W batch (not clipped)."""
        return x - self.body(x)


class VDSR(nn.Module):
    """VDSR: ``depth`` 3x3 convolutions of ``width`` channels with ReLU between; ``out = x + net(x)``."""

    def __init__(self, depth: int = 20, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [_conv(width, width), nn.ReLU(inplace=True)]
        layers.append(_conv(width, channels))
        self.body = nn.Sequential(*layers)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restored N x C x H x W batch (not clipped)."""
        return x + self.body(x)


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "dncnn": partial(DnCNN, depth=17, width=56),
    "vdsr": partial(VDSR, depth=20, width=64),
    "vdsr-s": partial(VDSR, depth=20, width=32),
}
"""Constructors of the three networks by name (see the module docstring for their sizes)."""


def check_arch(arch: str) -> str:
    """``arch`` if it is one of :data:`ARCHITECTURES`, else a ValueError listing them."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return arch


def build_network(arch: str) -> nn.Module:
    """A freshly initialised network of architecture ``arch`` (uses torch's global generator)."""
    return ARCHITECTURES[check_arch(arch)]()


@torch.inference_mode()
def restore(network: nn.Module, degraded: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The network's output on an N x 3 x H x W batch, in chunks, bounded like the environment's state
    (``STATE_RANGE``); the network is left in eval mode."""
    network.eval()
    return torch.cat([network(part).clamp_(*STATE_RANGE) for part in degraded.split(chunk)])


def network_payload(network: nn.Module, config: dict[str, Any], iteration: int) -> dict[str, Any]:
    """The fields shared by network files and checkpoints (all that :func:`load_network` reads); ``config``
    is the training config as a dict, its ``arch`` the network's architecture."""
    return {
        "format": NETWORK_FORMAT,
        "arch": config["arch"],
        "config": dict(config),
        "iteration": iteration,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }


def read_network_file(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of a network file or checkpoint; ValueError naming the file if it is unreadable
    or not a single network of :data:`ARCHITECTURES`, FileNotFoundError if it is missing."""
    path = Path(path)
    payload = load_torch_file(path, "network file")
    if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
        raise ValueError(f"{path} is not a single-network file of restore_gym.networks (format "
                         f"{NETWORK_FORMAT!r})")
    if payload.get("arch") not in ARCHITECTURES:
        raise ValueError(f"{path} holds architecture {payload.get('arch')!r}; known: {', '.join(ARCHITECTURES)}")
    return payload


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The network of a network file or checkpoint on ``device`` in eval mode, and the file's other fields."""
    payload = read_network_file(path)
    network = build_network(payload["arch"])
    try:
        network.load_state_dict(payload.pop("state_dict"))
    except RuntimeError as error:
        raise ValueError(f"{path} does not match the {payload['arch']} architecture: {error}") from error
    return network.to(resolve_device(device)).eval(), payload
