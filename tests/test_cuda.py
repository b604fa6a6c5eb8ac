"""The environments and the agent's update on a CUDA device, against the CPU.

Marked ``cuda`` and skipped without a CUDA device. ``RESTORE_GYM_TEST_DEVICE`` names the device (default
``cuda``); ``RESTORE_GYM_TEST_DEVICE=cpu`` runs the same tests on the CPU, as the dry run of
``benchmarks/gpu_check.sh`` does. Tolerances allow for cuDNN's kernels (TF32 convolutions by default on recent
GPUs) against the CPU's; the degraded patches themselves must match the CPU's byte for byte.
"""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import restore_gym  # noqa: F401  (registers the environments)
from agents.lstm_dqn import EpisodeReplay, dqn_loss
from restore_gym.data import BuiltinImages
from restore_gym.engine import STOP
from restore_gym.lstm_dqn import QNetwork

pytestmark = pytest.mark.cuda
DEVICE = os.environ.get("RESTORE_GYM_TEST_DEVICE", "cuda")
IMAGE_ATOL = 0.02  # per pixel, after up to three tools
REWARD_ATOL = 0.1  # dB


@pytest.fixture(scope="module")
def device() -> torch.device:
    if torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (RESTORE_GYM_TEST_DEVICE=cpu runs these tests on the CPU)")
    return torch.device(DEVICE)


def _rollout(env_id_kwargs: dict, device: torch.device, actions: np.ndarray) -> tuple[list, list]:
    # Episodes end on stop or the third tool only, so that no reward within tolerance ends one on one device only.
    vec = gym.make_vec("RLRestore-v0", num_envs=actions.shape[1], device=device, end_on_psnr_drop=False,
                       **env_id_kwargs)
    obs, _ = vec.reset(seed=3)
    frames, rewards = [obs["image"]], []
    for step_actions in actions:
        obs, reward, *_ = vec.step(step_actions)
        frames.append(obs["image"])
        rewards.append(reward)
    inputs = vec.unwrapped.batch.inputs.cpu().numpy()
    vec.close()
    return frames + [inputs], rewards


def test_batched_degradation_on_the_device_gives_the_cpu_bytes(device):
    source = BuiltinImages("train")
    seeds = [[9, k] for k in range(48)]
    on_device = source.sample_patches("severe", [np.random.default_rng(s) for s in seeds], device)
    for k, seed in enumerate(seeds[:12]):
        reference = source.sample_patch("severe", np.random.default_rng(seed))
        np.testing.assert_array_equal(on_device.degraded[k].permute(1, 2, 0).cpu().numpy(), reference.degraded)
    assert on_device.degraded.device.type == device.type


@pytest.mark.parametrize("patches", ["fresh", "pool"])
def test_vector_env_on_the_device_matches_the_cpu(device, patches):
    actions = np.random.default_rng(0).integers(0, STOP + 1, (8, 32))
    kwargs = {"patches": patches, "pool_size": 64} if patches == "pool" else {}
    frames, rewards = _rollout(kwargs, device, actions)
    cpu_frames, cpu_rewards = _rollout(kwargs, torch.device("cpu"), actions)
    np.testing.assert_array_equal(frames[0], cpu_frames[0])  # the same patches, degraded on the device
    np.testing.assert_array_equal(frames[-1], cpu_frames[-1])
    for a, b in zip(frames, cpu_frames):
        np.testing.assert_allclose(a, b, atol=IMAGE_ATOL)
    np.testing.assert_allclose(np.array(rewards), np.array(cpu_rewards), atol=REWARD_ATOL)


def test_single_env_on_the_device_matches_the_cpu(device):
    results = []
    for where in (device, torch.device("cpu")):
        env = gym.make("RLRestore-v0", device=where, split="test", difficulty="mild")
        obs, info = env.reset(seed=0)
        rewards = [env.step(action)[1] for action in (4, 0, 7)]
        results.append((obs["image"], info["degradation"], rewards, env.unwrapped.batch.images.cpu().numpy()))
    (image, params, rewards, final), (cpu_image, cpu_params, cpu_rewards, cpu_final) = results
    np.testing.assert_array_equal(image, cpu_image)
    assert params == cpu_params
    np.testing.assert_allclose(rewards, cpu_rewards, atol=REWARD_ATOL)
    np.testing.assert_allclose(final, cpu_final, atol=IMAGE_ATOL)


def test_bfloat16_on_the_device_stays_close_to_float32(device):
    actions = np.random.default_rng(1).integers(0, STOP, (1, 24))
    _, full = _rollout({"split": "test"}, device, actions)
    _, half = _rollout({"split": "test", "precision": "bfloat16"}, device, actions)
    assert np.abs(np.array(half) - np.array(full)).max() < 0.2


def test_lstm_dqn_update_on_the_device_matches_the_cpu(device):
    torch.manual_seed(0)
    replay = EpisodeReplay(64, dtype="float32")
    rng = np.random.default_rng(0)
    for length in (1, 2, 3, 3, 2):
        replay.add(rng.random((length, 3, 63, 63), dtype=np.float32), rng.integers(0, STOP + 1, length),
                   rng.normal(size=length).astype(np.float32))
    network, target = QNetwork(), QNetwork()
    losses = {}
    for where in (device, torch.device("cpu")):
        online, offline = QNetwork().to(where), QNetwork().to(where)
        online.load_state_dict(network.state_dict())
        offline.load_state_dict(target.state_dict())
        optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
        groups = replay.sample(8, np.random.default_rng(5), where)
        loss = dqn_loss(online, offline, groups, 0.99)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after = dqn_loss(online, offline, groups, 0.99)
        losses[where.type] = (loss.item(), after.item())
        assert next(online.parameters()).device.type == where.type
    (before, after), (cpu_before, cpu_after) = losses[device.type], losses["cpu"]
    assert np.isfinite([before, after]).all() and after < before
    assert before == pytest.approx(cpu_before, rel=1e-2) and after == pytest.approx(cpu_after, rel=1e-2)
