import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import QRDQN, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor, VecTransposeImage

import restore_gym  # noqa: F401  (registers the environments)
from restore_gym.data import load_test_set
from restore_gym.engine import STOP
from restore_gym.env import RLRestoreEnv
from restore_gym.sb3 import RLRestoreSB3VecEnv, make_sb3_vec_env
from restore_gym.vector_env import RLRestoreVectorEnv


def test_immediate_reset_matches_single_envs_with_the_same_seeds(toolbox):
    n, seed = 3, 11
    env = make_sb3_vec_env(num_envs=n, toolbox=toolbox)
    singles = [RLRestoreEnv(toolbox=toolbox) for _ in range(n)]
    assert env.seed(seed) == [seed, seed + 1, seed + 2]
    obs = env.reset()
    single_obs, single_infos = zip(*(single.reset(seed=seed + i) for i, single in enumerate(singles)))
    single_obs = list(single_obs)
    assert [info["psnr_input"] for info in env.reset_infos] == [info["psnr_input"] for info in single_infos]
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(6):
        for i in range(n):
            np.testing.assert_allclose(obs["image"][i], single_obs[i]["image"], atol=1e-5)
            assert obs["step"][i] == single_obs[i]["step"]
        actions = np.where(rng.random(n) < 0.3, STOP, rng.integers(0, STOP, n))
        obs, rewards, dones, infos = env.step(actions)
        assert isinstance(infos, list) and len(infos) == n and rewards.dtype == np.float32 and dones.dtype == bool
        for i, single in enumerate(singles):
            last, reward, terminated, _, info = single.step(int(actions[i]))
            assert rewards[i] == pytest.approx(reward, abs=1e-4) and dones[i] == terminated
            assert infos[i]["TimeLimit.truncated"] is False
            assert infos[i]["toolchain"] == info["toolchain"] and infos[i]["psnr"] == pytest.approx(info["psnr"])
            single_obs[i] = last
            if terminated:
                ends += 1
                terminal = infos[i]["terminal_observation"]
                np.testing.assert_allclose(terminal["image"], last["image"], atol=1e-5)
                np.testing.assert_array_equal(terminal["previous_tool"], last["previous_tool"])
                assert terminal["step"] == last["step"]
                single_obs[i], single_info = single.reset()
                assert env.reset_infos[i]["psnr_input"] == pytest.approx(single_info["psnr_input"])
            else:
                assert "terminal_observation" not in infos[i]
    assert ends >= n


@pytest.mark.parametrize("mode", ["uint8", "image"])
def test_terminal_observation_in_every_mode_is_the_single_env_observation(toolbox, mode):
    env = make_sb3_vec_env(num_envs=2, toolbox=toolbox, observation=mode, end_on_psnr_drop=False)
    single = RLRestoreEnv(toolbox=toolbox, observation=mode, end_on_psnr_drop=False)
    env.seed(5)
    first = env.reset()
    single_first, _ = single.reset(seed=5)
    env.step(np.array([3, STOP]))
    last, *_ = single.step(3)
    _, _, dones, infos = env.step(np.array([STOP, STOP]))
    terminal, single_terminal = infos[0]["terminal_observation"], single.step(STOP)[0]
    assert dones.all() and single.observation_space.contains(terminal)
    if mode == "image":
        np.testing.assert_array_equal(first[0], single_first)
        np.testing.assert_array_equal(terminal, single_terminal)
    else:
        np.testing.assert_array_equal(first["image"][0], single_first["image"])
        for key in ("image", "previous_tool", "step"):
            np.testing.assert_array_equal(terminal[key], single_terminal[key])


def test_seeding_is_reproducible_and_consumed_by_the_next_reset(toolbox):
    def rollout(seed):
        env = make_sb3_vec_env(num_envs=2, toolbox=toolbox)
        env.seed(seed)
        out = [env.reset()["image"]]
        for actions in ([2, STOP], [STOP, 7], [STOP, STOP]):
            obs, rewards, _, _ = env.step(np.array(actions))
            out += [obs["image"], rewards]
        assert env._seeds == [None, None]
        out.append(env.reset()["image"])
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0][1], c[0][0])  # sub-environment 1 of seed 3 is sub-environment 0 of seed 4
    assert not np.array_equal(a[0][0], c[0][0]) and not np.array_equal(a[0], a[-1])


