import gc
import inspect
import pickle
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils import seeding
from gymnasium.utils.env_checker import check_env
from PIL import Image

import restore_gym  # noqa: F401  (registers the environments)
from restore_gym.data import BuiltinImages, load_test_set
from restore_gym.engine import STOP, ToolOutputError
from restore_gym.env import RLRestoreEnv, observation_space
from restore_gym.metrics import psnr
from restore_gym.toolbox import Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv, default_prefetch


def test_registration_and_namespaced_id(toolbox):
    for env_id in ("RLRestore-v0", "restore_gym:RLRestore-v0", "RLRestoreSevere-v0"):
        env = gym.make(env_id, toolbox=toolbox)
        assert isinstance(env.unwrapped, RLRestoreEnv)
    assert gym.make("RLRestoreMild-v0", toolbox=toolbox).unwrapped.difficulty == "mild"
    assert gym.make("RLRestore-v0", toolbox=toolbox).unwrapped.difficulty == "moderate"
    spec = gym.spec("RLRestore-v0")
    assert spec.vector_entry_point == "restore_gym.vector_env:RLRestoreVectorEnv" and spec.max_episode_steps is None


def test_each_version_names_its_toolbox_and_records_its_fingerprint():
    v2 = Toolbox.pretrained(variant="v2").fingerprint()
    for name in ("RLRestore", "RLRestoreMild", "RLRestoreModerate", "RLRestoreSevere"):
        assert gym.spec(f"{name}-v0").kwargs["toolbox"] == "v2"
    v3 = gym.make("RLRestoreMild-v0", toolbox="v3").unwrapped  # shipped, not yet the toolbox of a version
    assert v3.difficulty == "mild" and v3.metadata["toolbox"] == "v3"
    assert v3.metadata["toolbox_fingerprint"] == Toolbox.pretrained(variant="v3").fingerprint() != v2
    env = gym.make("RLRestoreSevere-v0")
    assert env.unwrapped.metadata["toolbox"] == "v2" and env.unwrapped.metadata["toolbox_fingerprint"] == v2
    assert env.unwrapped.toolbox is gym.make("RLRestore-v0").unwrapped.toolbox  # shipped tools load once
    vec = gym.make_vec("RLRestore-v0", num_envs=2)
    assert vec.metadata["toolbox"] == "v2" and vec.metadata["toolbox_fingerprint"] == v2
    assert "toolbox" not in RLRestoreEnv.metadata  # the class's metadata stays as declared
    joint = RLRestoreEnv(toolbox="joint").metadata
    assert joint["toolbox"] == "joint" and joint["toolbox_fingerprint"] != v2


def test_an_unnamed_toolbox_is_recorded_as_custom(toolbox):
    metadata = RLRestoreEnv(toolbox=toolbox).metadata
    assert metadata["toolbox"] == "custom" and metadata["toolbox_fingerprint"] == toolbox.fingerprint()
    assert RLRestoreEnv().metadata["toolbox"] == "shipped"


def test_spaces_are_exact(toolbox):
    env = RLRestoreEnv(toolbox=toolbox)
    assert env.action_space == gym.spaces.Discrete(13)
    assert env.observation_space["image"] == gym.spaces.Box(-0.5, 1.5, (3, 63, 63), np.float32)
    assert env.observation_space["previous_tool"] == gym.spaces.Box(0, 1, (12,), np.float32)
    assert env.observation_space["step"] == gym.spaces.Discrete(4)
    assert RLRestoreEnv(toolbox=toolbox, observation="image").observation_space.shape == (63, 63, 5)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_mdp_rewards_ends_and_info(toolbox):
    env = RLRestoreEnv(toolbox=toolbox, end_on_psnr_drop=False)
    obs, info = env.reset(seed=1)
    assert obs["step"] == 0 and not obs["previous_tool"].any()
    assert info["psnr"] == info["psnr_input"] and info["toolchain"] == []
    assert set(info["degradation"]) == {"levels", "blur_sigma", "noise_sigma", "jpeg_quality"}
    total = 0.0
    for t, action in enumerate([4, 0, 7]):
        obs, reward, terminated, truncated, info = env.step(action)
        assert type(reward) is float and type(terminated) is bool and truncated is False
        total += reward
        assert obs["step"] == t + 1 and obs["previous_tool"][action] == 1.0 and obs["previous_tool"].sum() == 1
        assert terminated == (t == 2)
    assert info["toolchain"] == [4, 0, 7]
    assert total == pytest.approx(info["psnr"] - info["psnr_input"], abs=1e-4)
    assert info["psnr"] == pytest.approx(psnr(obs["image"].transpose(1, 2, 0), _clean(env)), abs=1e-3)
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(STOP)
    assert reward == 0.0 and terminated and info["toolchain"] == []


