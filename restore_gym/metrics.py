"""Image-quality metrics, computed the way RL-Restore and the restoration literature report them.

PSNR follows the paper exactly: RGB in [0, 1], mean squared error over all pixels and channels,
``10 * log10(1 / (mse + 1e-10))``. SSIM is scikit-image's with the Gaussian-window settings of
Wang et al. (sigma 1.5, no sample covariance), data range 1, averaged over channels.
:func:`psnr_ssim` gives both for a whole photo in strips of rows, with the same values and bounded memory.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

PSNR_EPS = 1e-10
SSIM_SIGMA = 1.5
# scikit-image's Gaussian window: radius int(3.5 * sigma + 0.5) = 5; the SSIM map's mean leaves out that many
# pixels at each border.
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)
STRIP_PIXELS = 1 << 20


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of one image against its reference, both float arrays in [0, 1] of equal shape."""
    image = np.asarray(image, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"psnr needs equal shapes, got {image.shape} and {reference.shape}")
    mse = float(np.mean((image - reference) ** 2))
    return float(10.0 * np.log10(1.0 / (mse + PSNR_EPS)))


def psnr_batch(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of a batch (N x ...) against its references; returns a float32 tensor (N,).

    The mean squared error is accumulated in float64 so that the result matches :func:`psnr`
    to float32 precision whatever the device.
    """
    if images.shape != references.shape:
        raise ValueError(f"psnr_batch needs equal shapes, got {tuple(images.shape)} and {tuple(references.shape)}")
    if images.ndim < 2:
        raise ValueError(f"psnr_batch needs a batch dimension, got shape {tuple(images.shape)}")
    diff = images.to(torch.float64, copy=True).sub_(references)  # in place: the same values, fewer passes
    mse = diff.mul_(diff).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(1.0 / (mse + PSNR_EPS))).to(torch.float32)


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of one H x W x 3 float image in [0, 1] against its reference (Gaussian window, sigma 1.5)."""
    image = np.asarray(image, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"ssim needs equal shapes, got {image.shape} and {reference.shape}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"ssim needs H x W x 3 images, got shape {image.shape}")
    return float(
        structural_similarity(
            image,
            reference,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
    )


def _ssim_map(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The SSIM map (H x W x 3) whose mean over the interior is :func:`ssim`."""
    return structural_similarity(image.astype(np.float64), reference.astype(np.float64), gaussian_weights=True,
                                 sigma=SSIM_SIGMA, use_sample_covariance=False, data_range=1.0, channel_axis=-1,
                                 full=True)[1]


def psnr_ssim(image: np.ndarray, reference: np.ndarray, rows: int | None = None) -> tuple[float, float]:
    """:func:`psnr` and :func:`ssim` of an H x W x 3 image against its reference, computed in strips of ``rows``
    rows (default: about a megapixel) so that a photo of any size needs memory for one strip only.

    Each strip's SSIM map is computed with :data:`SSIM_RADIUS` rows of context on either side, so the values
    equal those of :func:`ssim` up to float rounding.
    """
    if image.shape != reference.shape or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"psnr_ssim needs two H x W x 3 images of one shape, got {image.shape} and {reference.shape}")
    height, width = image.shape[:2]
    window = 2 * SSIM_RADIUS + 1
    if min(height, width) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {height}x{width}")
    rows = max(window, rows or STRIP_PIXELS // width)
    squared_error = ssim_sum = 0.0
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        diff = image[top:bottom].astype(np.float64) - reference[top:bottom]
        squared_error += float(np.sum(diff * diff))
        low, high = max(0, min(top - SSIM_RADIUS, height - window)), min(height, bottom + SSIM_RADIUS)
        ssim_map = _ssim_map(image[low:high], reference[low:high])
        first, last = max(top, SSIM_RADIUS), min(bottom, height - SSIM_RADIUS)
        if last > first:
            ssim_sum += float(ssim_map[first - low:last - low, SSIM_RADIUS:width - SSIM_RADIUS].sum(dtype=np.float64))
    interior = (height - 2 * SSIM_RADIUS) * (width - 2 * SSIM_RADIUS) * 3
    mse = squared_error / image.size
    return float(10.0 * np.log10(1.0 / (mse + PSNR_EPS))), ssim_sum / interior
