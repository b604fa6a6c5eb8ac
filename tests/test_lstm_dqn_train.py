import csv
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import leave_a_killed_run_then_fill_the_disk, read_scalars
from torch import nn

from agents.lstm_dqn import (
    AGENT_FILE,
    CHECKPOINT_FILE,
    LOG_FILE,
    LOG_TAGS,
    PRESETS,
    Config,
    EpisodeCollector,
    EpisodeGroup,
    EpisodeReplay,
    build_parser,
    crossings,
    dqn_loss,
    greedy_gain,
    learning_rate,
    linear_schedule,
    parse_overrides,
    preset,
    stored_config,
    td_targets,
    train,
)
from restore_gym import summaries
from restore_gym.baselines import validation_set
from restore_gym.data import to_nchw
from restore_gym.engine import STOP
from restore_gym.evaluation import evaluate
from restore_gym.lstm_dqn import LSTMDQNPolicy, QNetwork, load_agent, load_pretrained_agent, toolbox_info
from restore_gym.rollout import run_one_episode_each
from restore_gym.tf_checkpoint import CheckpointError
from restore_gym.toolbox import Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv


class ShiftToolbox(Toolbox):
    """Tool k adds the constant (k - 5.5) / 400: deterministic and cheap. Some tools raise a patch's PSNR and
    some lower it, so episodes of every length occur. The training tests exercise the DQN machinery, not the
    tools, and real tools would make them several times slower on a busy CPU."""

    def forward(self, x, tool_ids):
        shift = (torch.as_tensor(np.asarray(tool_ids), dtype=x.dtype, device=x.device) - 5.5) / 400
        return x + shift.view(-1, 1, 1, 1)


@pytest.fixture(scope="module")
def toolbox():
    torch.manual_seed(0)
    return Toolbox()


@pytest.fixture(scope="module")
def shift_toolbox():
    return ShiftToolbox()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shift_toolbox):
    """The smoke preset trained in one go: (output folder, network)."""
    out = tmp_path_factory.mktemp("one_go")
    return out, train(PRESETS["smoke"], out, shift_toolbox, progress=False)