def _clean(env):
    return env.batch.clean[0].permute(1, 2, 0).numpy()


def test_episode_ends_when_psnr_falls_below_the_input_in_training():
    torch.manual_seed(0)
    harmful = Toolbox()
    for tool in harmful.tools:
        torch.nn.init.constant_(tool.conv3.bias, 0.3)
    env = RLRestoreEnv(toolbox=harmful)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(0)
    assert reward < 0 and terminated and info["psnr"] < info["psnr_input"]
    test_env = RLRestoreEnv(toolbox=harmful, split="test")
    test_env.reset()
    assert not test_env.step(0)[2]


def test_seeded_reset_reproduces_the_episode(toolbox):
    def rollout(seed):
        env = RLRestoreEnv(toolbox=toolbox, end_on_psnr_drop=False)
        obs, info = env.reset(seed=seed)
        out = [obs["image"], info["degradation"]]
        for action in (3, 9):
            obs, reward, *_ = env.step(action)
            out += [obs["image"], reward]
        return out

    a, b, c = rollout(5), rollout(5), rollout(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y) if isinstance(x, np.ndarray) else (x == y or pytest.fail())
    assert not np.array_equal(a[0], c[0])


def test_reset_with_a_given_pair(toolbox):
    rng = np.random.default_rng(0)
    clean = rng.random((63, 63, 3)).astype(np.float32)
    degraded = np.clip(clean + 0.1, 0, 1).astype(np.float32)
    env = RLRestoreEnv(toolbox=toolbox)
    obs, info = env.reset(options={"degraded": degraded, "clean": clean})
    np.testing.assert_array_equal(obs["image"], degraded.transpose(2, 0, 1))
    assert info["psnr_input"] == pytest.approx(psnr(degraded, clean), abs=1e-4)
    with pytest.raises(ValueError, match="both 'degraded' and 'clean'"):
        env.reset(options={"degraded": degraded})
    with pytest.raises(ValueError, match="63 x 63 x 3"):
        env.reset(options={"degraded": degraded[:10], "clean": clean[:10]})


def test_test_split_walks_the_frozen_set_in_order(toolbox):
    test_set = load_test_set("mild")
    env = RLRestoreEnv(difficulty="mild", split="test", toolbox=toolbox)
    for k in range(3):
        obs, info = env.reset(seed=0) if k == 0 else env.reset()
        np.testing.assert_array_equal(obs["image"], test_set.degraded[k].transpose(2, 0, 1))
        assert info["degradation"] == test_set.params[k].as_dict()
    obs, _ = env.reset(options={"test_index": 10})
    np.testing.assert_array_equal(obs["image"], test_set.degraded[10].transpose(2, 0, 1))


