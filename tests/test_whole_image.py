"""Whole-image restoration: the vote, tiles, bounded batches and bad images (restore_gym.whole_image)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restore_gym.engine import NUM_ACTIONS, STOP
from restore_gym.lstm_dqn import QNetwork
from restore_gym.toolbox import Toolbox
from restore_gym.whole_image import TOOL_TILE, apply_network, majority, restore_image, tool_radius


class ScriptedAgent(QNetwork):
    """Takes ``actions[k]`` at step k whatever it sees, then stops (it counts the steps in its LSTM state)."""

    def __init__(self, *actions: int) -> None:
        super().__init__()
        self.actions = torch.tensor([*actions, STOP])
        self.previous: list = []

    def forward(self, image, previous, state=None):
        self.previous.append(previous.argmax(dim=1).tolist() if previous.any() else None)
        h, c = state if state is not None else self.initial_state(image.shape[0], image.device)
        step = h[:, 0].long().clamp(max=len(self.actions) - 1)
        return F.one_hot(self.actions[step], NUM_ACTIONS).float(), (h + 1, c)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).random((80, 140, 3), dtype=np.float32)


def whole_chain(image: np.ndarray, toolbox: Toolbox, chain: list[int]) -> np.ndarray:
    for tool in chain:
        image = apply_network(image, toolbox.tools[tool])
    return image


def test_majority_breaks_ties_towards_the_lowest_action():
    assert majority(np.array([3, 5, 5, 3])) == 3
    assert majority(np.array([STOP, 7, STOP, 7])) == 7  # a tool beats stop on a tie
    assert majority(np.array([STOP, STOP, 2])) == STOP
    assert majority(np.arange(NUM_ACTIONS)[::-1]) == 0


@pytest.mark.parametrize("mode", ["vote", "tiles"])
def test_one_chain_everywhere_equals_that_chain_on_the_whole_image(image, toolbox, mode):
    result = restore_image(image, ScriptedAgent(6, 1, 6), toolbox, mode)
    np.testing.assert_allclose(result.image, whole_chain(image, toolbox, [6, 1, 6]), atol=1e-5, rtol=0)
    details = result.record[mode]
    if mode == "vote":
        assert details["chain"] == [6, 1, 6] and details["grid"] == [1, 2]
        assert [step["votes"] for step in details["steps"]] == [{"denoise-3": 2}, {"deblur-2": 2}, {"denoise-3": 2}]
    else:
        assert details["chains"] == [[6, 1, 6]] * details["patches"] and details["margin"] == 3 * tool_radius(toolbox)
        assert details["chain_counts"][0]["names"] == "denoise-3 > deblur-2 > denoise-3"


def test_no_seam_on_a_constant_image(toolbox):
    constant = np.full((100, 130, 3), 0.4, dtype=np.float32)
    out = restore_image(constant, ScriptedAgent(4, 8), toolbox, "tiles", stride=40).image
    interior = out[24:-24, 24:-24]  # away from the image border, where the tools' zero padding acts
    assert np.ptp(interior, axis=(0, 1)).max() < 1e-5


def test_a_stop_keeps_the_image(image, toolbox):
    for mode in ("vote", "tiles"):
        result = restore_image(image, ScriptedAgent(STOP), toolbox, mode)
        np.testing.assert_allclose(result.image, image, atol=1e-6, rtol=0)  # tiles: blending weights sum to one


def test_every_patch_is_fed_the_voted_tool(image, toolbox):
    agent = ScriptedAgent(3, 9)
    assert restore_image(image, agent, toolbox, "vote").record["vote"]["chain"] == [3, 9]
    assert agent.previous == [None, [3, 3], [9, 9]]


def test_tiles_mode_holds_one_batch_of_regions(toolbox):
    seen = []
    original = Toolbox.forward

    def spy(self, x, tool_ids):
        seen.append(tuple(x.shape))
        return original(self, x, tool_ids)

    image = np.random.default_rng(1).random((150, 170, 3), dtype=np.float32)
    agent = ScriptedAgent(5, 2)
    Toolbox.forward = spy
    try:
        restore_image(image, agent, toolbox, "tiles", batch=4)
    finally:
        Toolbox.forward = original
    assert seen and max(shape[0] for shape in seen) <= 4
    assert max(shape[2] * shape[3] for shape in seen) <= (63 + 2 * 3 * tool_radius(toolbox)) ** 2
    assert TOOL_TILE >= 63  # whole-image runs (vote) are bounded by run_tiled's own test


def test_varied_chains_blend_to_a_finite_image(image, toolbox):
    torch.manual_seed(3)
    result = restore_image(image, QNetwork(), toolbox, "tiles", stride=30)
    assert np.isfinite(result.image).all() and result.image.shape == image.shape
    assert len(result.record["tiles"]["chains"]) == result.record["tiles"]["patches"] == 2 * 4


def test_bad_images_are_refused_with_a_reason(toolbox):
    agent = ScriptedAgent(STOP)
    with pytest.raises(ValueError, match="smaller than one 63x63 patch"):
        restore_image(np.zeros((62, 500, 3), np.float32), agent, toolbox)
    with pytest.raises(ValueError, match="finite and in"):
        restore_image(np.full((63, 63, 3), np.nan, np.float32), agent, toolbox)
    with pytest.raises(ValueError, match="unknown mode"):
        restore_image(np.zeros((63, 63, 3), np.float32), agent, toolbox, "mine")
    with pytest.raises(FileNotFoundError, match="the authors' agent is not converted.*import-official"):
        restore_image(np.zeros((63, 63, 3), np.float32), "official", toolbox)