def test_presets_and_config_checks():
    assert PRESETS["paper"] == Config()
    paper = PRESETS["paper"]
    assert (paper.buffer_size, paper.learning_starts, paper.total_timesteps, paper.train_frequency) == (
        500_000, 5_000, 2_000_000, 4)
    assert (paper.batch_size, paper.target_network_frequency, paper.gamma) == (32, 10_000, 0.99)
    assert (paper.learning_rate, paper.lr_decay, paper.lr_decay_steps, paper.lr_min) == (1e-4, 0.5, 1_000_000, 2.5e-5)
    assert (paper.start_e, paper.end_e, paper.exploration_steps) == (1.0, 0.1, 1_000_000)
    assert preset("cpu", seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown preset 'fast'.*paper, cpu, smoke"):
        preset("fast")
    with pytest.raises(ValueError, match="num_envs=0"):
        preset("smoke", num_envs=0)
    with pytest.raises(ValueError, match="replay_dtype"):
        Config(replay_dtype="uint8")
    with pytest.raises(ValueError, match="unknown difficulty"):
        Config(difficulty="hard")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--preset", "fast", "--out", "x"])


def test_overrides_from_the_command_line():
    assert parse_overrides(["total_timesteps=400000", "learning_rate=3e-4", "replay_dtype=float32"]) == {
        "total_timesteps": 400_000, "learning_rate": 3e-4, "replay_dtype": "float32"}
    with pytest.raises(ValueError, match="'epochs=3'.*FIELD one of"):
        parse_overrides(["epochs=3"])
    with pytest.raises(ValueError, match="'ten' is not a valid int"):
        parse_overrides(["total_timesteps=ten"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_overrides(["total_timesteps"])


def test_epsilon_and_learning_rate_schedules():
    assert linear_schedule(1.0, 0.1, 1_000_000, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 1_000_000, 500_000) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 1_000_000, 1_000_000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 1_000_000, 3_000_000) == pytest.approx(0.1)
    paper = PRESETS["paper"]
    assert [learning_rate(paper, s) for s in (0, 999_999, 1_000_000, 1_999_999, 2_000_000, 9_000_000)] == [
        1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5]
    assert [crossings(3, 9, 4), crossings(4, 7, 4), crossings(0, 32, 4), crossings(9, 5, 4)] == [2, 0, 8, 0]


def _episode(value: float, length: int, first_action: int):
    images = np.full((length, 3, 63, 63), value, dtype=np.float32)
    actions = np.arange(first_action, first_action + length)
    return images, actions, np.arange(length, dtype=np.float32) + value


def test_replay_groups_sampled_episodes_by_length_and_weights_groups_by_size():
    replay = EpisodeReplay(100)
    stored = {0: (0.25, 1), 1: (0.5, 2), 2: (0.75, 3), 3: (0.125, 2)}  # first action -> (image value, length)
    for first, (value, length) in stored.items():
        replay.add(*_episode(value, length, first))
    assert replay.images.dtype == np.float16 and (replay.num_episodes, replay.num_steps) == (4, 8)
    groups = replay.sample(64, np.random.default_rng(0))
    assert [g.actions.shape[1] for g in groups] == [1, 2, 3]
    assert sum(g.actions.shape[0] for g in groups) == 64
    for group in groups:
        n, length = group.actions.shape
        assert group.weight == n / 64 and group.images.shape == (n, length, 3, 63, 63)
        assert group.images.dtype == torch.float32
        for images, actions, rewards in zip(group.images, group.actions, group.rewards):
            value, size = stored[int(actions[0])]
            assert size == length
            expected = _episode(value, length, int(actions[0]))
            assert torch.equal(images, torch.from_numpy(expected[0]))
            assert actions.tolist() == expected[1].tolist() and rewards.tolist() == expected[2].tolist()
    assert sum(g.weight for g in groups) == pytest.approx(1.0)


def test_replay_evicts_whole_episodes_first_in_first_out():
    replay = EpisodeReplay(5, dtype="float32")
    replay.add(*_episode(0.1, 2, 0))  # slots 0-1
    replay.add(*_episode(0.2, 3, 1))  # slots 2-4
    replay.add(*_episode(0.3, 2, 2))  # does not fit at 5: slots 0-1, the first episode leaves
    assert (replay.num_episodes, replay.num_steps) == (2, 5)
    replay.add(*_episode(0.4, 1, 3))  # slot 2: the second episode loses its first step and leaves
    assert (replay.num_episodes, replay.num_steps) == (2, 3)
    firsts = {int(g.actions[k, 0]) for g in replay.sample(50, np.random.default_rng(1)) for k in range(len(g.actions))}
    assert firsts == {2, 3}
    with pytest.raises(ValueError, match="1 to 3 steps"):
        replay.add(*_episode(0.5, 4, 0))
    with pytest.raises(RuntimeError, match="no finished episode"):
        EpisodeReplay(10).sample(4, np.random.default_rng(0))


def test_td_targets_hand_example():
    target_q = torch.zeros(2, 3, 13)
    target_q[0, 1, 4] = 2.0  # max of step 1 of episode 0
    target_q[0, 2, 7] = -1.0
    target_q[0, 2, :7] = -3.0
    target_q[0, 2, 8:] = -3.0  # max of step 2 of episode 0 is -1
    target_q[1, 1] = 5.0
    target_q[1, 0] = 100.0  # step 0 never bootstraps anything
    rewards = torch.tensor([[1.0, 0.5, -0.25], [0.0, 3.0, 2.0]])
    expected = torch.tensor([[1.0 + 0.9 * 2.0, 0.5 + 0.9 * -1.0, -0.25], [0.0 + 0.9 * 5.0, 3.0 + 0.9 * 0.0, 2.0]])
    assert torch.allclose(td_targets(target_q, rewards, gamma=0.9), expected)
    single = td_targets(target_q[:, :1], rewards[:, :1], gamma=0.9)  # one-step episodes: y = r
    assert torch.equal(single, rewards[:, :1])


class CountingNetwork(nn.Module):
    """Q(s, a) = mean(s) * (a + 1) + (steps seen so far, carried in the state) + 10 * (a previous tool was fed)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, image, prev_onehot, state=None):
        seen = torch.zeros(image.shape[0]) if state is None else state[0]
        q = self.scale * image.mean(dim=(1, 2, 3))[:, None] * torch.arange(1.0, 14.0)
        q = q + seen[:, None] + 10.0 * prev_onehot.sum(dim=1, keepdim=True)
        return q, (seen + 1, seen + 1)


def test_loss_hand_example_with_terminal_steps_and_group_weights():
    gamma = 0.9
    # A: one step on an image of mean 0.5, action 2, reward 1: Q = 0.5 * 3 = 1.5, y = 1 (terminal).
    a = EpisodeGroup(torch.full((1, 1, 3, 63, 63), 0.5), torch.tensor([[2]]), torch.tensor([[1.0]]), weight=0.25)
    # B (three copies): images of mean 0.1 then 0.2, tool 4 then stop, rewards 0.3 then 0.
    # t=0: Q = 0.1 * 5 = 0.5; y = 0.3 + 0.9 * max_a Q'(s_1) = 0.3 + 0.9 * (0.2 * 13 + 1 + 10) = 12.54.
    # t=1: Q = 0.2 * 13 + 1 (one step seen) + 10 (tool 4 fed as previous) = 13.6; y = 0 (terminal).
    images = torch.stack([torch.full((3, 63, 63), 0.1), torch.full((3, 63, 63), 0.2)]).expand(3, 2, 3, 63, 63)
    b = EpisodeGroup(images, torch.tensor([[4, STOP]] * 3), torch.tensor([[0.3, 0.0]] * 3), weight=0.75)
    huber_a = 0.5 * 0.5**2
    huber_b = ((12.54 - 0.5 - 0.5) + (13.6 - 0.5)) / 2
    loss = dqn_loss(CountingNetwork(), CountingNetwork(), [a, b], gamma)
    assert loss.item() == pytest.approx(0.25 * huber_a + 0.75 * huber_b, rel=1e-5)


def test_collector_stores_every_finished_episode_and_never_the_autoreset_step(shift_toolbox):
    env = RLRestoreVectorEnv(4, toolbox=shift_toolbox, end_on_psnr_drop=True)
    reports = []
    env.add_episode_listener(reports.extend)
    replay = EpisodeReplay(500, dtype="float32")
    torch.manual_seed(0)
    collector = EpisodeCollector(env, LSTMDQNPolicy(QNetwork(), epsilon=1.0, rng=np.random.default_rng(0)), replay)
    collector.restart([0, 1, 2, 3])
    taken = finished = 0
    for _ in range(15):
        steps, episodes = collector.step()
        taken, finished = taken + steps, finished + len(episodes)
    assert len(reports) == finished == replay.num_episodes > 8
    in_flight = sum(len(steps) for steps in collector.running)
    assert taken == replay.num_steps + in_flight < 15 * 4
    starts = np.flatnonzero(replay.length)
    lengths = replay.length[starts]
    assert set(lengths.tolist()) == {1, 2, 3}
    for start, length, report in zip(starts, lengths, reports):
        actions = replay.actions[start : start + length].tolist()
        assert STOP not in actions[:-1]
        assert [a for a in actions if a != STOP] == list(report.chain)
        np.testing.assert_array_equal(replay.images[start], report.degraded.numpy())


def test_policy_resets_its_lstm_state_on_new_episodes(toolbox):
    torch.manual_seed(1)
    policy = LSTMDQNPolicy(QNetwork())
    rng = np.random.default_rng(0)
    first = {"image": rng.random((2, 3, 63, 63), dtype=np.float32), "previous_tool": np.zeros((2, 12), np.float32),
             "step": np.array([0, 0])}
    policy(None, first)
    previous = np.zeros((2, 12), np.float32)
    previous[0, 3] = 1.0
    second = {"image": rng.random((2, 3, 63, 63), dtype=np.float32), "previous_tool": previous,
              "step": np.array([1, 0])}
    policy(None, second)
    fresh = LSTMDQNPolicy(policy.network)
    fresh(None, second)
    assert torch.equal(policy.state[0][1], fresh.state[0][1]) and torch.equal(policy.state[1][1], fresh.state[1][1])
    assert not torch.equal(policy.state[0][0], fresh.state[0][0])
    vec = RLRestoreVectorEnv(3, split="test", toolbox=toolbox)
    runs = [run_one_episode_each(vec, policy) for _ in range(2)]  # the second run starts from carried-over states
    assert runs[0]["chains"] == runs[1]["chains"]
    np.testing.assert_array_equal(runs[0]["psnr_final"], runs[1]["psnr_final"])


def test_an_agent_evaluates_with_sane_numbers_on_a_few_test_patches(toolbox):
    torch.manual_seed(2)
    report = evaluate(LSTMDQNPolicy(QNetwork()), "moderate", toolbox, max_patches=4)
    metrics = report["metrics"]
    assert report["patches"] == 4 and report["difficulty"] == "moderate"
    assert 10.0 < metrics["psnr_input"] < 40.0 and np.isfinite(metrics["psnr"])
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["psnr_input"], abs=1e-9)
    assert 0.0 <= metrics["chain_length"] <= 3.0 and len(report["test_set"]["digest"]) == 64


def _log_without_speed(path):
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "steps_per_s"} for row in csv.DictReader(handle)]


def test_resume_is_exact(trained, tmp_path, shift_toolbox):
    one_dir, one = trained
    cfg = PRESETS["smoke"]
    assert cfg.total_timesteps == 2 * cfg.checkpoint_frequency
    two_dir = tmp_path / "two"
    train(replace(cfg, total_timesteps=cfg.checkpoint_frequency), two_dir, shift_toolbox, progress=False)
    two = train(cfg, two_dir, shift_toolbox, resume=True, progress=False)
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.equal(a, b), name
    ckpt_one, ckpt_two = (torch.load(d / CHECKPOINT_FILE, weights_only=True) for d in (one_dir, two_dir))
    assert ckpt_one["global_step"] == ckpt_two["global_step"] >= cfg.total_timesteps
    assert ckpt_one["episodes"] == ckpt_two["episodes"] and ckpt_one["rngs"]["numpy"] == ckpt_two["rngs"]["numpy"]
    for key in ("target_network", "replay"):
        for name, value in ckpt_one[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ckpt_two[key][name])), (key, name)
    assert ckpt_one["replay"]["length"].unique().tolist() == [0, 1, 2, 3]
    for name, value in ckpt_one["optimizer"]["state"][0].items():
        assert torch.equal(value, ckpt_two["optimizer"]["state"][0][name]), name
    log = _log_without_speed(one_dir / LOG_FILE)
    assert log == _log_without_speed(two_dir / LOG_FILE)
    assert len(log) == cfg.total_timesteps // cfg.log_frequency and float(log[-1]["loss"]) > 0
    one_curves, two_curves = read_scalars(one_dir / "tensorboard"), read_scalars(two_dir / "tensorboard")
    # every step once in the resumed run's curves, with the values of the run in one go (speed aside)
    assert {tag: curve for tag, curve in two_curves.items() if tag != "charts/SPS"} == \
        {tag: curve for tag, curve in one_curves.items() if tag != "charts/SPS"}


def test_tensorboard_holds_the_log_and_the_greedy_evaluation(trained, shift_toolbox):
    out, network = trained
    cfg = PRESETS["smoke"]
    scalars = read_scalars(out / "tensorboard")
    assert set(scalars) == {*LOG_TAGS, "eval/psnr_gain"}
    assert {"charts/episodic_gain", "losses/td_loss", "charts/epsilon", "charts/SPS"} <= set(LOG_TAGS)
    with open(out / LOG_FILE) as handle:
        log = list(csv.DictReader(handle))
    assert log[0]["loss"] == "nan"  # no update yet at the first row: left out of TensorBoard
    for tag, column in zip(LOG_TAGS, ("mean_return", "mean_psnr_gain", "mean_length", "loss", "epsilon", "lr",
                                      "steps_per_s")):
        rows = [row for row in log if row[column] != "nan"]
        assert [step for step, _ in scalars[tag]] == [int(row["step"]) for row in rows], tag
        assert [value for _, value in scalars[tag]] == pytest.approx([float(row[column]) for row in rows],
                                                                      rel=1e-5), tag  # the CSV's 6 digits
    # the greedy agent on the validation patches after the step crossing eval_frequency and at the end
    (middle, _), (end, final) = scalars["eval/psnr_gain"]
    assert cfg.eval_frequency <= middle < cfg.eval_frequency + cfg.num_envs
    assert end == torch.load(out / AGENT_FILE, weights_only=True)["global_step"]
    patches = validation_set(cfg.difficulty, cfg.source, cfg.eval_patches)
    gain = greedy_gain(network, shift_toolbox, to_nchw(patches.degraded), to_nchw(patches.clean))
    assert final == pytest.approx(gain, abs=1e-6)


def test_without_tensorboard_a_run_warns_and_trains_the_same(trained, tmp_path, shift_toolbox, monkeypatch):
    monkeypatch.setattr(summaries, "tensorboard_available", lambda: False)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        network = train(PRESETS["smoke"], tmp_path, shift_toolbox, progress=False)
    assert not (tmp_path / "tensorboard").exists()
    # the evaluations for TensorBoard left the run unchanged
    for (name, a), b in zip(trained[1].state_dict().items(), network.state_dict().values()):
        assert torch.equal(a, b), name
    assert _log_without_speed(tmp_path / LOG_FILE) == _log_without_speed(trained[0] / LOG_FILE)


def test_a_fresh_run_starts_its_log_anew(trained, tmp_path, shift_toolbox):
    one_dir, _ = trained
    again = tmp_path / "again"
    again.mkdir()
    (again / LOG_FILE).write_text((one_dir / LOG_FILE).read_text())  # an earlier run's log, its checkpoint lost
    train(PRESETS["smoke"], again, shift_toolbox, progress=False)
    assert _log_without_speed(again / LOG_FILE) == _log_without_speed(one_dir / LOG_FILE)


def test_agent_files_and_clear_errors(trained, tmp_path, shift_toolbox):
    out, network = trained
    loaded, info = load_agent(out / AGENT_FILE)
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), loaded.state_dict().values()))
    assert info["config"] == PRESETS["smoke"].__dict__ and info["toolbox"] == {"version": 0, "metadata": {}}
    assert LSTMDQNPolicy.load(out / CHECKPOINT_FILE).network.q.weight.shape == (13, 50)
    payload = torch.load(out / AGENT_FILE, weights_only=True)
    cases = {
        "architecture 'other-net'": {**payload, "architecture": "other-net"},
        "14 actions": {**payload, "num_actions": 14},
        "q.weight: \\(14, 50\\) instead of \\(13, 50\\)": {
            **payload, "q_network": {**payload["q_network"], "q.weight": torch.zeros(14, 50)}},
        "not an agent file": {"weights": payload["q_network"]},
    }
    for message, bad in cases.items():
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            load_agent(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_agent(tmp_path / "absent.pt")
    with pytest.raises(FileExistsError, match="resume"):
        train(PRESETS["smoke"], out, shift_toolbox, progress=False)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(PRESETS["smoke"], tmp_path / "empty", shift_toolbox, resume=True, progress=False)
    with pytest.raises(ValueError, match="batch_size: 8 there, 4 here"):
        train(preset("smoke", batch_size=4), out, shift_toolbox, resume=True, progress=False)
    with pytest.raises(ValueError, match="toolbox"):
        train(PRESETS["smoke"], out, Toolbox(version=2), resume=True, progress=False)
    (tmp_path / "agent_only").mkdir()
    torch.save(payload, tmp_path / "agent_only" / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(PRESETS["smoke"], tmp_path / "agent_only", shift_toolbox, resume=True, progress=False)


def test_the_shipped_agent_loads_offline_and_restores():
    network, info = load_pretrained_agent()
    shipped_tools = Toolbox.pretrained()
    assert info["toolbox"] == toolbox_info(shipped_tools)  # trained against the shipped toolbox
    config = stored_config(info)
    assert config["difficulty"] == "moderate" and info["global_step"] >= config["total_timesteps"]
    assert "/" not in config["source"]  # a named source, no path of the training machine
    vec = RLRestoreVectorEnv(16, "moderate", split="test", toolbox=shipped_tools)
    result = run_one_episode_each(vec, LSTMDQNPolicy.pretrained(), seed=0)
    assert np.mean(result["psnr_final"] - result["psnr_input"]) > 1.0
    assert all(1 <= len(chain) <= 3 for chain in result["chains"])


def test_a_checkpoint_from_before_new_config_fields_still_resumes(trained, tmp_path, shift_toolbox):
    out, _ = trained
    payload = torch.load(out / CHECKPOINT_FILE, weights_only=False)
    payload["config"] = {k: v for k, v in payload["config"].items() if not k.startswith("joint_")}
    resumed = tmp_path / "old"
    resumed.mkdir()
    torch.save(payload, resumed / CHECKPOINT_FILE)
    (resumed / LOG_FILE).write_text((out / LOG_FILE).read_text())
    assert stored_config(payload) == PRESETS["smoke"].__dict__
    train(preset("smoke", total_timesteps=80), resumed, shift_toolbox, resume=True, progress=False)
    assert load_agent(resumed / AGENT_FILE)[1]["global_step"] >= 80


@pytest.mark.parametrize("damage", ["garbage\n", "\n", "64,1"])
def test_a_damaged_log_does_not_block_a_resume(trained, tmp_path, shift_toolbox, damage):
    out, _ = trained
    shutil.copy(out / CHECKPOINT_FILE, tmp_path / CHECKPOINT_FILE)
    (tmp_path / LOG_FILE).write_text((out / LOG_FILE).read_text() + damage)  # a line appended, or a torn row
    with pytest.warns(UserWarning, match=rf"training log {tmp_path / LOG_FILE} has damaged lines"):
        train(PRESETS["smoke"], tmp_path, shift_toolbox, resume=True, progress=False)
    assert (tmp_path / LOG_FILE).read_text() == (out / LOG_FILE).read_text()


def test_a_run_starts_by_removing_stale_temporaries_and_writes_its_config_atomically(tmp_path, monkeypatch,
                                                                                     shift_toolbox):
    leave_a_killed_run_then_fill_the_disk(tmp_path, monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        train(PRESETS["smoke"], tmp_path, shift_toolbox, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == "{\"earlier\": true}"
