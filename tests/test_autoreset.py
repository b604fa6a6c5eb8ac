"""The vector environment's autoreset modes: Gymnasium's NEXT_STEP and SAME_STEP conventions, the same episodes."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import restore_gym  # noqa: F401  (registers the environments)
from restore_gym.engine import STOP
from restore_gym.env import RLRestoreEnv
from restore_gym.rollout import run_one_episode_each
from restore_gym.sb3 import RLRestoreSB3VecEnv
from restore_gym.vector_env import RLRestoreVectorEnv

# The single environment's info keys that the vector environment leaves out (it batches psnr, psnr_input and
# toolchain only), with their masks.
SINGLE_ONLY = {"degradation", "_degradation", "patch_source", "_patch_source"}


def _assert_same_observation(ours, theirs):
    if isinstance(theirs, np.ndarray):
        np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64), atol=1)  # uint8 rounding
        return
    np.testing.assert_allclose(ours["image"], theirs["image"], atol=1e-5)
    np.testing.assert_array_equal(ours["previous_tool"], theirs["previous_tool"])
    np.testing.assert_array_equal(ours["step"], theirs["step"])


def _assert_same_infos(ours, theirs):
    assert set(ours) == set(theirs) - SINGLE_ONLY
    for key, value in ours.items():
        if key == "final_obs":
            for mine, single, present in zip(value, theirs[key], ours["_final_obs"]):
                if present:
                    _assert_same_observation(mine, single)
                else:
                    assert mine is None and single is None
        elif key == "final_info":
            _assert_same_infos(value, theirs[key])
        elif key.startswith("_"):
            np.testing.assert_array_equal(value, theirs[key])
        elif key == "toolchain":
            assert value.tolist() == theirs[key].tolist()
        else:
            np.testing.assert_allclose(value, theirs[key], atol=1e-4)


@pytest.mark.parametrize(("mode", "observation"), [(AutoresetMode.NEXT_STEP, "dict"), (AutoresetMode.SAME_STEP, "dict"),
                                                   (AutoresetMode.SAME_STEP, "image")])
def test_the_vector_env_steps_as_gymnasiums_sync_vector_env_of_single_envs(toolbox, mode, observation):
    # Gymnasium's own SyncVectorEnv over single environments seeded seed + i is the reference of each mode:
    # observations, rewards, ends, and infos with their masks (final_obs and final_info in SAME_STEP).
    n, seed = 3, 5
    vec = gym.make_vec("RLRestore-v0", num_envs=n, vectorization_mode="vector_entry_point", toolbox=toolbox,
                       observation=observation, end_on_psnr_drop=False, autoreset_mode=mode)
    sync = SyncVectorEnv([lambda: RLRestoreEnv(toolbox=toolbox, observation=observation, end_on_psnr_drop=False)] * n,
                         autoreset_mode=mode)
    assert isinstance(vec, RLRestoreVectorEnv) and vec.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    ours, ours_info = vec.reset(seed=seed)
    theirs, theirs_info = sync.reset(seed=seed)
    _assert_same_observation(ours, theirs)
    _assert_same_infos(ours_info, theirs_info)
    rng = np.random.default_rng(1)
    ended = 0
    for _ in range(9):
        actions = np.where(rng.random(n) < 0.25, STOP, rng.integers(0, STOP, n))
        ours, rewards, terminated, truncated, ours_info = vec.step(actions)
        theirs, sync_rewards, sync_terminated, sync_truncated, theirs_info = sync.step(actions)
        _assert_same_observation(ours, theirs)
        np.testing.assert_allclose(rewards, sync_rewards, atol=1e-4)
        np.testing.assert_array_equal(terminated, sync_terminated)
        np.testing.assert_array_equal(truncated, sync_truncated)
        _assert_same_infos(ours_info, theirs_info)
        ended += int(terminated.sum())
    assert ended >= n  # the episodes ended (and restarted) several times


def test_same_step_marks_exactly_the_ended_rows_and_starts_them_anew(toolbox):
    vec = RLRestoreVectorEnv(num_envs=4, toolbox=toolbox, end_on_psnr_drop=False, autoreset_mode="same_step")
    obs, info = vec.reset(seed=3)
    inputs = info["psnr_input"].copy()
    obs, first_rewards, terminated, _, info = vec.step(np.array([0, 1, 2, 3]))
    assert not terminated.any() and not {"final_obs", "_final_obs", "final_info", "_final_info"} & set(info)
    obs, rewards, terminated, _, info = vec.step(np.array([4, STOP, 5, 6]))
    np.testing.assert_array_equal(terminated, [False, True, False, False])
    assert rewards[1] == 0.0 and (rewards[[0, 2, 3]] != 0.0).all()
    np.testing.assert_array_equal(info["_final_obs"], terminated)
    np.testing.assert_array_equal(info["_final_info"], terminated)
    assert [entry is None for entry in info["final_obs"]] == [True, False, True, True]
    final_obs, final_info = info["final_obs"][1], info["final_info"]
    assert final_obs["step"] == 1 and np.flatnonzero(final_obs["previous_tool"]).tolist() == [1]
    assert final_info["toolchain"].tolist() == [None, [1], None, None]
    for key in ("_psnr", "_psnr_input", "_toolchain"):
        np.testing.assert_array_equal(final_info[key], terminated)
    assert final_info["psnr_input"][1] == inputs[1]
    assert final_info["psnr"][1] == pytest.approx(inputs[1] + first_rewards[1], abs=1e-9)
    # The row's observation and info are its new episode's first: step 0, no previous tool, a fresh patch.
    assert obs["step"][1] == 0 and not obs["previous_tool"][1].any() and info["toolchain"][1] == []
    np.testing.assert_array_equal(obs["image"][1], vec.batch.inputs[1].numpy())
    assert info["psnr_input"][1] != inputs[1] and info["psnr"][1] == info["psnr_input"][1]
    obs, _, terminated, _, info = vec.step(np.array([7, 8, 9, 10]))  # rows 0, 2 and 3 apply their third tool
    np.testing.assert_array_equal(terminated, [True, False, True, True])
    np.testing.assert_array_equal(info["_final_obs"], terminated)
    assert [None if entry is None else entry["step"] for entry in info["final_obs"]] == [3, None, 3, 3]
    assert info["final_info"]["toolchain"].tolist() == [[0, 4, 7], None, [2, 5, 9], [3, 6, 10]]
    assert info["toolchain"].tolist() == [[], [8], [], []] and obs["step"].tolist() == [0, 1, 0, 0]


def _first_of(info):
    return {"degradation": info["degradation"], "psnr_input": info["psnr_input"], "rewards": []}


def _vector_episodes(vec, actions, count, seed):
    """The first ``count`` episodes of each sub-environment of ``vec`` reset with ``seed`` when sub-environment
    ``i`` takes the actions ``actions[i]`` in order: per episode its degradation, input PSNR and rewards."""
    next_step = vec.autoreset_mode is AutoresetMode.NEXT_STEP
    vec.reset(seed=seed)
    episodes = [[_first_of(vec.batch.info(row))] for row in range(vec.num_envs)]
    taken = np.zeros(vec.num_envs, dtype=int)
    restarting = np.zeros(vec.num_envs, dtype=bool)
    while min(map(len, episodes)) <= count:
        _, rewards, terminated, _, _ = vec.step(actions[np.arange(vec.num_envs), taken])
        for row in range(vec.num_envs):
            if restarting[row]:  # NEXT_STEP: this step started the row's next episode and ignored its action
                assert rewards[row] == 0.0 and not terminated[row]
                episodes[row].append(_first_of(vec.batch.info(row)))
                continue
            taken[row] += 1
            episodes[row][-1]["rewards"].append(rewards[row])
            if terminated[row] and not next_step:
                episodes[row].append(_first_of(vec.batch.info(row)))
        restarting = terminated & next_step
    return [row_episodes[:count] for row_episodes in episodes]


def _single_episodes(env, actions, count, seed):
    _, info = env.reset(seed=seed)
    episodes, taken = [_first_of(info)], 0
    while len(episodes) <= count:
        _, reward, terminated, _, info = env.step(int(actions[taken]))
        taken += 1
        episodes[-1]["rewards"].append(reward)
        if terminated:
            episodes.append(_first_of(env.reset()[1]))
    return episodes[:count]


def _assert_same_episodes(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert mine["degradation"] == reference["degradation"]
        assert mine["psnr_input"] == pytest.approx(reference["psnr_input"], abs=1e-9)
        assert mine["rewards"] == pytest.approx(reference["rewards"], abs=1e-4)  # the same ends, the same lengths


@pytest.mark.parametrize("end_on_psnr_drop", [True, False])
def test_both_modes_replay_the_episodes_of_single_envs_seeded_seed_plus_i(toolbox, end_on_psnr_drop):
    # Each sub-environment takes its own actions in order, whichever steps its resets fall on; its patches,
    # rewards and ends are those of a single environment seeded seed + i, in both autoreset modes, with and
    # without prefetching. (The untrained tools lower the PSNR: with the training setting every tool ends its
    # episode, without it episodes run up to three tools.)
    n, count, seed = 3, 4, 21
    rng = np.random.default_rng(2)
    actions = np.where(rng.random((n, 60)) < 0.2, STOP, rng.integers(0, STOP, (n, 60)))
    single = RLRestoreEnv(toolbox=toolbox, end_on_psnr_drop=end_on_psnr_drop)
    reference = [_single_episodes(single, actions[i], count, seed + i) for i in range(n)]
    for mode, prefetch in ((AutoresetMode.NEXT_STEP, True), (AutoresetMode.SAME_STEP, True),
                           (AutoresetMode.SAME_STEP, False)):
        vec = RLRestoreVectorEnv(num_envs=n, toolbox=toolbox, end_on_psnr_drop=end_on_psnr_drop, autoreset_mode=mode,
                                 prefetch=prefetch)
        for ours, theirs in zip(_vector_episodes(vec, actions, count, seed), reference):
            _assert_same_episodes(ours, theirs)
        vec.close()
    lengths = [len(episode["rewards"]) for row in reference for episode in row]
    assert max(lengths) == (1 if end_on_psnr_drop else 3) and min(lengths) == 1


def test_the_mode_is_taken_by_enum_value_or_name_through_make_vec_and_recorded(toolbox):
    for given in (AutoresetMode.SAME_STEP, "SameStep", "same_step"):
        vec = gym.make_vec("RLRestore-v0", num_envs=2, toolbox=toolbox, autoreset_mode=given)  # the vector entry point
        assert isinstance(vec, RLRestoreVectorEnv)
        assert vec.autoreset_mode is vec.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    for given in (AutoresetMode.NEXT_STEP, "NextStep", "next_step"):
        vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, autoreset_mode=given)
        assert vec.autoreset_mode is vec.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    default = gym.make_vec("RLRestore-v0", num_envs=2, toolbox=toolbox)  # made after SAME_STEP ones
    assert default.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert RLRestoreVectorEnv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    for bad in (AutoresetMode.DISABLED, "Disabled", "disabled", "sameStep", None, 1):
        with pytest.raises(ValueError, match=r"unsupported autoreset_mode .*supports AutoresetMode\.NEXT_STEP .*"
                                             r"AutoresetMode\.SAME_STEP .*not AutoresetMode\.DISABLED"):
            gym.make_vec("RLRestore-v0", num_envs=2, toolbox=toolbox, autoreset_mode=bad)


def test_gymnasiums_info_wrapper_reads_the_masks(toolbox):
    # DictInfoToList splits the batched infos by their masks: the finished episode's record goes to its row only.
    # (Gymnasium 1.2's observation wrappers refuse SAME_STEP vector environments, its own included.)
    vec = gym.wrappers.vector.DictInfoToList(
        RLRestoreVectorEnv(num_envs=3, toolbox=toolbox, end_on_psnr_drop=False, autoreset_mode="same_step"))
    vec.reset(seed=0)
    after_tool, _, _, _, _ = vec.step(np.array([3, 4, 5]))
    obs, _, terminated, _, infos = vec.step(np.array([STOP, 6, STOP]))
    assert terminated.tolist() == [True, False, True]
    assert [sorted(info) for info in infos] == [["final_info", "final_obs", "psnr", "psnr_input", "toolchain"],
                                                ["psnr", "psnr_input", "toolchain"],
                                                ["final_info", "final_obs", "psnr", "psnr_input", "toolchain"]]
    for row, tool in ((0, 3), (2, 5)):  # a stop leaves the image as the tool made it
        assert infos[row]["final_info"]["toolchain"] == [tool] and infos[row]["toolchain"] == []
        np.testing.assert_array_equal(infos[row]["final_obs"]["image"], after_tool["image"][row])
        assert infos[row]["final_obs"]["step"] == 1 and obs["step"][row] == 0


def test_what_needs_next_step_refuses_same_step(toolbox):
    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, split="test", autoreset_mode="same_step")
    with pytest.raises(ValueError, match="resets finished sub-environments itself.*NEXT_STEP"):
        RLRestoreSB3VecEnv.from_vector_env(vec)
    with pytest.raises(ValueError, match="resets finished sub-environments itself.*NEXT_STEP"):
        RLRestoreSB3VecEnv(2, toolbox=toolbox, autoreset_mode="same_step")
    with pytest.raises(ValueError, match="run_one_episode_each needs .*NEXT_STEP"):
        run_one_episode_each(vec, lambda env, obs: np.full(env.num_envs, STOP))


def test_same_step_after_a_step_that_raised_starts_the_ended_row_and_lets_it_act(toolbox):
    def listener(reports):
        raise RuntimeError("listener failed")

    vec = RLRestoreVectorEnv(num_envs=2, toolbox=toolbox, end_on_psnr_drop=False, autoreset_mode="same_step")
    vec.add_episode_listener(listener)
    vec.reset(seed=0)
    with pytest.raises(RuntimeError, match="listener failed"):
        vec.step(np.array([STOP, 2]))
    obs, rewards, terminated, _, info = vec.step(np.array([4, 5]))
    assert info["toolchain"].tolist() == [[4], [2, 5]] and obs["step"].tolist() == [1, 2]
    assert rewards[0] != 0.0 and not terminated.any() and "final_obs" not in info
