"""The degradation protocol of RL-Restore (Yu et al., CVPR 2018), as its authors' data script applies it.

A clean image region is blurred (21x21 Gaussian kernel, replicated borders), then Gaussian noise is
added and the result clipped to [0, 1], then it is JPEG-compressed (Pillow). Each distortion has ten
levels; level ``k`` draws its value uniformly between ``grid[k-1]`` and ``grid[k]`` of its grid below.
A difficulty allows the level triples ``(k_blur, k_noise, k_jpeg)`` whose sum minus 2 lies in its range
(mild 9..11, moderate 12..17, severe 18..20), all permutations included, each drawn with equal chance.

The authors degraded whole images and cut patches whose top-left corner lay on the JPEG block grid.
:func:`degrade_patch` reproduces that: it degrades the patch together with a margin of
:data:`MARGIN` pixels on every side (more than the blur radius, and a whole number of 16x16 JPEG
macro-blocks so the patch starts on the block grid of the region) and crops the patch out afterwards.

All randomness comes from the ``numpy.random.Generator`` passed in: the same seed gives the same bytes.

:func:`degrade_batch` is the batched path the environments use: many regions at once, on a GPU the blur and
the noise batched in torch (:func:`blur_batch`, :func:`add_noise_batch`), on the CPU the reference functions
region by region on worker threads (faster there), and the JPEG codec (the same Pillow call) per region. It
draws the same noise from the same generators and rounds as the reference path does, so it gives the same
bytes (on a GPU the blur's float64 sums may add in another order, which has not changed a byte in the tests).
"""

from __future__ import annotations

import functools
import io
import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import correlate1d

Difficulty = Literal["mild", "moderate", "severe"]
DIFFICULTIES: tuple[str, ...] = ("mild", "moderate", "severe")

BLUR_SIGMA_GRID = np.arange(0.0, 5.0 + 1e-9, 0.5)
NOISE_SIGMA_GRID = np.arange(0.0, 50.0 + 1e-9, 5.0)
JPEG_QUALITY_GRID = np.array([100, 80, 60, 50, 40, 35, 30, 25, 20, 15, 10], dtype=np.float64)
NUM_LEVELS = 10

# Allowed range of (k_blur + k_noise + k_jpeg - 2) per difficulty, inclusive.
LEVEL_SUM_RANGES: dict[str, tuple[int, int]] = {"mild": (9, 11), "moderate": (12, 17), "severe": (18, 20)}

BLUR_KERNEL_SIZE = 21
PATCH_SIZE = 63
MARGIN = 16


@dataclass(frozen=True)
class DegradationParams:
    """The sampled distortion of one patch: its level triple and the values drawn inside each level.

    ``noise_sigma`` is on the 0..255 scale, as in the paper; ``jpeg_quality`` is the integer quality
    passed to the encoder. Levels ``(0, 0, 0)`` mark a draw made outside the level protocol (tool training).
    """

    levels: tuple[int, int, int]
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int

    def as_dict(self) -> dict:
        """A JSON-friendly dict of the parameters."""
        return {**asdict(self), "levels": list(self.levels)}


def check_difficulty(difficulty: str) -> str:
    """Return ``difficulty`` if it is one of :data:`DIFFICULTIES`, else raise a ValueError that lists them."""
    if difficulty not in LEVEL_SUM_RANGES:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    return difficulty