def test_render_shows_input_current_and_clean(toolbox):
    env = RLRestoreEnv(toolbox=toolbox, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (63 * 4, 63 * 3 * 4, 3) and frame.dtype == np.uint8
    assert RLRestoreEnv(toolbox=toolbox).render() is None


def test_gymnasium_and_sb3_checkers_pass(toolbox):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(gym.make("RLRestore-v0", toolbox=toolbox).unwrapped, skip_render_check=False)
    for mode in ("uint8", "image"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sb3_check_env(RLRestoreEnv(toolbox=toolbox, observation=mode))


def test_vector_env_equals_single_envs_with_the_same_seeds(toolbox):
    n, seed, steps = 5, 11, 14
    vec = gym.make_vec("RLRestore-v0", num_envs=n, toolbox=toolbox)
    assert isinstance(vec, RLRestoreVectorEnv)
    singles = [RLRestoreEnv(toolbox=toolbox) for _ in range(n)]
    vec_obs, _ = vec.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    for _ in range(steps):
        for i in range(n):
            np.testing.assert_allclose(vec_obs["image"][i], single_obs[i]["image"], atol=1e-5)
            assert vec_obs["step"][i] == single_obs[i]["step"]
        actions = rng.integers(0, 13, n)
        vec_obs, rewards, terminated, truncated, _ = vec.step(actions)
        assert not truncated.any()
        for i, env in enumerate(singles):
            if ended[i]:
                single_obs[i], _ = env.reset()
                assert rewards[i] == 0.0 and not terminated[i]
                continue
            single_obs[i], reward, done, _, _ = env.step(int(actions[i]))
            assert rewards[i] == pytest.approx(reward, abs=1e-4) and terminated[i] == done
        ended = terminated
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP


def test_fresh_patches_are_the_reference_draws_of_each_generator(toolbox):
    # The environments degrade the patches of a step together (degrade_batch); each must be the patch the
    # reference path (ImageSource.sample_patch) draws with that row's generator, with its parameters and source.
    source = BuiltinImages("train")
    vec = RLRestoreVectorEnv(num_envs=4, toolbox=toolbox)
    vec.reset(seed=30)
    for _ in range(4):  # episodes started at a later step too, after the rows' first draws
        vec.step(np.full(4, STOP))
    vec.step(np.full(4, STOP))
    for row in range(4):
        rng = seeding.np_random(30 + row)[0]
        for _ in range(3):
            reference = source.sample_patch("moderate", rng)
        np.testing.assert_array_equal(vec.batch.inputs[row].permute(1, 2, 0).numpy(), reference.degraded)
        np.testing.assert_array_equal(vec.batch.clean[row].permute(1, 2, 0).numpy(), reference.clean)
        info = vec.batch.info(row)
        assert info["degradation"] == reference.params.as_dict()
        assert info["patch_source"] == {"image": reference.image_id, "scale": reference.scale, "top": reference.top,
                                        "left": reference.left}
    env = RLRestoreEnv(toolbox=toolbox)
    _, info = env.reset(seed=30)
    assert info["degradation"] == source.sample_patch("moderate", seeding.np_random(30)[0]).params.as_dict()


def test_vector_reset_mask_and_per_env_seeds(toolbox):
    vec = RLRestoreVectorEnv(num_envs=3, toolbox=toolbox)
    obs, _ = vec.reset(seed=[4, 5, 6])
    first = obs["image"].copy()
    obs, _ = vec.reset(seed=[7, 5, 8], options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(obs["image"], first)
    single = RLRestoreEnv(toolbox=toolbox)
    np.testing.assert_array_equal(single.reset(seed=6)[0]["image"], first[2])
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"reset_mask": [1, 0, 1]})


def test_listeners_get_finished_episodes_and_the_toolbox_is_shared(toolbox):
    vec = RLRestoreVectorEnv(num_envs=4, toolbox=toolbox, end_on_psnr_drop=False)
    env = RLRestoreEnv(toolbox=toolbox, end_on_psnr_drop=False)
    assert vec.toolbox is toolbox and env.toolbox is toolbox
    reports = []
    vec.add_episode_listener(reports.extend)
    vec.reset(seed=0)
    vec.step(np.array([1, 2, STOP, 3]))
    assert [r.chain for r in reports] == [()]
    vec.step(np.array([1, 2, 0, STOP]))
    assert sorted(r.chain for r in reports) == [(), (3,)]
    vec.step(np.array([5, 6, 0, 0]))
    assert sorted(r.chain for r in reports) == [(), (1, 1, 5), (2, 2, 6), (3,)]
    report = reports[0]
    assert report.degraded.shape == report.clean.shape == (3, 63, 63) and report.toolbox_version == toolbox.version


def test_bad_input(toolbox, tmp_path):
    env = RLRestoreEnv(toolbox=toolbox)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset(seed=0)
    for action, error in [(13, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError), ("a", TypeError),
                          ([1, 2], ValueError)]:
        with pytest.raises(error, match="0..12|single integer"):
            env.step(action)
    env.step(STOP)
    with pytest.raises(RuntimeError, match="has ended.*call reset"):
        env.step(0)
    with pytest.raises(TypeError, match="colour"):
        gym.make("RLRestore-v0", toolbox=toolbox, colour="red")
    with pytest.raises(ValueError, match="unknown difficulty 'hard'"):
        RLRestoreEnv(toolbox=toolbox, difficulty="hard")
    with pytest.raises(ValueError, match="unknown split"):
        RLRestoreEnv(toolbox=toolbox, split="val")
    with pytest.raises(ValueError, match="unknown observation mode"):
        observation_space("rgb")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            RLRestoreEnv(toolbox=toolbox, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        RLRestoreEnv(toolbox=toolbox, device="tpu")
    for i in range(3):
        Image.fromarray(np.zeros((50, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(ValueError, match="too small"):
        RLRestoreEnv(toolbox=toolbox, source=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="build it with `python -m restore_gym.corpus`"):
        RLRestoreEnv(toolbox=toolbox, source="corpus")  # the tests' private cache holds no corpus
    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox)
    with pytest.raises(RuntimeError, match="before reset"):
        vec.step(np.array([0, 0]))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="2 action"):
        vec.step(np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="num_envs"):
        RLRestoreVectorEnv(num_envs=0, toolbox=toolbox)


def test_default_make_runs_offline_on_the_shipped_toolbox():
    env = gym.make("RLRestore-v0")
    obs, info = env.reset(seed=0)
    assert env.unwrapped.toolbox.metadata["name"] == "restore-gym-cpu-v2"
    assert env.unwrapped.toolbox is gym.make("RLRestore-v0").unwrapped.toolbox
    _, reward, terminated, truncated, info = env.step(6)
    assert info["toolchain"] == [6] and np.isfinite(reward) and truncated is False
    vec = gym.make_vec("RLRestore-v0", num_envs=3)
    assert vec.toolbox is env.unwrapped.toolbox


@pytest.mark.parametrize("split", ["train", "test"])
def test_prefetching_patches_changes_nothing(toolbox, split):
    def run(prefetch):
        vec = RLRestoreVectorEnv(num_envs=3, toolbox=toolbox, split=split, prefetch=prefetch)
        rng = np.random.default_rng(0)
        frames = [vec.reset(seed=2)[0]["image"]]
        for t in range(10):
            frames.append(vec.step(rng.integers(0, 13, 3))[0]["image"])
            if t == 5:
                mask = np.array([True, True, False])
                frames.append(vec.reset(seed=[9, None, 4], options={"reset_mask": mask})[0]["image"])
        vec.close()
        return frames

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_an_environment_dropped_while_it_prefetches_closes_cleanly(toolbox, monkeypatch):
    # The prefetching thread holds no reference to the environment: were the last one dropped there, the
    # environment's close would wait on that very thread ("cannot join current thread").
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, prefetch=True)
    vec.reset(seed=0)  # hands the next patches to the prefetching thread
    executor = vec._executor
    del vec
    gc.collect()
    executor.shutdown(wait=True)
    assert unraisable == []


def test_prefetching_is_on_for_cuda_only_by_default_and_must_be_a_bool(toolbox):
    assert inspect.signature(RLRestoreVectorEnv).parameters["prefetch"].default is None
    assert default_prefetch("cuda") and default_prefetch(torch.device("cuda:1")) and not default_prefetch("cpu")
    assert RLRestoreVectorEnv(num_envs=2, toolbox=toolbox)._executor is None
    assert RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, prefetch=True)._executor is not None
    with pytest.raises(TypeError, match="prefetch must be True or False, got 'yes'"):
        RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, prefetch="yes")


