"""``RLRestore-v0``: the restoration MDP of RL-Restore as a Gymnasium environment (see :mod:`restore_gym.engine`).

Actions: ``Discrete(13)``; 0..11 apply tools 1..12, 12 stops. At most 3 tools per episode. Every end
of an episode belongs to the MDP and is reported as ``terminated``; ``truncated`` is always False.

Observations (``observation=``):

- ``"dict"`` (default): ``{"image": float32 3 x 63 x 63 in [-0.5, 1.5], "previous_tool": float32 one-hot of
  the last tool (12; all zero at the first step), "step": Discrete(4)}``, what the paper's agent sees.
  SB3: ``MultiInputPolicy``.
- ``"uint8"``: the same dict with the image as uint8 63 x 63 x 3 (HWC, rounded and clipped to 8 bits),
  so SB3's ``MultiInputPolicy`` puts its NatureCNN on it.
- ``"image"``: one uint8 63 x 63 x 5 image (HWC): RGB, then a plane holding the previous tool
  (``round(255 * (tool + 1) / 12)``, 0 before the first tool) and one holding the step (``85 * step``).
  SB3: ``CnnPolicy``.

``info`` carries ``psnr`` (now), ``psnr_input``, ``toolchain`` (0-based tool ids so far), ``degradation``
(blur sigma, noise sigma, JPEG quality, level triple) and ``patch_source``.

``split="train"`` draws a fresh degraded patch from the image source at every reset (seeded through
``np_random``), or with ``patches="pool"`` a row of a fixed pool of ``pool_size`` degraded patches built once
with ``pool_seed`` and cached (:mod:`restore_gym.pool`; the authors trained this way); ``split="test"`` walks
the frozen test set of the difficulty in order (``reset(seed=...)`` restarts the walk, ``options={"test_index":
k}`` jumps to patch k) and by default does not end on a PSNR drop, as the authors evaluated.
``options={"degraded": ..., "clean": ...}`` restores a given pair. ``precision="bfloat16"`` runs the tools under
bfloat16 autocast with channels-last inputs (the state, rewards and observations stay float32); the default
is float32.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from restore_gym.data import ImageSource, PatchStack
from restore_gym.degrade import PATCH_SIZE
from restore_gym.devices import resolve_device
from restore_gym.engine import (
    MAX_TOOLS,
    NUM_ACTIONS,
    STATE_RANGE,
    PatchBatch,
    PatchSupply,
    check_actions,
    check_flag,
    patch_from_options,
)
from restore_gym.toolbox import DEFAULT_VARIANT, NUM_TOOLS, PRETRAINED_FILES, Toolbox

OBSERVATION_MODES: tuple[str, ...] = ("dict", "uint8", "image")
RENDER_SCALE = 4
_SHIPPED: dict[tuple[str, torch.device], Toolbox] = {}


def shared_pretrained_toolbox(device: torch.device, variant: str = DEFAULT_VARIANT) -> Toolbox:
    """The shipped toolbox ``variant`` on ``device``, loaded once per process and shared by every environment
    using it."""
    key = (PRETRAINED_FILES[variant], device)
    if key not in _SHIPPED:
        _SHIPPED[key] = Toolbox.pretrained(map_location=device, variant=variant)
    return _SHIPPED[key]


def check_render_mode(render_mode: str | None, metadata: dict) -> str | None:
    """``render_mode`` if ``metadata`` lists it (or it is None), else a ValueError."""
    if render_mode not in (None, *metadata["render_modes"]):
        raise ValueError(f"unknown render_mode {render_mode!r}; choose None or one of {metadata['render_modes']}")
    return render_mode


def resolve_toolbox(toolbox: Toolbox | str | os.PathLike | None, device: torch.device) -> Toolbox:
    """``toolbox`` on ``device`` as :meth:`Toolbox.resolve` names it; a shipped one (None, ``"shipped"`` or a
    variant's name) is loaded once per process and device and shared by every environment."""
    if toolbox is None or toolbox == "shipped":
        return shared_pretrained_toolbox(device)
    if isinstance(toolbox, str) and toolbox in PRETRAINED_FILES:
        return shared_pretrained_toolbox(device, toolbox)
    return Toolbox.resolve(toolbox, device)


def toolbox_metadata(spec: Toolbox | str | os.PathLike | None, toolbox: Toolbox) -> dict[str, str]:
    """What an environment records of its tools: the name it was given (``"shipped"`` for None, the path of a
    file, ``"custom"`` for a Toolbox object) and the weights' fingerprint when it was built."""
    if spec is None:
        name = "shipped"
    elif isinstance(spec, Toolbox):
        name = "custom"
    else:
        name = os.fspath(spec)
    return {"toolbox": name, "toolbox_fingerprint": toolbox.fingerprint()}


def build_episodes(
    num: int,
    difficulty: str,
    split: str,
    source: str | os.PathLike | ImageSource,
    toolbox: Toolbox | str | os.PathLike | None,
    device: str | torch.device,
    end_on_psnr_drop: bool | None,
    quantize: bool,
    patches: str = "fresh",
    pool_size: int = 100_000,
    pool_seed: int = 0,
    precision: str = "float32",
) -> tuple[PatchSupply, PatchBatch]:
    """The patch supply and the batch of ``num`` episodes behind an environment (arguments as RLRestoreEnv's)."""
    quantize = check_flag(quantize, "quantize")
    drop = split == "train" if end_on_psnr_drop is None else check_flag(end_on_psnr_drop, "end_on_psnr_drop")
    supply = PatchSupply(source, split, difficulty, patches, pool_size, pool_seed)
    resolved = resolve_device(device)
    return supply, PatchBatch(num, resolve_toolbox(toolbox, resolved), resolved, end_on_psnr_drop=drop,
                              quantize=quantize, precision=precision)


def observation_space(mode: str) -> spaces.Space:
    """The observation space of observation mode ``mode`` (see the module docstring)."""
    previous = spaces.Box(0.0, 1.0, (NUM_TOOLS,), np.float32)
    step = spaces.Discrete(MAX_TOOLS + 1)
    if mode == "dict":
        image = spaces.Box(*STATE_RANGE, (3, PATCH_SIZE, PATCH_SIZE), np.float32)
        return spaces.Dict({"image": image, "previous_tool": previous, "step": step})
    if mode == "uint8":
        image = spaces.Box(0, 255, (PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
        return spaces.Dict({"image": image, "previous_tool": previous, "step": step})
    if mode == "image":
        return spaces.Box(0, 255, (PATCH_SIZE, PATCH_SIZE, 5), np.uint8)
    raise ValueError(f"unknown observation mode {mode!r}; choose one of {', '.join(OBSERVATION_MODES)}")


def _to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    return images.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def observe(batch: PatchBatch, mode: str, rows: np.ndarray | None = None) -> dict[str, np.ndarray] | np.ndarray:
    """The batched observation of every episode of ``batch`` (leading dimension N), or of those in ``rows`` only."""
    if rows is None:
        images, steps, previous_tools = batch.images, batch.steps.copy(), batch.previous
    else:
        images = batch.images.index_select(0, torch.as_tensor(rows, dtype=torch.long, device=batch.device))
        steps, previous_tools = batch.steps[rows], batch.previous[rows]
    count = len(steps)
    if mode == "image":
        frames = np.empty((count, PATCH_SIZE, PATCH_SIZE, 5), dtype=np.uint8)
        frames[..., :3] = _to_uint8_hwc(images)
        frames[..., 3] = np.round(255.0 * (previous_tools + 1) / NUM_TOOLS).astype(np.uint8)[:, None, None]
        frames[..., 4] = (85 * steps).astype(np.uint8)[:, None, None]
        return frames
    previous = np.zeros((count, NUM_TOOLS), dtype=np.float32)
    used = previous_tools >= 0
    previous[np.nonzero(used)[0], previous_tools[used]] = 1.0
    image = images.to("cpu", copy=True).numpy() if mode == "dict" else _to_uint8_hwc(images)
    return {"image": image, "previous_tool": previous, "step": steps}


def observation_row(obs: dict[str, np.ndarray] | np.ndarray, row: int) -> Any:
    """Row ``row`` of a batched observation (:func:`observe`) as the single environment returns it: a copy, its
    ``step`` an int."""
    if isinstance(obs, np.ndarray):
        return obs[row].copy()
    return {"image": obs["image"][row].copy(), "previous_tool": obs["previous_tool"][row].copy(),
            "step": int(obs["step"][row])}


def render_batch_row(batch: PatchBatch, row: int) -> np.ndarray:
    """Input, current and clean image of episode ``row`` side by side, uint8 RGB, scaled up 4x."""
    strip = torch.cat([batch.inputs[row], batch.images[row], batch.clean[row]], dim=2).unsqueeze(0)
    frame = _to_uint8_hwc(strip)[0]
    return frame.repeat(RENDER_SCALE, axis=0).repeat(RENDER_SCALE, axis=1)


class RLRestoreEnv(gym.Env):
    """One RL-Restore episode at a time; see the module docstring for spaces, ends and options.

    Args:
        difficulty: "mild", "moderate" (default; the paper trains on it) or "severe".
        split: "train" (fresh random patches) or "test" (the frozen test set, in order).
        source: "builtin" (scikit-image's photos), "corpus", a folder of images (a string or path), or an
            ImageSource.
        toolbox: the tools: a Toolbox, a name (``"shipped"``, a shipped variant, ``"official"``) or the path of a
            toolbox file; default the shipped toolbox. Shipped tools are shared by all environments of the
            process. ``metadata`` records the name (``"custom"`` for a Toolbox) and the weights' fingerprint.
        device: "cpu", "cuda" or "cuda:N"; an unavailable device is an error, never a silent fallback.
        observation: "dict", "uint8" or "image".
        end_on_psnr_drop: end an episode when its PSNR falls below the input's (default None: on for train only).
        quantize: round the image state to 8 bits after every tool (default off: float32 as the paper).
            Both flags must be bools.
        render_mode: None or "rgb_array".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        difficulty: str = "moderate",
        split: str = "train",
        source: str | os.PathLike | ImageSource = "builtin",
        toolbox: Toolbox | str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        observation: str = "dict",
        end_on_psnr_drop: bool | None = None,
        quantize: bool = False,
        render_mode: str | None = None,
        patches: str = "fresh",
        pool_size: int = 100_000,
        pool_seed: int = 0,
        precision: str = "float32",
    ) -> None:
        self.observation_space = observation_space(observation)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.observation_mode = observation
        self.supply, self.batch = build_episodes(1, difficulty, split, source, toolbox, device, end_on_psnr_drop,
                                                 quantize, patches, pool_size, pool_seed, precision)
        self.toolbox, self.device = self.batch.toolbox, self.batch.device
        self.metadata = {**self.metadata, **toolbox_metadata(toolbox, self.toolbox)}
        self._row = np.zeros(1, dtype=np.int64)
        self._test_index = 0

    @property
    def difficulty(self) -> str:
        return self.supply.difficulty

    def add_episode_listener(self, listener) -> None:
        """Call ``listener(reports)`` with a list of :class:`EpisodeReport` whenever an episode ends."""
        self.batch.listeners.append(listener)

    def _observation(self) -> Any:
        return observation_row(observe(self.batch, self.observation_mode), 0)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        if seed is not None:
            self._test_index = 0
        if "test_index" in options:
            self._test_index = self._check_test_index(options.pop("test_index"))
        if options:
            patches = PatchStack.from_patches([patch_from_options(options)], self.device)
        else:
            patches = self.supply.draw([self.np_random], [self._test_index], self.device)
            self._test_index += self.supply.test_set is not None
        self.batch.load(self._row, patches)
        return self._observation(), self.batch.info(0)

    def _check_test_index(self, index: Any) -> int:
        """The ``test_index`` reset option, if it is an int naming a patch of the test set."""
        if self.supply.test_set is None:
            raise ValueError("the 'test_index' reset option needs split='test'")
        count = len(self.supply.test_set)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"the 'test_index' reset option must be an int in 0..{count - 1}, got {index!r} "
                            f"({type(index).__name__})")
        if not 0 <= index < count:
            raise ValueError(f"test_index {index} is out of range: the {self.difficulty} test set has {count} "
                             f"patches, 0..{count - 1}")
        return int(index)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if np.ndim(action) != 0:
            raise ValueError(f"action must be a single integer 0..{NUM_ACTIONS - 1}, got shape {np.shape(action)}")
        actions = check_actions(np.asarray(action).reshape(1), 1)
        rewards, terminated = self.batch.step(self._row, actions)
        return self._observation(), float(rewards[0]), bool(terminated[0]), False, self.batch.info(0)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_batch_row(self.batch, 0)
