"""Whole images in tiles: covering grids, blending weights, and convolutional networks run tile by tile.

Images are H x W x 3 float32 numpy arrays on the CPU; only tiles go to the device, a batch at a time, so memory
holds the image, its output and one batch, whatever the image's size.

- :func:`axis_starts` places windows of a size along an axis at a stride, the last flush with the end, so
  that every pixel is covered.
- :func:`blend_weights` gives every window a raised-cosine profile (``sin^2``, positive everywhere, smooth,
  highest in the middle) divided by the sum of the profiles of all windows over each pixel: the weights of
  the windows over any pixel sum to one. Products of the two axes' weights do the same in 2-D.
- :func:`receptive_radius` is how far an output pixel of a stride-1 convolutional network sees: the sum over
  its convolutions of ``dilation * (kernel - 1) / 2``. That bounds every path through the network, skip
  connections included, and is exact for a chain of them (the tools: 8 pixels, a 17x17 field, small and large
  alike; VDSR 20; DnCNN 17).
- :func:`run_tiled` runs such a network on a whole image: each tile is extended by a context margin of at least
  that radius, clipped at the image border (where the network's own zero padding then acts as on the whole
  image), the regions are batched by shape, and the tile is cropped from the output. The result equals one run
  on the whole image up to float32 rounding (convolution kernels may sum in another order at another size:
  differences of about 1e-7).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Network = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int], object]
_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.Identity, nn.Dropout)


def axis_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of ``size`` pixels at ``stride`` covering ``0..length-1``, the last flush with the end."""
    if not 0 < stride <= size:
        raise ValueError(f"the stride must be in 1..{size} (the window size) so that windows cover the axis, "
                         f"got {stride}")
    if length < size:
        raise ValueError(f"an axis of {length} pixels cannot hold a window of {size}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def raised_cosine(size: int) -> np.ndarray:
    """``sin^2(pi * (i + 0.5) / size)`` for ``i`` in ``0..size-1`` (float64): positive, symmetric, peak 1."""
    return np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2


def blend_weights(length: int, starts: list[int], size: int) -> np.ndarray:
    """``len(starts)`` x ``size`` float32 weights: window k's raised cosine divided, pixel by pixel, by the sum of
    all windows' over that pixel, so that the weights over every pixel of the axis sum to one."""
    profile = raised_cosine(size)
    total = np.zeros(length)
    for start in starts:
        total[start:start + size] += profile
    if (total == 0).any():
        raise ValueError(f"the windows do not cover the axis of {length} pixels; uncovered pixels: "
                         f"{np.nonzero(total == 0)[0][:5].tolist()}")
    return np.stack([profile / total[start:start + size] for start in starts]).astype(np.float32)


def receptive_radius(module: nn.Module) -> int:
    """Input pixels an output pixel of ``module`` depends on, on each side (see the module docstring).

    ValueError for modules other than stride-1 convolutions with odd kernels and pointwise layers (ReLU,
    BatchNorm, ...), whose reach this cannot tell.
    """
    radius = 0
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or any(k % 2 == 0 for k in layer.kernel_size):
                raise ValueError(f"{name or type(module).__name__} is a strided or even convolution; its receptive "
                                 "field cannot be tiled exactly")
            radius += max(d * (k - 1) // 2 for d, k in zip(layer.dilation, layer.kernel_size))
        elif not list(layer.children()) and not isinstance(layer, _POINTWISE):
            raise ValueError(f"cannot tell how far {type(layer).__name__} ({name}) reaches; only stride-1 "
                             "convolutions and pointwise layers can be tiled")
    return radius


@dataclass(frozen=True)
class Tile:
    """A tile (``top``, ``left``, ``height``, ``width``) and its context region, the tile extended by up to
    ``margin`` pixels on each side and clipped to the image: rows ``region_top..region_bottom-1``, columns
    ``region_left..region_right-1``."""

    top: int
    left: int
    height: int
    width: int
    region_top: int
    region_left: int
    region_bottom: int
    region_right: int

    @property
    def region_shape(self) -> tuple[int, int]:
        """(height, width) of the context region."""
        return self.region_bottom - self.region_top, self.region_right - self.region_left


def tiles(height: int, width: int, tile: int, margin: int) -> list[Tile]:
    """The image cut into ``tile`` x ``tile`` tiles (smaller at the right and bottom edges), each with its context
    region (see :class:`Tile`), in raster order."""
    if tile < 1 or margin < 0:
        raise ValueError(f"the tile size must be positive and the margin not negative, got {tile} and {margin}")
    out = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            h, w = min(tile, height - top), min(tile, width - left)
            out.append(Tile(top, left, h, w, max(0, top - margin), max(0, left - margin),
                            min(height, top + h + margin), min(width, left + w + margin)))
    return out


def batches_by_shape(items: list, shape: Callable[[object], tuple], batch: int) -> Iterator[list]:
    """``items`` grouped by ``shape(item)``, in lists of at most ``batch`` items (groups in order of first
    appearance, items in order)."""
    if batch < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch}")
    groups: dict[tuple, list] = defaultdict(list)
    for item in items:
        groups[shape(item)].append(item)
    for members in groups.values():
        for start in range(0, len(members), batch):
            yield members[start:start + batch]


def to_batch(arrays: list[np.ndarray], device: torch.device | str) -> torch.Tensor:
    """H x W x 3 float32 arrays of one shape as an N x 3 x H x W tensor on ``device``."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)


def from_batch(batch: torch.Tensor) -> np.ndarray:
    """An N x 3 x H x W tensor as an N x H x W x 3 float32 numpy array on the CPU."""
    return batch.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()


@torch.inference_mode()
def run_tiled(network: Network, image: np.ndarray, margin: int, tile: int = 256, batch: int = 2,
              device: torch.device | str = "cpu", progress: Progress | None = None) -> np.ndarray:
    """``network`` (N x 3 x h x w -> N x 3 x h x w, stride 1) on the H x W x 3 float32 ``image`` in tiles of
    ``tile`` pixels with ``margin`` pixels of context (at least the network's :func:`receptive_radius` for the
    result to equal an untiled run), ``batch`` regions per call on ``device``. Returns a new float32 array;
    ``progress(n)`` is told each time n more tiles are done."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    out = np.empty(image.shape, dtype=np.float32)
    plan = tiles(image.shape[0], image.shape[1], tile, margin)
    for group in batches_by_shape(plan, lambda t: t.region_shape, batch):
        regions = [image[t.region_top:t.region_bottom, t.region_left:t.region_right] for t in group]
        results = from_batch(network(to_batch(regions, device)))
        for t, result in zip(group, results):
            y, x = t.top - t.region_top, t.left - t.region_left
            out[t.top:t.top + t.height, t.left:t.left + t.width] = result[y:y + t.height, x:x + t.width]
        if progress is not None:
            progress(len(group))
    return out