@pytest.mark.parametrize(("name", "value"), [("quantize", "no"), ("end_on_psnr_drop", "False"), ("quantize", 1),
                                             ("end_on_psnr_drop", 0.0)])
def test_flags_must_be_bools(toolbox, name, value):
    with pytest.raises(TypeError, match=rf"{name} must be True or False, got {value!r}"):
        RLRestoreEnv(toolbox=toolbox, **{name: value})
    with pytest.raises(TypeError, match=rf"{name} must be True or False"):
        RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, **{name: value})
    assert RLRestoreEnv(toolbox=toolbox, quantize=np.bool_(True), end_on_psnr_drop=np.bool_(False)).batch.quantize


def test_test_index_must_name_a_patch_of_the_test_set(toolbox):
    env = RLRestoreEnv(toolbox=toolbox, split="test")
    count = len(env.supply.test_set)
    for bad in (2.7, "5", True, None):
        with pytest.raises(TypeError, match=rf"'test_index' reset option must be an int in 0..{count - 1}"):
            env.reset(options={"test_index": bad})
    for bad in (-1, count, 10**9):
        with pytest.raises(ValueError, match=rf"test_index {bad} is out of range: the moderate test set has {count}"):
            env.reset(options={"test_index": bad})
    obs, _ = env.reset(options={"test_index": np.int64(count - 1)})
    np.testing.assert_array_equal(obs["image"], env.supply.test_set.degraded[count - 1].transpose(2, 0, 1))
    with pytest.raises(ValueError, match="needs split='test'"):
        RLRestoreEnv(toolbox=toolbox).reset(options={"test_index": 0})