def check_generator(rng: object) -> np.random.Generator:
    """Return ``rng`` if it is a ``numpy.random.Generator``, else raise a TypeError saying how to make one."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"expected a numpy.random.Generator, got {type(rng).__name__}; "
            "create one with numpy.random.default_rng(seed)"
        )
    return rng


def allowed_triples(difficulty: str) -> tuple[tuple[int, int, int], ...]:
    """All level triples ``(k_blur, k_noise, k_jpeg)``, each level in 1..10, allowed at ``difficulty``."""
    return _allowed_triples(check_difficulty(difficulty))


@functools.cache
def _allowed_triples(difficulty: str) -> tuple[tuple[int, int, int], ...]:
    low, high = LEVEL_SUM_RANGES[difficulty]
    levels = range(1, NUM_LEVELS + 1)
    return tuple(t for t in itertools.product(levels, repeat=3) if low <= sum(t) - 2 <= high)


def _draw_in_level(grid: np.ndarray, level: int, rng: np.random.Generator) -> float:
    low, high = sorted((float(grid[level - 1]), float(grid[level])))
    return float(rng.uniform(low, high))


def params_for_levels(levels: tuple[int, int, int], rng: np.random.Generator) -> DegradationParams:
    """Draw the blur sigma, noise sigma and JPEG quality uniformly inside the given levels."""
    check_generator(rng)
    if len(levels) != 3 or not all(isinstance(k, (int, np.integer)) and 1 <= k <= NUM_LEVELS for k in levels):
        raise ValueError(f"levels must be three integers in 1..{NUM_LEVELS}, got {levels!r}")
    k_blur, k_noise, k_jpeg = (int(k) for k in levels)
    return DegradationParams(
        levels=(k_blur, k_noise, k_jpeg),
        blur_sigma=_draw_in_level(BLUR_SIGMA_GRID, k_blur, rng),
        noise_sigma=_draw_in_level(NOISE_SIGMA_GRID, k_noise, rng),
        jpeg_quality=int(round(_draw_in_level(JPEG_QUALITY_GRID, k_jpeg, rng))),
    )


def sample_params(difficulty: str, rng: np.random.Generator) -> DegradationParams:
    """Draw a level triple uniformly from those allowed at ``difficulty``, then the values inside it."""
    check_generator(rng)
    triples = allowed_triples(difficulty)
    return params_for_levels(triples[int(rng.integers(len(triples)))], rng)


def gaussian_kernel_1d(sigma: float, size: int = BLUR_KERNEL_SIZE) -> np.ndarray:
    """The normalised 1-D Gaussian whose outer product is MATLAB's ``fspecial('gaussian', size, sigma)``.

    A sigma of (nearly) zero gives the identity kernel.
    """
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    radius = size // 2
    if sigma < 1e-6:
        kernel = np.zeros(size)
        kernel[radius] = 1.0
        return kernel
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a float image in [0, 1], got dtype {image.dtype}; divide uint8 images by 255")
    return image


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an H x W x 3 float image with a 21x21 kernel and replicated borders, in its own dtype."""
    image = _check_image(image)
    k = gaussian_kernel_1d(sigma).astype(image.dtype)
    out = correlate1d(image, k, axis=0, mode="nearest")
    return correlate1d(out, k, axis=1, mode="nearest")


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of std ``sigma`` (0..255 scale) to a float image and clip to [0, 1]."""
    image = _check_image(image)
    check_generator(rng)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= sigma / 255.0
    noise = noise.astype(image.dtype, copy=False)
    noise += image
    return np.clip(noise, 0.0, 1.0, out=noise)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round a float image in [0, 1] to 8 bits, as MATLAB's ``im2uint8`` does."""
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def jpeg_uint8(pixels: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-encode and decode an H x W x 3 uint8 image at ``quality`` (Pillow, default 4:2:0); returns uint8."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer, formats=("JPEG",)) as decoded:
        return np.asarray(decoded)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress a float image in [0, 1] at ``quality`` (:func:`jpeg_uint8` of its 8 bits); returns float32."""
    image = _check_image(image)
    return jpeg_uint8(to_uint8(image), quality).astype(np.float32) / np.float32(255.0)


def degrade(image: np.ndarray, params: DegradationParams, rng: np.random.Generator) -> np.ndarray:
    """Blur, add noise and JPEG-compress a whole H x W x 3 float image; returns float32 in [0, 1]."""
    blurred = blur(image, params.blur_sigma)
    noisy = add_noise(blurred, params.noise_sigma, rng)
    return jpeg(noisy, params.jpeg_quality).astype(np.float32)


def as_float_image(image: np.ndarray) -> np.ndarray:
    """An H x W x 3 image as float32 in [0, 1]: uint8 is divided by 255, floats are checked to lie in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(image.dtype, np.floating):
        if image.size and (image.min() < 0.0 or image.max() > 1.0):
            raise ValueError("float images must lie in [0, 1]")
        return image.astype(np.float32)
    raise TypeError(f"expected a uint8 or float image, got dtype {image.dtype}")


def degrade_patch(
    image: np.ndarray,
    top: int,
    left: int,
    params: DegradationParams,
    rng: np.random.Generator,
    size: int = PATCH_SIZE,
    margin: int = MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Degrade the ``size`` x ``size`` patch at (top, left) of ``image`` as part of its surrounding region.

    The region spans ``margin`` pixels beyond the patch on every side and must lie inside the image.
    Returns ``(degraded, clean)``, both float32 ``size`` x ``size`` x 3 in [0, 1].
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    if top - margin < 0 or left - margin < 0 or top + size + margin > height or left + size + margin > width:
        raise ValueError(
            f"the {size}x{size} patch at ({top}, {left}) with a {margin}-pixel margin does not fit "
            f"in a {height}x{width} image; keep top/left in [{margin}, size - {size + margin}]"
        )
    region = as_float_image(image[top - margin : top + size + margin, left - margin : left + size + margin])
    degraded = degrade(region, params, rng)[margin : margin + size, margin : margin + size]
    clean = region[margin : margin + size, margin : margin + size].astype(np.float32)
    return np.ascontiguousarray(degraded), np.ascontiguousarray(clean)


# ---- The batched path: many regions at once, blur and noise in torch on any device ----------------------------

_taps: dict[tuple[int, str], torch.Tensor] = {}
_threads: list[ThreadPoolExecutor] = []
WORKER_THREADS = max(1, min(os.cpu_count() or 1, 8))  # the noise draws and the JPEG codec calls run on these


def _workers() -> ThreadPoolExecutor:
    if not _threads:
        _threads.append(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="restore-gym-degrade"))
    return _threads[0]


def _each(count: int, work: Callable[[int], None]) -> None:
    """``work(k)`` for k in 0..count-1, in contiguous shares on the worker threads (numpy's generators and
    Pillow's codec release the GIL while they work)."""
    shares = min(count, WORKER_THREADS)
    if shares <= 1:
        for k in range(count):
            work(k)
        return
    bounds = np.linspace(0, count, shares + 1).astype(int)

    def share(i: int) -> None:
        for k in range(bounds[i], bounds[i + 1]):
            work(k)

    list(_workers().map(share, range(shares)))


def uint8_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """A uint8 tensor as float32 in [0, 1], exactly the reference path's ``u / 255`` on any device (divided by a
    tensor: CUDA divides by a Python number through its reciprocal, which differs for 126 of the 256 values)."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 tensor, got {pixels.dtype}")
    return pixels.to(torch.float32).div_(torch.tensor(255.0, device=pixels.device))


def _blur_matrices(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """N x size x size float64: row i holds the weights of input samples 0..size-1 in output sample i of the
    correlation with each of the N kernels (N x K float64), borders replicated."""
    key = (size, str(kernels.device))
    if key not in _taps:
        rows, offsets = torch.arange(size).view(-1, 1), torch.arange(BLUR_KERNEL_SIZE) - BLUR_KERNEL_SIZE // 2
        _taps[key] = (rows + offsets).clamp(0, size - 1).to(kernels.device)  # size x K: the sample each tap reads
    n, taps = len(kernels), _taps[key]
    matrices = torch.zeros(n, size, size, dtype=torch.float64, device=kernels.device)
    return matrices.scatter_add_(2, taps.expand(n, size, -1), kernels.view(n, 1, -1).expand(n, size, -1))


def blur_batch(images: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """:func:`blur` of each image of an N x H x W x C float tensor with its own sigma, on the tensor's device.

    As the reference path: the kernel in the images' dtype, the pass along H then the pass along W, each
    accumulated in float64 (as matrix products) and rounded to the images' dtype, so the result equals
    :func:`blur`'s up to the order of float64 additions: in practice bit for bit.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected an N x H x W x C float tensor, got {images.dtype} {tuple(images.shape)}")
    if len(sigmas) != images.shape[0]:
        raise ValueError(f"got {len(sigmas)} sigmas for {images.shape[0]} images")
    n, height, width, channels = images.shape
    if n == 0:
        return images.clone()
    kernel_dtype = np.float32 if images.dtype == torch.float32 else np.float64
    kernels = np.stack([gaussian_kernel_1d(float(s)).astype(kernel_dtype) for s in sigmas])
    kernels = torch.from_numpy(kernels.astype(np.float64)).to(images.device)
    along_h = torch.bmm(_blur_matrices(kernels, height), images.reshape(n, height, width * channels).double())
    # The pass along W works on the transposed images: W x H x C, made contiguous while converting.
    along_h = along_h.to(images.dtype).view(n, height, width, channels).transpose(1, 2)
    along_h = along_h.to(torch.float64, memory_format=torch.contiguous_format).contiguous()
    along_w = torch.bmm(_blur_matrices(kernels, width), along_h.view(n, width, height * channels))
    return along_w.to(images.dtype).view(n, width, height, channels).transpose(1, 2)


def add_noise_batch(images: torch.Tensor, sigmas: Sequence[float], noise: torch.Tensor) -> torch.Tensor:
    """:func:`add_noise` of each image of an N x ... float32 tensor: ``noise`` (standard normal, same shape)
    times its sigma (0..255 scale), added and clipped to [0, 1] in float32 as the reference path does."""
    if noise.shape != images.shape:
        raise ValueError(f"noise of shape {tuple(noise.shape)} for images of shape {tuple(images.shape)}")
    if len(sigmas) != images.shape[0]:
        raise ValueError(f"got {len(sigmas)} sigmas for {images.shape[0]} images")
    scale = torch.tensor([s / 255.0 for s in sigmas], dtype=images.dtype).to(images.device)
    return (noise * scale.view(-1, *[1] * (images.ndim - 1))).add_(images).clamp_(0.0, 1.0)


def to_uint8_batch(images: torch.Tensor) -> torch.Tensor:
    """:func:`to_uint8` of a float tensor, on its device."""
    return (images * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _check_generators(rngs: Sequence[np.random.Generator]) -> None:
    for rng in rngs:
        check_generator(rng)
    if len({id(rng) for rng in rngs}) != len(rngs):
        raise ValueError("each image needs its own generator: the same one twice would draw in another order")


def draw_noise(rngs: Sequence[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """The standard normal float32 noise :func:`add_noise` draws for an image of ``shape``, from each generator
    in turn: len(rngs) x shape."""
    _check_generators(rngs)
    noise = np.empty((len(rngs), *shape), dtype=np.float32)
    _each(len(rngs), lambda k: rngs[k].standard_normal(dtype=np.float32, out=noise[k]))
    return noise


def jpeg_batch(pixels: np.ndarray, qualities: Sequence[int]) -> np.ndarray:
    """:func:`jpeg_uint8` of each image of an N x H x W x 3 uint8 array at its quality (one codec call each)."""
    if len(qualities) != len(pixels):
        raise ValueError(f"got {len(qualities)} qualities for {len(pixels)} images")
    out = np.empty_like(pixels)

    def compress(k: int) -> None:
        out[k] = jpeg_uint8(pixels[k], qualities[k])

    _each(len(pixels), compress)
    return out


def blur_regions(regions: np.ndarray, sigmas: Sequence[float], device: torch.device | str = "cpu") -> torch.Tensor:
    """The first stage of :func:`degrade_batch`: N uint8 regions (N x H x W x 3) as float32 in [0, 1], each
    blurred with its sigma; an N x H x W x 3 tensor on ``device``.

    On the CPU each region goes through :func:`blur` on the worker threads (scipy releases the GIL, and on a
    2-core CPU this beat the batched matrix products by half); on other devices :func:`blur_batch` runs.
    """
    if torch.device(device).type != "cpu":
        return blur_batch(uint8_to_float(torch.from_numpy(regions).to(device)), sigmas)
    out = np.empty(regions.shape, dtype=np.float32)

    def work(k: int) -> None:
        out[k] = blur(as_float_image(regions[k]), float(sigmas[k]))

    _each(len(regions), work)
    return torch.from_numpy(out)


def add_noise_regions(images: torch.Tensor, sigmas: Sequence[float], rngs: Sequence[np.random.Generator]
                      ) -> np.ndarray:
    """The second stage of :func:`degrade_batch`: :func:`add_noise` of each float32 image (N x H x W x 3, on any
    device) with its sigma and its own generator, rounded to 8 bits; N x H x W x 3 uint8 on the CPU.

    On the CPU each image goes through :func:`add_noise` on the worker threads; on other devices the noise is
    drawn on the worker threads and added by :func:`add_noise_batch` on the device.
    """
    _check_generators(rngs)
    if len(rngs) != len(images):
        raise ValueError(f"got {len(rngs)} generators for {len(images)} images")
    if images.device.type != "cpu":
        noise = torch.from_numpy(draw_noise(rngs, tuple(images.shape[1:]))).to(images.device)
        return to_uint8_batch(add_noise_batch(images, sigmas, noise)).cpu().numpy()
    pixels, out = images.numpy(), np.empty(images.shape, dtype=np.uint8)

    def work(k: int) -> None:
        out[k] = to_uint8(add_noise(pixels[k], float(sigmas[k]), rngs[k]))

    _each(len(rngs), work)
    return out


def degrade_batch(
    regions: np.ndarray,
    params: Sequence[DegradationParams],
    rngs: Sequence[np.random.Generator],
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """:func:`degrade` of N uint8 regions (N x H x W x 3), region k with ``params[k]`` and its noise drawn from
    ``rngs[k]`` (distinct generators, each advanced as :func:`degrade` advances it); returns uint8 N x H x W x 3.

    Three stages over all regions: :func:`blur_regions` and :func:`add_noise_regions` (batched in torch on a
    GPU, the reference functions on worker threads on the CPU), then :func:`jpeg_batch`. The result equals
    :func:`degrade`'s (the float32 values of these bytes); on a GPU up to the order of the blur's float64
    additions, which has not changed a byte in the tests.
    """
    regions = np.asarray(regions)
    if regions.ndim != 4 or regions.shape[-1] != 3 or regions.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 regions, got {regions.dtype} {regions.shape}")
    if not len(params) == len(rngs) == len(regions):
        raise ValueError(f"got {len(regions)} regions, {len(params)} parameter sets and {len(rngs)} generators")
    _check_generators(rngs)
    images = blur_regions(regions, [p.blur_sigma for p in params], device)
    pixels = add_noise_regions(images, [p.noise_sigma for p in params], rngs)
    return jpeg_batch(pixels, [p.jpeg_quality for p in params])