def test_attributes_methods_and_wrappers(toolbox):
    vec = gym.make_vec("RLRestore-v0", num_envs=3, toolbox=toolbox, end_on_psnr_drop=False, render_mode="rgb_array")
    env = RLRestoreSB3VecEnv.from_vector_env(vec)
    assert env.num_envs == 3 and env.observation_space == RLRestoreEnv(toolbox=toolbox).observation_space
    assert env.get_attr("difficulty") == ["moderate"] * 3 and env.get_attr("toolbox", indices=[1])[0] is toolbox
    assert env.get_attr("observation_space", 0) == [env.observation_space]
    assert env.get_attr("action_space") == [gym.spaces.Discrete(13)] * 3
    assert env.has_attr("observation_mode") and not env.has_attr("action_masks")
    env.set_attr("observation_mode", "uint8")
    assert env.get_attr("observation_mode", indices=[0, 2]) == ["uint8", "uint8"]
    env.set_attr("observation_mode", "dict")
    with pytest.raises(ValueError, match="share one environment"):
        env.set_attr("observation_mode", "uint8", indices=[1])
    with pytest.raises(AttributeError, match="no attribute 'colour'"):
        env.get_attr("colour")
    with pytest.raises(AttributeError, match="no attribute 'colour'"):
        env.set_attr("colour", "red")
    with pytest.raises(AttributeError, match="no attribute 'paint'"):
        env.env_method("paint")
    with pytest.raises(AttributeError, match="not a method"):
        env.env_method("difficulty")
    with pytest.raises(ValueError, match="call the VecEnv's reset"):
        env.env_method("reset", indices=[0])
    with pytest.raises(IndexError, match=r"\[3\] out of range"):
        env.get_attr("difficulty", indices=[0, 3])
    assert env.env_is_wrapped(Monitor) == [False] * 3 and env.env_is_wrapped(Monitor, indices=2) == [False]

    reports = []
    monitored = VecMonitor(env)
    assert monitored.env_method("add_episode_listener", reports.extend, indices=[0, 1]) == [None, None]
    monitored.seed(0)
    obs = monitored.reset()
    frames = monitored.env_method("render", indices=[2])
    assert len(frames) == 1 and frames[0].shape == (63 * 4, 63 * 3 * 4, 3) and frames[0].dtype == np.uint8
    assert len(monitored.get_images()) == 3 and monitored.render().shape == (2 * 63 * 4, 2 * 63 * 3 * 4, 3)
    _, rewards, dones, infos = monitored.step(np.array([STOP, 4, STOP]))
    assert dones.tolist() == [True, False, True] and [r.chain for r in reports] == [(), ()]
    assert infos[0]["episode"]["r"] == 0.0 and infos[0]["episode"]["l"] == 1 and "episode" not in infos[1]
    _, rewards2, dones, infos = monitored.step(np.array([STOP, STOP, STOP]))
    assert dones.all() and sorted(r.chain for r in reports) == [(), (), (), (), (4,)]
    assert infos[1]["episode"]["l"] == 2 and infos[1]["episode"]["r"] == pytest.approx(rewards[1], abs=1e-5)
    assert not np.array_equal(obs["image"][0], infos[0]["terminal_observation"]["image"])  # a fresh patch started


