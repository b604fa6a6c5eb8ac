import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restore_gym.metrics import psnr, psnr_batch, psnr_ssim, ssim


def pairs(n=5, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.random((n, 63, 63, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.05 * (1 + np.arange(n)), (63, 63, 3, n)).transpose(3, 0, 1, 2), 0, 1)
    return noisy.astype(np.float32), clean


def test_psnr_matches_scikit_image():
    noisy, clean = pairs()
    for a, b in zip(noisy, clean):
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-6)


def test_psnr_formula_and_eps():
    a = np.zeros((2, 2, 3))
    b = np.full((2, 2, 3), 0.1)
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / (0.01 + 1e-10)))
    assert psnr(a, a) == pytest.approx(100.0)


def test_psnr_batch_matches_single_images():
    noisy, clean = pairs()
    batch = psnr_batch(torch.from_numpy(noisy), torch.from_numpy(clean))
    assert batch.dtype == torch.float32 and batch.shape == (5,)
    np.testing.assert_allclose(batch.numpy(), [psnr(a, b) for a, b in zip(noisy, clean)], atol=1e-4)


def test_ssim_is_scikit_image_with_the_literature_settings():
    noisy, clean = pairs(2)
    expected = structural_similarity(
        noisy[1].astype(np.float64),
        clean[1].astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    assert ssim(noisy[1], clean[1]) == pytest.approx(expected)
    assert ssim(clean[0], clean[0]) == pytest.approx(1.0)
    assert ssim(noisy[0], clean[0]) > ssim(noisy[1], clean[1])


def test_shape_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(np.zeros((3, 3, 3)), np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="equal shapes"):
        psnr_batch(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="H x W x 3"):
        ssim(np.zeros((9, 9)), np.zeros((9, 9)))


@pytest.mark.parametrize("rows", [None, 11, 16, 29, 70])
def test_psnr_ssim_in_strips_equals_the_whole_image_metrics(rows):
    rng = np.random.default_rng(3)
    reference = rng.random((70, 53, 3)).astype(np.float32)
    image = np.clip(reference + rng.normal(0, 0.1, reference.shape), 0, 1).astype(np.float32)
    value_psnr, value_ssim = psnr_ssim(image, reference, rows)
    assert value_psnr == pytest.approx(psnr(image, reference), abs=1e-9)
    assert value_ssim == pytest.approx(ssim(image, reference), abs=1e-9)
