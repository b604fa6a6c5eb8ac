"""Whole photos restored by the RL-Restore agent: the authors' patch vote, and a toolchain per region.

:func:`restore_image` takes an H x W x 3 RGB image, float32 in [0, 1] (uint8 is divided by 255), of any size of
at least 63 x 63, and returns a :class:`Restoration`: the restored image (float32, not clipped; like the
environment's state it is only bounded to [-0.5, 1.5] after each tool: clip and quantize when writing,
:mod:`restore_gym.image_io`) and a JSON-ready record. The image stays on the CPU; patches and tiles go to the
device in batches, so memory holds the image, one or two working copies and one batch, whatever the size.

``mode="vote"`` (the default), the authors' "mine" mode, as the reference describes their test script (their code is not
beside this project; where we are unsure, we say so):

- 63 x 63 patches at stride 63 from the top-left corner tile the image. The last columns and rows that do
  not fill a patch do not vote (unsure: we found no word on them); they are restored all the same, since the
  tools run on the whole image.
- At each step every patch's agent takes its greedy action on its patch of the current image, with its own
  LSTM state carried across steps and, as its previous action, the tool voted at the step before (none at
  the first step), the same for every patch.
- The most frequent action wins; ties go to the lowest action id, so a tool beats stop (unsure: the authors'
  tie-break is not documented).
- Stop ends the restoration; otherwise the tool runs on the whole image (in tiles,
  :func:`restore_gym.tiling.run_tiled`, equal to an untiled run up to float rounding). At most 3 tools.

``mode="tiles"``, ours: every region gets its own toolchain.

- 63 x 63 decision patches on a grid at ``stride`` pixels (default 48: 15 pixels of overlap), the last row
  and column flush with the image's edges.
- Each patch's agent runs its own greedy chain (at most 3 tools, until it stops), as on a patch of the
  environment. Each tool runs on the patch with a context margin of the tools' receptive radius (8 pixels)
  times the tools still to come, clipped at the image border, so that a patch's pixels are exactly (to float
  rounding) its chain applied to the whole image.
- The patches' outputs are blended with raised-cosine weights that sum to one at every pixel
  (:func:`restore_gym.tiling.blend_weights`): no seams, and where neighbouring chains agree the blend is
  that chain's output.

The record holds the mode, the image's size, the seconds taken, the toolbox's fingerprint, and per mode the
vote counts of every step and the chain, or the grid, each patch's chain and how often each chain was chosen.
Tool ids are 0-based (the paper's tool 1 is id 0); names come with them.

:func:`apply_network` runs one network (a tool, a single network of :mod:`restore_gym.networks`) on a whole
image in tiles: the baselines of the full-image benchmark.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from restore_gym.degrade import PATCH_SIZE
from restore_gym.devices import resolve_device
from restore_gym.engine import MAX_TOOLS, NUM_ACTIONS, STATE_RANGE, STOP
from restore_gym.lstm_dqn import (
    LSTMDQNPolicy,
    LSTMState,
    QNetwork,
    load_agent,
    load_pretrained_agent,
    previous_tool_onehot,
)
from restore_gym.official import OFFICIAL
from restore_gym.records import file_sha256
from restore_gym.tiling import (
    Progress,
    axis_starts,
    batches_by_shape,
    blend_weights,
    from_batch,
    receptive_radius,
    run_tiled,
    to_batch,
)
from restore_gym.toolbox import TOOL_SPECS, Toolbox

MODES: tuple[str, ...] = ("vote", "tiles")
TILE_STRIDE = 48
AGENT_BATCH = 256  # patches per agent call (vote)
PATCH_BATCH = 16  # decision patches restored together (tiles): their regions are at most 111 x 111
TOOL_TILE = 256  # whole-image tool runs: tiles of 256 x 256 plus the margin
TOOL_BATCH = 2

AgentSpec = QNetwork | LSTMDQNPolicy | str | os.PathLike | None
ToolboxSpec = Toolbox | str | os.PathLike | None


@dataclass(frozen=True)
class Restoration:
    """The restored H x W x 3 float32 ``image`` (not clipped) and the JSON-ready ``record`` of how."""

    image: np.ndarray
    record: dict[str, Any]


def resolve_agent(spec: AgentSpec, device: str | torch.device = "cpu") -> tuple[QNetwork, dict[str, Any]]:
    """The Q-network an agent name gives, on ``device``, and how a record names it: None or ``"shipped"`` (the
    shipped agent), ``"official"`` (the authors' agent once converted, :mod:`restore_gym.official`), an agent file
    or training checkpoint, the folder of the authors' release that holds ``model.index``, or a
    :class:`QNetwork` or :class:`LSTMDQNPolicy`."""
    device = resolve_device(device)
    if isinstance(spec, LSTMDQNPolicy):
        spec = spec.network
    if isinstance(spec, QNetwork):
        return spec.to(device), {"name": "given"}
    if spec is None or spec == "shipped":
        return load_pretrained_agent(device)[0], {"name": "shipped"}
    if spec == OFFICIAL:
        return LSTMDQNPolicy.resolve(OFFICIAL, device).network, {"name": "official (converted)"}
    path = Path(spec)
    if path.is_dir():
        return QNetwork.from_official(path).to(device), {"name": "authors' release", "folder": path.name}
    if not path.exists():
        raise FileNotFoundError(f"agent {spec} does not exist; name 'shipped', an agent file or the folder of the "
                                "authors' release that holds model.index")
    return load_agent(path, device)[0], {"name": path.name, "sha256": file_sha256(path)}


def resolve_toolbox(spec: ToolboxSpec, device: str | torch.device = "cpu") -> Toolbox:
    """The toolbox a name gives (see :meth:`Toolbox.resolve`), or the authors' released tools for a folder
    holding ``tool01`` .. ``tool12``, on ``device``."""
    if isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir():
        return Toolbox.from_official(spec).to(resolve_device(device))
    return Toolbox.resolve(spec, resolve_device(device))


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as H x W x 3 float32 in [0, 1] (uint8 divided by 255; float32 not copied); ValueError unless it
    is finite, in range and at least one agent patch (63 x 63) in size."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / np.float32(255.0)
    elif not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a float image in [0, 1] or uint8, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    height, width = image.shape[:2]
    if min(height, width) < PATCH_SIZE:
        raise ValueError(f"the image is {height}x{width} pixels, smaller than one {PATCH_SIZE}x{PATCH_SIZE} patch of "
                         f"the agent: restoring needs at least {PATCH_SIZE}x{PATCH_SIZE} pixels")
    low, high = float(image.min()), float(image.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > 1.0:
        raise ValueError(f"image values must be finite and in [0, 1], got min {low:g} and max {high:g}")
    return image


def majority(actions: np.ndarray) -> int:
    """The most frequent of the actions (0..12); ties go to the lowest action id."""
    return int(np.argmax(np.bincount(np.asarray(actions, dtype=np.int64), minlength=NUM_ACTIONS)))


def tool_radius(toolbox: Toolbox) -> int:
    """The largest receptive radius of the toolbox's tools (8 pixels for both architectures)."""
    return max(receptive_radius(tool) for tool in toolbox.tools)


def chain_names(chain: list[int]) -> str:
    """A chain of 0-based tool ids as their names, e.g. ``denoise-3 > deblur-2`` (``stop`` when empty)."""
    return " > ".join(TOOL_SPECS[tool].name for tool in chain) or "stop"


def _bounded(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: network(x).clamp_(*STATE_RANGE)


def apply_network(image: np.ndarray, network: nn.Module, device: str | torch.device = "cpu", tile: int = TOOL_TILE,
                  batch: int = TOOL_BATCH, progress: Progress | None = None) -> np.ndarray:
    """``network`` (a tool, or a single network of :mod:`restore_gym.networks`; put in eval mode) on the whole
    H x W x 3 float32 ``image`` in tiles with its receptive radius as margin; output bounded like the
    environment's state, not clipped."""
    network.eval()
    return run_tiled(_bounded(network.to(device)), image, receptive_radius(network), tile, batch, device, progress)


def _patch_actions(network: QNetwork, image: np.ndarray, corners: list[tuple[int, int]], previous: int,
                   state: LSTMState, device: torch.device) -> tuple[np.ndarray, LSTMState]:
    """Every patch's greedy action on its patch of ``image`` (previous action ``previous`` for all), and the
    patches' new LSTM state."""
    actions, hs, cs = [], [], []
    for start in range(0, len(corners), AGENT_BATCH):
        part = corners[start:start + AGENT_BATCH]
        patches = to_batch([image[y:y + PATCH_SIZE, x:x + PATCH_SIZE] for y, x in part], device)
        onehot = previous_tool_onehot(torch.full((len(part),), previous, device=device))
        q_values, (h, c) = network(patches, onehot, (state[0][start:start + len(part)],
                                                     state[1][start:start + len(part)]))
        actions.append(q_values.argmax(dim=1).cpu().numpy())
        hs.append(h)
        cs.append(c)
    return np.concatenate(actions), (torch.cat(hs), torch.cat(cs))


def _vote(network: QNetwork, toolbox: Toolbox, image: np.ndarray, device: torch.device, bar: tqdm
          ) -> tuple[np.ndarray, dict[str, Any]]:
    rows, cols = image.shape[0] // PATCH_SIZE, image.shape[1] // PATCH_SIZE
    corners = [(r * PATCH_SIZE, c * PATCH_SIZE) for r in range(rows) for c in range(cols)]
    state = network.initial_state(len(corners), device)
    current, previous, chain, steps = image, -1, [], []
    for _ in range(MAX_TOOLS):
        actions, state = _patch_actions(network, current, corners, previous, state, device)
        bar.update(len(corners))
        action = majority(actions)
        counts = np.bincount(actions, minlength=NUM_ACTIONS)
        steps.append({"action": action, "tool": "stop" if action == STOP else TOOL_SPECS[action].name,
                      "votes": {("stop" if a == STOP else TOOL_SPECS[a].name): int(n)
                                for a, n in enumerate(counts) if n}})
        if action == STOP:
            break
        current = apply_network(current, toolbox.tools[action], device, progress=bar.update)
        chain.append(action)
        previous = action
    return current, {"patches": len(corners), "grid": [rows, cols], "steps": steps, "chain": chain,
                     "chain_names": chain_names(chain), "not_voting": {"bottom_rows": image.shape[0] % PATCH_SIZE,
                                                                       "right_columns": image.shape[1] % PATCH_SIZE}}


def _run_chains(network: QNetwork, toolbox: Toolbox, regions: torch.Tensor, margins: tuple[int, int, int, int],
                full_margin: int, radius: int) -> tuple[torch.Tensor, list[list[int]]]:
    """Each patch's greedy chain on its context region (patch + ``margins`` top, bottom, left, right); returns the
    restored patches (N x 3 x 63 x 63) and the chains. After each tool the ``radius`` outermost pixels on every
    side that is not the image border (its margin is the full one) no longer hold the chain's values on the whole
    image and are cut off."""
    top, _, left, _ = margins
    cut = [radius if margin == full_margin else 0 for margin in margins]
    n = regions.shape[0]
    state = network.initial_state(n, regions.device)
    previous = torch.full((n,), -1, dtype=torch.long, device=regions.device)
    stopped = torch.zeros(n, dtype=torch.bool, device=regions.device)
    chains: list[list[int]] = [[] for _ in range(n)]
    x = regions
    for _ in range(MAX_TOOLS):
        q_values, state = network(x[:, :, top:top + PATCH_SIZE, left:left + PATCH_SIZE], previous_tool_onehot(previous),
                                  state)
        actions = torch.where(stopped, STOP, q_values.argmax(dim=1))
        stopped |= actions == STOP
        active = torch.nonzero(~stopped).squeeze(1)
        if not active.numel():
            break
        x[active] = toolbox.apply(x[active], actions[active]).clamp_(*STATE_RANGE)
        for row in active.tolist():
            chains[row].append(int(actions[row]))
        previous = actions
        x = x[:, :, cut[0]:x.shape[2] - cut[1], cut[2]:x.shape[3] - cut[3]]
        top, left = top - cut[0], left - cut[2]
    return x[:, :, top:top + PATCH_SIZE, left:left + PATCH_SIZE], chains


def _tiles(network: QNetwork, toolbox: Toolbox, image: np.ndarray, stride: int, batch: int, device: torch.device,
           bar: tqdm) -> tuple[np.ndarray, dict[str, Any]]:
    height, width = image.shape[:2]
    tops, lefts = axis_starts(height, PATCH_SIZE, stride), axis_starts(width, PATCH_SIZE, stride)
    row_weights, col_weights = blend_weights(height, tops, PATCH_SIZE), blend_weights(width, lefts, PATCH_SIZE)
    radius = tool_radius(toolbox)
    full_margin = radius * MAX_TOOLS

    def margins(patch: tuple[int, int]) -> tuple[int, int, int, int]:
        top, left = tops[patch[0]], lefts[patch[1]]
        return (min(full_margin, top), min(full_margin, height - top - PATCH_SIZE),
                min(full_margin, left), min(full_margin, width - left - PATCH_SIZE))

    out = np.zeros(image.shape, dtype=np.float32)
    chains: list[list[int]] = [[] for _ in range(len(tops) * len(lefts))]
    patches = [(i, j) for i in range(len(tops)) for j in range(len(lefts))]
    for group in batches_by_shape(patches, margins, batch):
        m = margins(group[0])
        regions = [image[tops[i] - m[0]:tops[i] + PATCH_SIZE + m[1], lefts[j] - m[2]:lefts[j] + PATCH_SIZE + m[3]]
                   for i, j in group]
        restored, group_chains = _run_chains(network, toolbox, to_batch(regions, device), m, full_margin, radius)
        for (i, j), patch, chain in zip(group, from_batch(restored), group_chains):
            weight = row_weights[i][:, None, None] * col_weights[j][None, :, None]
            out[tops[i]:tops[i] + PATCH_SIZE, lefts[j]:lefts[j] + PATCH_SIZE] += patch * weight
            chains[i * len(lefts) + j] = chain
        bar.update(len(group))
    counts = Counter(tuple(chain) for chain in chains)
    return out, {"patches": len(patches), "stride": stride, "margin": full_margin,
                 "grid": {"tops": tops, "lefts": lefts}, "chains": chains,
                 "tools_per_patch": float(np.mean([len(chain) for chain in chains])),
                 "chain_counts": [{"chain": list(chain), "names": chain_names(list(chain)), "patches": n}
                                  for chain, n in counts.most_common()]}


@torch.inference_mode()
def restore_image(image: np.ndarray, agent: AgentSpec = None, toolbox: ToolboxSpec = None, mode: str = "vote",
                  device: str | torch.device = "cpu", stride: int = TILE_STRIDE, batch: int = PATCH_BATCH,
                  progress: bool = False) -> Restoration:
    """Restore a whole H x W x 3 image with ``agent`` and ``toolbox`` (objects or names, see
    :func:`resolve_agent` and :func:`resolve_toolbox`; default: the shipped ones) in ``mode`` ``"vote"`` or
    ``"tiles"`` (see the module docstring) on ``device``. ``stride`` and ``batch`` set the tiles mode's grid
    and how many decision patches are restored at once (memory); ``progress`` shows a progress bar."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    image = check_image(image)
    device = resolve_device(device)
    network, agent_record = resolve_agent(agent, device)
    toolbox = resolve_toolbox(toolbox, device)
    network.eval()
    start = time.perf_counter()
    height, width = image.shape[:2]
    if mode == "vote":
        tool_tiles = -(-height // TOOL_TILE) * -(-width // TOOL_TILE)
        total = MAX_TOOLS * ((height // PATCH_SIZE) * (width // PATCH_SIZE) + tool_tiles)
    else:
        total = len(axis_starts(height, PATCH_SIZE, stride)) * len(axis_starts(width, PATCH_SIZE, stride))
    with tqdm(total=total, unit="patch", desc=f"restoring ({mode})", disable=not progress, leave=False) as bar:
        if mode == "vote":
            restored, details = _vote(network, toolbox, image, device, bar)
        else:
            restored, details = _tiles(network, toolbox, image, stride, batch, device, bar)
    record = {
        "mode": mode,
        "size": [height, width],
        "megapixels": height * width / 1e6,
        "seconds": time.perf_counter() - start,
        "device": str(device),
        "agent": agent_record,
        "toolbox": {"fingerprint": toolbox.fingerprint(), "version": toolbox.version,
                    "name": toolbox.metadata.get("name")},
        "tool_names": [spec.name for spec in TOOL_SPECS],
        mode: details,
    }
    return Restoration(restored, record)
