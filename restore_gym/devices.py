"""The torch device a user names, checked: no silent fallback from a GPU to the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; a RuntimeError (no silent fallback) if it is not available here."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA device; pass device='cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return resolved