def test_bad_input(toolbox):
    env = make_sb3_vec_env(num_envs=2, toolbox=toolbox)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.array([0, 0]))
    env.reset()
    with pytest.raises(ValueError, match="2 action"):
        env.step(np.array([0, 0, 0]))
    for actions, error in [([0, 13], ValueError), ([-1, 0], ValueError), ([0.5, 1.0], TypeError)]:
        with pytest.raises(error, match="0..12"):
            env.step_async(actions)
    with pytest.raises(RuntimeError, match="without a pending step_async"):
        env.step_wait()
    with pytest.raises(ValueError, match="no reset options"):
        env.set_options({"test_index": 3})
    env.set_options(None)
    with pytest.raises(TypeError, match="expected an RLRestoreVectorEnv"):
        RLRestoreSB3VecEnv.from_vector_env(RLRestoreEnv(toolbox=toolbox))
    with pytest.raises(TypeError, match="colour"):
        RLRestoreSB3VecEnv(2, toolbox=toolbox, colour="red")
    with pytest.raises(ValueError, match="num_envs"):
        make_sb3_vec_env(num_envs=0, toolbox=toolbox)
    with pytest.warns(UserWarning, match="rgb_array"):
        assert env.get_images() == [None, None]


ON_POLICY = dict(n_steps=32, batch_size=32, n_epochs=1)
OFF_POLICY = dict(buffer_size=128, learning_starts=64, train_freq=8, batch_size=16, target_update_interval=32)
TINY_CNN = dict(features_extractor_kwargs=dict(features_dim=16))
TINY_COMBINED = dict(features_extractor_kwargs=dict(cnn_output_dim=16))


@pytest.mark.parametrize(("algo", "policy", "mode", "kwargs", "policy_kwargs"), [
    (PPO, "MultiInputPolicy", "dict", ON_POLICY, {}),
    (A2C, "CnnPolicy", "image", dict(n_steps=8), TINY_CNN),
    (DQN, "MultiInputPolicy", "uint8", OFF_POLICY, TINY_COMBINED),
    (QRDQN, "CnnPolicy", "image", OFF_POLICY, dict(TINY_CNN, n_quantiles=8)),
    (RecurrentPPO, "MultiInputLstmPolicy", "uint8", ON_POLICY, dict(TINY_COMBINED, lstm_hidden_size=16)),
], ids=["ppo-dict", "a2c-image", "dqn-uint8", "qrdqn-image", "recurrentppo-uint8"])
def test_sb3_algorithms_learn_and_predict(toolbox, algo, policy, mode, kwargs, policy_kwargs):
    env = make_sb3_vec_env(num_envs=2, toolbox=toolbox, observation=mode)
    model = algo(policy, env, policy_kwargs=dict(policy_kwargs, net_arch=[16]), seed=0, device="cpu", **kwargs)
    assert isinstance(model.get_env(), VecTransposeImage) == (mode != "dict")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    if algo in (DQN, QRDQN):
        assert model._n_updates > 0
    obs = model.get_env().reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and ((actions >= 0) & (actions <= STOP)).all()
    model.get_env().step(actions)


def test_adapter_shares_the_vector_env_and_needs_its_own_reset(toolbox):
    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox)
    vec.reset(seed=0)
    vec.step(np.array([STOP, STOP]))  # both rows now wait for Gymnasium's next-step autoreset
    env = RLRestoreSB3VecEnv.from_vector_env(vec)
    assert env.vector_env is vec and env.get_attr("batch")[0] is vec.batch
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.array([0, 0]))
    env.reset()
    _, rewards, dones, _ = env.step(np.array([STOP, STOP]))
    assert dones.all() and not rewards.any()
    env.close()


def test_test_split_walks_the_frozen_set_with_immediate_resets(toolbox):
    test_set = load_test_set("mild")
    env = make_sb3_vec_env(num_envs=2, difficulty="mild", split="test", toolbox=toolbox, observation="image")
    env.seed(0)
    env.reset()
    env.step(np.array([STOP, 1]))
    obs, _, dones, infos = env.step(np.array([STOP, STOP]))
    assert dones.all() and infos[1]["toolchain"] == [1]
    np.testing.assert_array_equal(infos[0]["terminal_observation"][..., :3], _uint8(test_set.degraded[2]))
    np.testing.assert_array_equal(obs[0, ..., :3], _uint8(test_set.degraded[4]))
    np.testing.assert_array_equal(obs[1, ..., :3], _uint8(test_set.degraded[3]))


def _uint8(image):
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
