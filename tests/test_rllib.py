"""RLlib's PPO (new API stack) trains on the environment registered with ray.tune; needs the ``ray`` extra."""

import math

import pytest

pytest.importorskip("ray.rllib")

import ray  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

from restore_gym.rllib import flatten_observations, register  # noqa: E402

ITERATIONS, BATCH = 2, 64


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of one CPU for the module (the env runner and learner run in this process)."""
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ppo_trains_on_the_uint8_mode_and_its_returns_are_psnr_gains(local_ray):
    episodes = []  # per finished episode: RLlib's return, then the PSNR gain from the environment's infos

    def on_episode_end(*, episode, prev_episode_chunks, **_):
        chunks = [*prev_episode_chunks, episode]  # an episode cut by a sampling boundary comes in chunks
        first, last = chunks[0].get_infos(0), episode.get_infos(-1)
        assert first["psnr"] == first["psnr_input"]  # the reset's info: nothing applied yet
        episodes.append((sum(chunk.get_return() for chunk in chunks), last["psnr"] - first["psnr"]))

    config = (
        PPOConfig()
        .environment(register(), env_config={"observation": "uint8", "difficulty": "mild"})
        .env_runners(num_env_runners=0, env_to_module_connector=flatten_observations)
        .training(train_batch_size=BATCH, minibatch_size=32, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [16], "head_fcnet_hiddens": []})
        .callbacks(on_episode_end=on_episode_end)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    results, ends = [], []  # ends: the episodes finished by the end of each iteration
    try:
        for _ in range(ITERATIONS):
            results.append(algo.train())
            ends.append(len(episodes))
    finally:
        algo.stop()
    runners, learner = results[-1]["env_runners"], results[-1]["learners"]["default_policy"]
    assert runners["num_env_steps_sampled_lifetime"] >= ITERATIONS * BATCH
    assert math.isfinite(learner["total_loss"]) and learner["num_module_steps_trained_lifetime"] > 0
    # every episode's return is its PSNR gain (the rewards telescope), to float rounding
    assert len(episodes) == runners["num_episodes_lifetime"] > 20
    assert max(abs(ret - gain) for ret, gain in episodes) < 1e-9
    gains = [gain for _, gain in episodes]
    assert min(gains) < 0 < max(gains)  # early PPO applies tools that help and tools that hurt
    # RLlib's own episode metrics, over the episodes of each iteration, are those gains
    for result, start, end in zip(results, [0, *ends], ends):
        mine, reported = gains[start:end], result["env_runners"]
        assert reported["num_episodes"] == len(mine) > 0
        assert reported["episode_return_mean"] == pytest.approx(sum(mine) / len(mine), abs=1e-9)
        assert reported["episode_return_min"] == pytest.approx(min(mine), abs=1e-9)
        assert reported["episode_return_max"] == pytest.approx(max(mine), abs=1e-9)
