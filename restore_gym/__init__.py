"""restore-gym: RL-Restore (Yu et al., CVPR 2018) as a Gymnasium environment with a PyTorch toolbox.

Importing the package registers ``RLRestore-v0`` (moderate; ``difficulty=`` changes it) and the fixed
variants ``RLRestoreMild-v0``, ``RLRestoreModerate-v0`` and ``RLRestoreSevere-v0``, each with its batched
vector environment.
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

_VARIANTS: dict[str, dict] = {"RLRestore-v0": {}}
_VARIANTS.update({f"RLRestore{d.capitalize()}-v0": {"difficulty": d} for d in ("mild", "moderate", "severe")})

for _env_id, _kwargs in _VARIANTS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="restore_gym.env:RLRestoreEnv",
            vector_entry_point="restore_gym.vector_env:RLRestoreVectorEnv",
            kwargs=_kwargs,
        )