def test_sources_and_toolboxes_given_as_paths(toolbox, tmp_path):
    with pytest.raises(ValueError, match="source is an empty string"):
        RLRestoreEnv(toolbox=toolbox, source="")
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    toolbox.save(tmp_path / "tools.pt")
    env = gym.make("RLRestore-v0", source=Path(tmp_path), toolbox=str(tmp_path / "tools.pt"))
    assert env.unwrapped.supply.source.root == tmp_path
    env.reset(seed=0)
    assert np.isfinite(env.step(3)[1])
    vec = gym.make_vec("RLRestore-v0", num_envs=2, source=tmp_path, toolbox=tmp_path / "tools.pt")
    vec.reset(seed=0)
    for a, b in zip(vec.unwrapped.toolbox.parameters(), toolbox.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        RLRestoreEnv(toolbox=str(tmp_path / "absent.pt"))
    with pytest.raises(TypeError, match="a toolbox is named by None, 'shipped', a variant"):
        RLRestoreEnv(toolbox=3)
    named = RLRestoreEnv(toolbox="joint").batch.toolbox
    assert named.fingerprint() == Toolbox.pretrained(variant="joint").fingerprint()


def test_non_finite_reset_patches_are_refused(toolbox):
    env = RLRestoreEnv(toolbox=toolbox)
    clean = np.full((63, 63, 3), 0.5, dtype=np.float32)
    for key, bad in (("degraded", np.nan), ("clean", np.inf)):
        patches = {"degraded": clean.copy(), "clean": clean.copy()}
        patches[key][3, 4, 1] = bad
        with pytest.raises(ValueError, match=rf"reset option '{key}' holds 1 NaN or infinite value"):
            env.reset(options=patches)


def test_a_tool_with_non_finite_output_ends_its_episodes_naming_the_tool():
    broken = Toolbox()
    with torch.no_grad():
        broken.tools[6].conv3.bias[0] = float("nan")
    env = RLRestoreEnv(toolbox=broken, end_on_psnr_drop=False)
    env.reset(seed=0)
    with pytest.raises(ToolOutputError, match=r"tool 7 \(denoise-3\) produced NaN or infinite values") as error:
        env.step(6)
    assert (error.value.tool, error.value.tool_name, error.value.rows) == (7, "denoise-3", [0])
    assert str(pickle.loads(pickle.dumps(error.value))) == str(error.value)  # async workers send it pickled
    with pytest.raises(RuntimeError, match="has ended"):
        env.step(0)
    env.reset(seed=0)
    assert np.isfinite(env.step(0)[1])
    vec = RLRestoreVectorEnv(num_envs=3, toolbox=broken, end_on_psnr_drop=False)
    first, _ = vec.reset(seed=0)
    with pytest.raises(ToolOutputError, match=r"episode\(s\) \[1\]"):
        vec.step(np.array([0, 6, 1]))
    obs, rewards, terminated, _, info = vec.step(np.array([0, 6, 1]))  # row 1 starts anew, the others act
    assert rewards[1] == 0.0 and not terminated.any() and info["toolchain"].tolist() == [[0], [], [1]]
    assert not np.array_equal(obs["image"][1], first["image"][1])


def test_a_listener_that_raises_leaves_the_episode_ended(toolbox):
    def listener(reports):
        raise RuntimeError("listener failed")

    env = RLRestoreEnv(toolbox=toolbox)
    env.add_episode_listener(listener)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="listener failed"):
        env.step(STOP)
    with pytest.raises(RuntimeError, match="has ended.*call reset"):
        env.step(3)
    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, end_on_psnr_drop=False)
    vec.add_episode_listener(listener)
    vec.reset(seed=0)
    with pytest.raises(RuntimeError, match="listener failed"):
        vec.step(np.array([STOP, 2]))
    _, rewards, _, _, info = vec.step(np.array([4, 5]))  # the stopped episode restarts instead of taking tool 5
    assert rewards[0] == 0.0 and info["toolchain"].tolist() == [[], [2, 5]]


