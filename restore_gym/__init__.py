"""restore-gym: RL-Restore (Yu et al., CVPR 2018) as a Gymnasium environment with a PyTorch toolbox.

Importing the package registers ``RLRestore-v0`` (moderate; ``difficulty=`` changes it) and the fixed
variants ``RLRestoreMild-v0``, ``RLRestoreModerate-v0`` and ``RLRestoreSevere-v0``, each with its batched
vector environment. A version fixes the dynamics, so it names its toolbox in ``env.spec.kwargs``: ``-v0``
runs toolbox v2. ``restore_gym.restore_image`` restores a whole photo (:mod:`restore_gym.whole_image`; imported on first
use).

It also makes every process forked from this one run torch on one CPU thread: a forked child inherits
torch's thread pool in a state that deadlocks its next parallel operation (GNU OpenMP), so without this
``gym.make_vec(..., vectorization_mode="async")`` hangs once the parent has run a tool.
"""

import os
import sys

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

# Each version's toolbox.
_VERSION_TOOLBOX = {"v0": "v2"}
_VARIANTS: dict[str, dict] = {}
for _version, _toolbox in _VERSION_TOOLBOX.items():
    _VARIANTS[f"RLRestore-{_version}"] = {"toolbox": _toolbox}
    for _difficulty in ("mild", "moderate", "severe"):
        _VARIANTS[f"RLRestore{_difficulty.capitalize()}-{_version}"] = {"difficulty": _difficulty, "toolbox": _toolbox}

for _env_id, _kwargs in _VARIANTS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="restore_gym.env:RLRestoreEnv",
            vector_entry_point="restore_gym.vector_env:RLRestoreVectorEnv",
            kwargs=_kwargs,
        )


def _one_torch_thread() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_one_torch_thread)


def __getattr__(name: str) -> object:
    if name == "restore_image":  # imported on first use: importing the package loads no torch
        from restore_gym.whole_image import restore_image

        return restore_image
    raise AttributeError(f"module 'restore_gym' has no attribute {name!r}")
