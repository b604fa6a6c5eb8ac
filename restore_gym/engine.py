"""The restoration MDP of RL-Restore for N episodes in lockstep, shared by the single and vector environments.

Each episode holds a degraded 63x63 patch, its clean original and the current image. An action 0..11
applies tool 1..12 to the current image, action 12 stops. Reward = PSNR after the step minus PSNR
before it (0 for stop). An episode ends (``terminated``) on stop, after the third tool, and, when
``end_on_psnr_drop`` is set (the paper's training setting), as soon as its PSNR falls below the input's.

All images of the batch live in one tensor on one device; per step, each chosen tool runs once on the
sub-batch that chose it (:meth:`Toolbox.apply`). The image state stays float32 and unclipped between
steps, as in the authors' system, unless ``quantize`` rounds it to 8 bits after every tool.

Finished episodes are reported to listeners (:class:`EpisodeReport`): the joint training of the tools
subscribes there. An episode is marked ended before its listeners are called, so one that raises still
leaves it ended; stepping an ended episode is a RuntimeError. The toolbox is shared by reference, never
copied, and nothing computed by the tools is cached across steps, so tools updated in place act from the
next step on.

Reset patches must be finite. A tool whose output holds NaN or infinite values raises
:class:`ToolOutputError` naming it (the first such tool of the step); the episodes it ran on have ended
(unreported) and the step changes nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from restore_gym.data import (
    DegradedPatch,
    ImageSource,
    PatchStack,
    TestSet,
    build_test_set,
    load_test_set,
    to_nchw,
)
from restore_gym.degrade import PATCH_SIZE, DegradationParams, check_difficulty
from restore_gym.metrics import psnr_batch
from restore_gym.pool import PatchPool, load_pool
from restore_gym.sources import resolve_source
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS, Toolbox

STOP = NUM_TOOLS
NUM_ACTIONS = NUM_TOOLS + 1
MAX_TOOLS = 3
STATE_RANGE: tuple[float, float] = (-0.5, 1.5)


@dataclass(frozen=True)
class EpisodeReport:
    """A finished episode: its degraded input and clean target (3 x 63 x 63 float32, on the CPU) and the
    0-based tool ids it applied, in order, with the toolbox version that applied them."""

    degraded: torch.Tensor
    clean: torch.Tensor
    chain: tuple[int, ...]
    toolbox_version: int


EpisodeListener = Callable[[list[EpisodeReport]], None]


class ToolOutputError(FloatingPointError):
    """Tool ``tool`` (the paper's number, 1..12; ``tool_name`` its name) produced NaN or infinite values on the
    episodes in ``rows``, which have ended."""

    def __init__(self, tool: int, rows: list[int]) -> None:
        super().__init__(tool, rows)  # the arguments, so that the error pickles (vector environment workers)
        self.tool, self.tool_name, self.rows = tool, TOOL_SPECS[tool - 1].name, rows

    def __str__(self) -> str:
        return (f"tool {self.tool} ({self.tool_name}) produced NaN or infinite values on episode(s) {self.rows}, "
                "which have ended (call reset()); its weights are damaged or diverged: load the toolbox again "
                "with Toolbox.load, which checks them, or retrain the tool")


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is a bool (Python's or numpy's), else a TypeError naming the argument ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


PATCH_MODES: tuple[str, ...] = ("fresh", "pool")
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


class PatchSupply:
    """Where episodes get their patches: in the train split a fresh random draw per episode (``"fresh"``) or a
    row of a fixed pool of degraded patches (``"pool"``, :mod:`restore_gym.pool`); in the test split the
    frozen test set, walked in order."""

    def __init__(self, source: str | os.PathLike | ImageSource, split: str, difficulty: str,
                 patches: str = "fresh", pool_size: int = 100_000, pool_seed: int = 0) -> None:
        self.difficulty = check_difficulty(difficulty)
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; choose 'train' (random patches) or 'test' (frozen test set)")
        if patches not in PATCH_MODES:
            raise ValueError(f"unknown patches={patches!r}; choose 'fresh' (a new degraded patch per episode) or "
                             "'pool' (a fixed pool of degraded patches, as the authors trained)")
        if patches == "pool" and split == "test":
            raise ValueError("patches='pool' is for the train split; the test split always uses the frozen test set")
        self.split, self.patches = split, patches
        self.test_set: TestSet | None = None
        self.source: ImageSource | None = None
        self.pool: PatchPool | None = None
        if split == "test":
            if isinstance(source, str) and source == "builtin":
                self.test_set = load_test_set(difficulty)
            else:
                self.test_set = build_test_set(difficulty, resolve_source(source, "test"))
        else:
            self.source = resolve_source(source, "train")
            self.source.scaled_images()
            if patches == "pool":
                spec = source if isinstance(source, (str, os.PathLike)) else None
                self.pool = load_pool(self.source, difficulty, pool_size, pool_seed, source_spec=spec)

    def draw(self, rngs: Sequence[np.random.Generator], test_indices: Sequence[int],
             device: torch.device | str = "cpu") -> PatchStack:
        """One patch per generator, on ``device``: from the test set at ``test_indices`` (modulo its length), else
        a pool row or a fresh draw chosen with each generator (distinct ones), fresh ones degraded together."""
        if self.test_set is not None:
            ts, rows = self.test_set, [int(i) % len(self.test_set) for i in test_indices]
            return PatchStack(to_nchw(ts.degraded[rows]).to(device), to_nchw(ts.clean[rows]).to(device),
                              [ts.params[i] for i in rows], [ts.sources[i] for i in rows])
        if self.pool is not None:
            return self.pool.patches([int(rng.integers(len(self.pool))) for rng in rngs], device)
        return self.source.sample_patches(self.difficulty, rngs, device)


def patch_from_options(options: dict) -> DegradedPatch:
    """A patch given by ``reset(options={"degraded": ..., "clean": ...})`` (H x W x 3 floats in [0, 1])."""
    unknown = set(options) - {"degraded", "clean", "reset_mask"}
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; expected 'degraded' and 'clean'")
    if ("degraded" in options) != ("clean" in options):
        raise ValueError("reset options must give both 'degraded' and 'clean' patches, or neither")
    pair = []
    for key in ("degraded", "clean"):
        array = np.asarray(options[key])
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        if array.shape != (PATCH_SIZE, PATCH_SIZE, 3) or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"reset option {key!r} must be a {PATCH_SIZE} x {PATCH_SIZE} x 3 float array in "
                             f"[0, 1] (or uint8), got shape {array.shape} and dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"reset option {key!r} holds {int((~np.isfinite(array)).sum())} NaN or infinite "
                             "value(s); pass finite values in [0, 1]")
        if array.min() < 0.0 or array.max() > 1.0:
            raise ValueError(f"reset option {key!r} has values outside [0, 1]")
        pair.append(array.astype(np.float32))
    nan = float("nan")
    return DegradedPatch(pair[0], pair[1], DegradationParams((0, 0, 0), nan, nan, 0), "user", 1.0, 0, 0)


def run_tools(toolbox: Toolbox, images: torch.Tensor, tools: np.ndarray, precision: str = "float32") -> torch.Tensor:
    """Tool ``tools[n]`` on ``images[n]``, in float32 or (``precision="bfloat16"``) under bfloat16 autocast with
    channels-last inputs; float32 out."""
    if precision == "float32":
        return toolbox(images, tools)
    with torch.autocast(images.device.type, dtype=torch.bfloat16):
        return toolbox(images.contiguous(memory_format=torch.channels_last), tools).float()


class PatchBatch:
    """N restoration episodes in lockstep on one device (see the module docstring)."""

    def __init__(
        self,
        num: int,
        toolbox: Toolbox,
        device: torch.device,
        end_on_psnr_drop: bool = True,
        quantize: bool = False,
        precision: str = "float32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose 'float32' or 'bfloat16' (the tools under "
                             "autocast, channels-last; the state stays float32)")
        self.num = num
        self.precision = precision
        self.toolbox = toolbox
        self.device = device
        self.end_on_psnr_drop = end_on_psnr_drop
        self.quantize = quantize
        shape = (num, 3, PATCH_SIZE, PATCH_SIZE)
        self.images = torch.zeros(shape, device=device)
        self.inputs = torch.zeros(shape, device=device)
        self.clean = torch.zeros(shape, device=device)
        self.psnr_input = np.zeros(num)
        self.psnr_now = np.zeros(num)
        self.steps = np.zeros(num, dtype=np.int64)
        self.ended = np.ones(num, dtype=bool)  # no episode yet, or it has ended
        self.previous = np.full(num, -1, dtype=np.int64)
        self.chains: list[list[int]] = [[] for _ in range(num)]
        nan = float("nan")
        self.params: list[DegradationParams] = [DegradationParams((0, 0, 0), nan, nan, 0)] * num
        self.sources: list[tuple[str, float, int, int]] = [("", nan, 0, 0)] * num
        self.listeners: list[EpisodeListener] = []
        self.tool_counts = np.zeros(NUM_TOOLS, dtype=np.int64)

    @torch.inference_mode()
    def load(self, rows: np.ndarray, patches: PatchStack) -> None:
        """Start new episodes in ``rows`` from ``patches`` (one per row, in order)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        degraded, clean = patches.degraded.to(self.device), patches.clean.to(self.device)
        self.images.index_copy_(0, index, degraded)
        self.inputs.index_copy_(0, index, degraded)
        self.clean.index_copy_(0, index, clean)
        psnr = psnr_batch(degraded, clean).cpu().numpy().astype(np.float64)
        self.psnr_input[rows] = self.psnr_now[rows] = psnr
        self.steps[rows] = 0
        self.ended[rows] = False
        self.previous[rows] = -1
        for k, row in enumerate(rows.tolist()):
            self.chains[row] = []
            self.params[row] = patches.params[k]
            self.sources[row] = patches.sources[k]

    @torch.inference_mode()
    def step(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``actions`` to the episodes in ``rows``; returns their rewards and ``terminated`` flags.

        RuntimeError if one of them has ended; :class:`ToolOutputError` if a tool's output is not finite.
        """
        if self.ended[rows].any():
            raise RuntimeError("step() was called on an episode that has ended or not started; call reset() first")
        rewards = np.zeros(len(rows), dtype=np.float64)
        use_tool = actions != STOP
        if use_tool.any():
            tool_rows, tools = rows[use_tool], actions[use_tool]
            index = torch.as_tensor(tool_rows, dtype=torch.long, device=self.device)
            out = run_tools(self.toolbox, self.images.index_select(0, index), tools, self.precision)
            # A float64 sum is finite exactly when every value is (it cannot overflow): one pass over the output.
            finite = torch.isfinite(out.flatten(1).sum(1, dtype=torch.float64)).cpu().numpy()
            if not finite.all():
                culprit = tools[~finite][0]
                ended = tool_rows[~finite & (tools == culprit)]
                self.ended[ended] = True
                raise ToolOutputError(int(culprit) + 1, ended.tolist())
            out = out.clamp_(*STATE_RANGE)
            if self.quantize:
                out = out.mul_(255.0).round_().div_(255.0)
            self.images.index_copy_(0, index, out)
            psnr = psnr_batch(out, self.clean.index_select(0, index)).cpu().numpy().astype(np.float64)
            rewards[use_tool] = psnr - self.psnr_now[tool_rows]
            self.psnr_now[tool_rows] = psnr
            self.steps[tool_rows] += 1
            self.previous[tool_rows] = tools
            np.add.at(self.tool_counts, tools, 1)
            for row, tool in zip(tool_rows.tolist(), tools.tolist()):
                self.chains[row].append(tool)
        terminated = ~use_tool | (self.steps[rows] >= MAX_TOOLS)
        if self.end_on_psnr_drop:
            terminated |= self.psnr_now[rows] < self.psnr_input[rows]
        self.ended[rows[terminated]] = True
        if self.listeners and terminated.any():
            self._report(rows[terminated])
        return rewards, terminated

    def _report(self, rows: np.ndarray) -> None:
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        degraded, clean = self.inputs.index_select(0, index).cpu(), self.clean.index_select(0, index).cpu()
        version = self.toolbox.version
        reports = [EpisodeReport(degraded[k], clean[k], tuple(self.chains[row]), version)
                   for k, row in enumerate(rows.tolist())]
        for listener in self.listeners:
            listener(reports)

    def info(self, row: int) -> dict:
        """What ``info`` carries for episode ``row``: PSNR now and at the start, the toolchain, the degradation."""
        image, scale, top, left = self.sources[row]
        return {
            "psnr": float(self.psnr_now[row]),
            "psnr_input": float(self.psnr_input[row]),
            "toolchain": list(self.chains[row]),
            "degradation": self.params[row].as_dict(),
            "patch_source": {"image": image, "scale": scale, "top": top, "left": left},
        }


def check_actions(actions: object, num: int) -> np.ndarray:
    """Validate a batch of ``num`` actions (integers 0..12); returns an int64 array."""
    array = np.asarray(actions)
    if array.dtype == bool or array.dtype.kind not in "iu":
        raise TypeError(f"actions must be integers 0..{STOP} (0..11 apply tools 1..12, {STOP} stops), "
                        f"got {actions!r} of dtype {array.dtype}")
    if array.shape != (num,):
        raise ValueError(f"expected {num} action(s) of shape ({num},), got shape {array.shape}")
    if ((array < 0) | (array > STOP)).any():
        raise ValueError(f"actions must lie in 0..{STOP} (0..11 apply tools 1..12, {STOP} stops), got {array.tolist()}")
    return array.astype(np.int64)