def test_the_async_vector_env_runs_after_the_parent_ran_a_tool(toolbox):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the forked workers inherit a thread pool that has run (the suite runs on one)
    try:
        env = gym.make("RLRestore-v0", toolbox=toolbox)
        env.reset(seed=0)
        env.step(3)
        vec = gym.make_vec("RLRestore-v0", num_envs=2, vectorization_mode="async", toolbox=toolbox)
        try:
            vec.reset_async(seed=0)
            vec.reset_wait(timeout=30)  # a hang fails here instead of blocking the suite
            vec.step_async(np.array([3, 4]))
            rewards = vec.step_wait(timeout=30)[1]
        finally:
            vec.close(terminate=True)
    finally:
        torch.set_num_threads(threads)
    single = RLRestoreEnv(toolbox=toolbox)
    single.reset(seed=1)
    assert rewards[1] == pytest.approx(single.step(4)[1], abs=1e-4)


def test_bfloat16_tools_keep_a_float32_state_close_to_float32():
    full = gym.make_vec("RLRestore-v0", num_envs=6, split="test")
    half = gym.make_vec("RLRestore-v0", num_envs=6, split="test", precision="bfloat16")
    full.reset(seed=0)
    half.reset(seed=0)
    actions = np.array([1, 4, 6, 7, 9, 11])
    _, r_full, *_ = full.step(actions)
    obs, r_half, *_ = half.step(actions)
    assert obs["image"].dtype == np.float32 and half.unwrapped.batch.images.dtype == torch.float32
    assert np.abs(r_half - r_full).max() < 0.2 and not np.array_equal(r_half, r_full)
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        gym.make("RLRestore-v0", precision="float16")
