"""Tiling geometry, blending weights, receptive radii and tiled runs of networks (restore_gym.tiling)."""

import numpy as np
import pytest
import torch

from restore_gym.lstm_dqn import QNetwork
from restore_gym.networks import build_network
from restore_gym.tiling import axis_starts, blend_weights, receptive_radius, run_tiled, tiles
from restore_gym.toolbox import LargeTool, SmallTool


@pytest.mark.parametrize(("length", "size", "stride"), [(63, 63, 48), (64, 63, 48), (200, 63, 48), (130, 63, 21),
                                                        (1000, 63, 63), (70, 10, 1)])
def test_windows_cover_every_pixel_and_end_flush(length, size, stride):
    starts = axis_starts(length, size, stride)
    covered = np.zeros(length, dtype=int)
    for start in starts:
        covered[start:start + size] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] == length - size
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


def test_window_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="cannot hold a window"):
        axis_starts(40, 63, 48)
    with pytest.raises(ValueError, match="stride must be in 1..63"):
        axis_starts(100, 63, 64)


@pytest.mark.parametrize(("height", "width", "stride"), [(63, 63, 48), (100, 151, 48), (130, 77, 21), (126, 189, 63)])
def test_blending_weights_sum_to_one_everywhere(height, width, stride):
    tops, lefts = axis_starts(height, 63, stride), axis_starts(width, 63, stride)
    rows, cols = blend_weights(height, tops, 63), blend_weights(width, lefts, 63)
    assert (rows > 0).all() and (cols > 0).all()
    total = np.zeros((height, width))
    for i, top in enumerate(tops):
        for j, left in enumerate(lefts):
            total[top:top + 63, left:left + 63] += np.outer(rows[i], cols[j])
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tiles_cover_every_pixel_once_and_regions_hold_their_tiles():
    height, width, margin = 70, 45, 8
    count = np.zeros((height, width), dtype=int)
    for t in tiles(height, width, 16, margin):
        count[t.top:t.top + t.height, t.left:t.left + t.width] += 1
        assert 0 <= t.region_top <= t.top and t.top + t.height <= t.region_bottom <= height
        assert 0 <= t.region_left <= t.left and t.left + t.width <= t.region_right <= width
        assert t.top - t.region_top in (t.top, margin) and t.region_bottom - t.top - t.height in (
            height - t.top - t.height, margin)
    assert (count == 1).all()


def _measured_radius(network: torch.nn.Module, size: int = 41) -> int:
    """How far the centre output pixel's gradient reaches into the input (random weights: every path counts)."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    network(x)[0, :, size // 2, size // 2].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    return int(size // 2 - rows.min())


@pytest.mark.parametrize(("make", "radius"), [(SmallTool, 8), (LargeTool, 8), (lambda: build_network("vdsr-s"), 20),
                                              (lambda: build_network("dncnn").eval(), 17)])
def test_receptive_radius_is_computed_from_the_architecture(make, radius):
    torch.manual_seed(0)
    network = make()
    assert receptive_radius(network) == radius
    assert _measured_radius(network, size=2 * radius + 9) == radius


def test_receptive_radius_refuses_strided_networks():
    with pytest.raises(ValueError, match="strided"):
        receptive_radius(QNetwork())


@pytest.mark.parametrize("tool", [SmallTool, LargeTool])
def test_a_tiled_run_equals_the_untiled_one(tool):
    torch.manual_seed(1)
    network = tool()
    image = np.random.default_rng(0).random((50, 71, 3), dtype=np.float32)
    with torch.inference_mode():
        whole = network(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    tiled = run_tiled(network, image, margin=8, tile=16, batch=3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    short = run_tiled(network, image, margin=2, tile=16, batch=3)  # too little context: the seams show
    assert np.abs(short - whole).max() > 1e-3


def test_a_tiled_run_holds_at_most_one_batch_of_regions():
    seen = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x * 2

    image = np.random.default_rng(0).random((100, 90, 3), dtype=np.float32)
    out = run_tiled(spy, image, margin=4, tile=20, batch=3)
    np.testing.assert_allclose(out, image * 2)
    assert max(shape[0] for shape in seen) <= 3
    assert max(shape[2] * shape[3] for shape in seen) <= (20 + 8) ** 2
    done = []
    run_tiled(spy, image, margin=4, tile=20, batch=3, progress=done.append)
    assert sum(done) == 5 * 5
