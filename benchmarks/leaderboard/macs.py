"""Multiply-adds per patch actually executed: the tools of a chain, an agent's network per decision, a
network's forward pass (Conv2d, Linear, LSTMCell and LSTM layers; biases excluded)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from restore_gym.degrade import PATCH_SIZE
from restore_gym.engine import MAX_TOOLS
from restore_gym.lstm_dqn import QNetwork
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS


def _decisions(chain: Sequence[int]) -> int:
    """Agent decisions a chain took: one per tool, plus the stop unless the chain is full."""
    return len(chain) + (1 if len(chain) < MAX_TOOLS else 0)


def chain_macs(chain: Sequence[int], decision_macs: int | None) -> int:
    """Multiply-adds of a patch restored by ``chain``: its tools, plus ``decision_macs`` per decision."""
    return sum(TOOL_SPECS[t].macs for t in chain) + (decision_macs or 0) * _decisions(chain)


def forward_macs(module: nn.Module, run: Callable[[], Any]) -> int:
    """Multiply-adds per sample of the Conv2d, Linear, LSTMCell and LSTM layers of ``module`` that ``run()``
    calls on a batch of one (biases excluded)."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features
        elif isinstance(layer, nn.LSTMCell):
            total += layer.weight_ih.numel() + layer.weight_hh.numel()
        elif isinstance(layer, nn.LSTM):
            steps = inputs[0].shape[0 if not layer.batch_first else 1] if inputs[0].dim() == 3 else 1
            total += steps * sum(p.numel() for name, p in layer.named_parameters() if name.startswith("weight"))

    kinds = (nn.Conv2d, nn.Linear, nn.LSTMCell, nn.LSTM)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return total


def qnetwork_macs(network: QNetwork) -> int:
    """Multiply-adds of one decision of the LSTM-DQN agent (one 63x63 image)."""
    device = network.q.weight.device
    return forward_macs(network, lambda: network(torch.zeros(1, 3, PATCH_SIZE, PATCH_SIZE, device=device),
                                                 torch.zeros(1, NUM_TOOLS, device=device)))
