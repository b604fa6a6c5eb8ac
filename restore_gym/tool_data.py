"""The training data of a tool: which distortions a patch carries, and what ran on it before the tool.

A tool's own distortion family is drawn inside its band; the *context* decides what comes with it:

- ``"slight"`` (toolbox v1 and v2, the paper's text): noise sigma in :data:`SLIGHT_NOISE`, JPEG quality
  in :data:`SLIGHT_JPEG`, no blur besides a deblurring tool's own.
- ``"mdp"`` (toolbox v3): the distortions the MDP hands a tool. A level triple is drawn uniformly from
  those whose sum minus 2 lies in :attr:`DrawConfig.level_sums` (9..20 is the union of mild, moderate and
  severe) and whose own-family level overlaps the tool's band; the other two families take the values
  of their levels, the own family a value drawn uniformly in the overlap of its level and the band. A
  share ``slight_prob`` of the patches keeps the slight context, and a share ``off_band_prob`` draws the
  own family at any level (what a tool meets when the agent applies it off its band). With
  ``balance_difficulties`` the triple is drawn in two stages instead: a difficulty uniformly (mild, moderate,
  severe: the test sets weigh them alike; triples outside their level sums form one more group), then a triple
  uniformly among the allowed ones of that difficulty. Uniform over triples, mild (3 level sums) is drawn far
  less often than moderate (6): for tool 8, 8% of the in-band draws.

A share ``prior_tool_prob`` of the distorted patches then goes through one tool of a *prior toolbox*
drawn from ``prior_tools`` outside the tool's own family: a tool applied at step 2 or 3 meets the output
of the tools before it, not a freshly distorted patch.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from restore_gym.data import ImageSource, to_nchw
from restore_gym.degrade import (
    BLUR_SIGMA_GRID,
    JPEG_QUALITY_GRID,
    LEVEL_SUM_RANGES,
    MARGIN,
    NOISE_SIGMA_GRID,
    NUM_LEVELS,
    DegradationParams,
    as_float_image,
    check_generator,
    degrade,
)
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS, Toolbox, ToolSpec

SLIGHT_NOISE: tuple[float, float] = (0.0, 2.0)
SLIGHT_JPEG: tuple[float, float] = (90.0, 100.0)
CONTEXTS: tuple[str, ...] = ("slight", "mdp")
FAMILIES: tuple[str, ...] = ("blur", "noise", "jpeg")
_GRIDS = {"blur": BLUR_SIGMA_GRID, "noise": NOISE_SIGMA_GRID, "jpeg": JPEG_QUALITY_GRID}


@dataclass(frozen=True)
class DrawConfig:
    """How a tool's training distortions are drawn (see the module docstring)."""

    context: str = "slight"
    level_sums: tuple[int, int] = (9, 20)
    slight_prob: float = 0.0
    off_band_prob: float = 0.0
    prior_tool_prob: float = 0.0
    prior_tools: tuple[int, ...] = field(default=())
    balance_difficulties: bool = False

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown context {self.context!r}; choose one of {', '.join(CONTEXTS)}")
        low, high = self.level_sums
        if not 1 <= low <= high <= 3 * NUM_LEVELS - 2:
            raise ValueError(f"level_sums must satisfy 1 <= low <= high <= {3 * NUM_LEVELS - 2}, got {self.level_sums}")
        for name in ("slight_prob", "off_band_prob", "prior_tool_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if any(not 1 <= t <= NUM_TOOLS for t in self.prior_tools):
            raise ValueError(f"prior_tools are 1-based tool numbers in 1..{NUM_TOOLS}, got {self.prior_tools}")
        if self.prior_tool_prob > 0 and not self.prior_tools:
            raise ValueError("prior_tool_prob > 0 needs prior_tools: the tools that may run before the trained one")


def level_interval(family: str, level: int) -> tuple[float, float]:
    """The (low, high) values of ``family``'s level ``level`` (1..10)."""
    grid = _GRIDS[family]
    low, high = sorted((float(grid[level - 1]), float(grid[level])))
    return low, high


def band_levels(spec: ToolSpec) -> tuple[int, ...]:
    """The levels of ``spec``'s family whose interval overlaps its band by more than a point."""
    low, high = spec.band
    return tuple(k for k in range(1, NUM_LEVELS + 1)
                 if min(high, level_interval(spec.family, k)[1]) > max(low, level_interval(spec.family, k)[0]))


@functools.cache
def allowed_triples(level_sums: tuple[int, int], spec: ToolSpec | None = None) -> tuple[tuple[int, int, int], ...]:
    """The level triples whose sum minus 2 lies in ``level_sums``; with ``spec``, only those whose level of
    ``spec``'s family overlaps its band."""
    low, high = level_sums
    triples = (t for t in itertools.product(range(1, NUM_LEVELS + 1), repeat=3) if low <= sum(t) - 2 <= high)
    if spec is None:
        return tuple(triples)
    own, levels = FAMILIES.index(spec.family), band_levels(spec)
    return tuple(t for t in triples if t[own] in levels)


@functools.cache
def difficulty_groups(level_sums: tuple[int, int], spec: ToolSpec | None = None
                      ) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """:func:`allowed_triples` split by difficulty (in the order of ``LEVEL_SUM_RANGES``, then those of no
    difficulty), empty groups left out."""
    triples = allowed_triples(level_sums, spec)
    ranges = list(LEVEL_SUM_RANGES.values())
    groups = [tuple(t for t in triples if low <= sum(t) - 2 <= high) for low, high in ranges]
    groups.append(tuple(t for t in triples if not any(low <= sum(t) - 2 <= high for low, high in ranges)))
    return tuple(group for group in groups if group)


def _draw_triple(config: DrawConfig, spec: ToolSpec | None, rng: np.random.Generator) -> tuple[int, int, int]:
    if config.balance_difficulties:
        groups = difficulty_groups(tuple(config.level_sums), spec)
        allowed = groups[int(rng.integers(len(groups)))]
    else:
        allowed = allowed_triples(tuple(config.level_sums), spec)
    return allowed[int(rng.integers(len(allowed)))]


def _params(values: dict[str, float], levels: tuple[int, int, int] = (0, 0, 0)) -> DegradationParams:
    return DegradationParams(levels=levels, blur_sigma=values["blur"], noise_sigma=values["noise"],
                             jpeg_quality=int(round(values["jpeg"])))


def slight_params(spec: ToolSpec, rng: np.random.Generator) -> DegradationParams:
    """``spec``'s family uniform in its band, noise and JPEG slight, no other blur (levels ``(0, 0, 0)``)."""
    check_generator(rng)
    values = {"blur": 0.0, "noise": float(rng.uniform(*SLIGHT_NOISE)), "jpeg": float(rng.uniform(*SLIGHT_JPEG))}
    values[spec.family] = float(rng.uniform(*spec.band))
    return _params(values)


def mdp_params(spec: ToolSpec, config: DrawConfig, rng: np.random.Generator) -> DegradationParams:
    """A level triple of the MDP for ``spec`` (see the module docstring); its levels are recorded."""
    check_generator(rng)
    own = FAMILIES.index(spec.family)
    off_band = rng.random() < config.off_band_prob
    levels = _draw_triple(config, None if off_band else spec, rng)
    values = {family: float(rng.uniform(*level_interval(family, k))) for family, k in zip(FAMILIES, levels)}
    if not off_band:
        low, high = level_interval(spec.family, levels[own])
        values[spec.family] = float(rng.uniform(max(low, spec.band[0]), min(high, spec.band[1])))
    return _params(values, levels)


def draw_params(spec: ToolSpec, config: DrawConfig, rng: np.random.Generator) -> DegradationParams:
    """One training distortion for ``spec`` under ``config``."""
    if config.context == "slight" or rng.random() < config.slight_prob:
        return slight_params(spec, rng)
    return mdp_params(spec, config, rng)


def prior_candidates(spec: ToolSpec, config: DrawConfig) -> tuple[int, ...]:
    """0-based tools that may run before ``spec`` in its training data: ``prior_tools`` outside its family."""
    return tuple(t - 1 for t in config.prior_tools if TOOL_SPECS[t - 1].family != spec.family)


def augment_region(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``region`` (H x W x 3) under one of the 8 rotations and mirrorings of the square and one of the 6
    orders of its colour channels, drawn from ``rng``."""
    out = np.rot90(region, k=int(rng.integers(4)))
    if rng.integers(2):
        out = out[:, ::-1]
    return np.ascontiguousarray(out[:, :, rng.permutation(3)])


def sample_band_batch(
    source: ImageSource,
    spec: ToolSpec,
    batch_size: int,
    patch_size: int,
    rng: np.random.Generator,
    config: DrawConfig | None = None,
    augment: bool = False,
    prior_toolbox: Toolbox | None = None,
    draw=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of (input, clean) N x 3 x P x P float32 tensors for tool ``spec``'s training.

    Each patch is cut at a random scale and position of ``source``, passed through :func:`augment_region`
    when ``augment``, degraded inside its margin with a draw of :func:`draw_params` under ``config``
    (default: the slight context) or of ``draw(spec, rng)`` when given, and, with ``config``'s prior-tool
    share, run through a tool of ``prior_toolbox`` (needed then).
    """
    config = config or DrawConfig()
    candidates = prior_candidates(spec, config) if config.prior_tool_prob > 0 else ()
    if candidates and prior_toolbox is None:
        raise ValueError("this draw config runs prior tools on a share of the patches; pass prior_toolbox")
    scaled = [item for item in source.scaled_images() if min(item[2].shape[:2]) >= patch_size + 2 * MARGIN]
    if not scaled:
        raise ValueError(f"{source.describe()} has no image large enough for {patch_size}x{patch_size} patches")
    areas = np.array([im.shape[0] * im.shape[1] for _, _, im in scaled], dtype=np.float64)
    distorted, clean = [], []
    for index in rng.choice(len(scaled), size=batch_size, p=areas / areas.sum()):
        image = scaled[index][2]
        top = int(rng.integers(0, image.shape[0] - patch_size - 2 * MARGIN + 1))
        left = int(rng.integers(0, image.shape[1] - patch_size - 2 * MARGIN + 1))
        region = as_float_image(image[top : top + patch_size + 2 * MARGIN, left : left + patch_size + 2 * MARGIN])
        if augment:
            region = augment_region(region, rng)
        params = draw(spec, rng) if draw is not None else draw_params(spec, config, rng)
        out = degrade(region, params, rng)
        distorted.append(out[MARGIN : MARGIN + patch_size, MARGIN : MARGIN + patch_size])
        clean.append(region[MARGIN : MARGIN + patch_size, MARGIN : MARGIN + patch_size])
    inputs = to_nchw(distorted)
    if candidates:
        inputs = _run_prior_tools(inputs, candidates, config.prior_tool_prob, prior_toolbox, rng)
    return inputs, to_nchw(clean)


@torch.no_grad()
def _run_prior_tools(inputs: torch.Tensor, candidates: Sequence[int], prob: float, toolbox: Toolbox,
                     rng: np.random.Generator) -> torch.Tensor:
    """``inputs`` with a share ``prob`` of its rows replaced by a random candidate tool's output."""
    chosen = rng.random(inputs.shape[0]) < prob
    tools = rng.choice(np.asarray(candidates), size=inputs.shape[0])
    rows = np.flatnonzero(chosen)
    if rows.size == 0:
        return inputs
    out = inputs.clone()
    # Bounded to the observation range of the MDP, as a middle state of an episode is.
    out[rows] = toolbox(inputs[rows], tools[rows]).clamp(-0.5, 1.5)
    return out
