"""Image-quality metrics, computed the way RL-Restore and the restoration literature report them.

PSNR follows the paper exactly: RGB in [0, 1], mean squared error over all pixels and channels,
``10 * log10(1 / (mse + 1e-10))``. SSIM is scikit-image's with the Gaussian-window settings of
Wang et al. (sigma 1.5, no sample covariance), data range 1, averaged over channels.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

PSNR_EPS = 1e-10


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
    diff = images.to(torch.float64) - references.to(torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
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
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
    )
