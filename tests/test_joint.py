import copy
import hashlib
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO

from agents import sb3
from agents.lstm_dqn import AGENT_FILE, JOINT_TOOLBOX_FILE, PRESETS, Config, preset, train
from restore_gym import joint
from restore_gym.engine import STATE_RANGE, STOP, EpisodeReport
from restore_gym.env import RLRestoreEnv
from restore_gym.joint import (
    SHIPPED_WEIGHTS_DIR,
    JointConfig,
    JointTrainer,
    JointTrainingError,
    chain_gradients,
    check_output_path,
    finetune,
)
from restore_gym.lstm_dqn import QNetwork, agent_payload
from restore_gym.sb3_joint import JointTrainingCallback
from restore_gym.toolbox import NUM_TOOLS, Toolbox, atomic_torch_save
from restore_gym.vector_env import RLRestoreVectorEnv

TINY_POLICY = {"net_arch": [8], "features_extractor_kwargs": {"cnn_output_dim": 8}}


@pytest.fixture
def tools(toolbox):
    """A private copy of the seeded toolbox: joint training changes tools in place."""
    return copy.deepcopy(toolbox)


def _weights(toolbox):
    return {k: v.detach().clone() for k, v in toolbox.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _report(seed, chain, size=16):
    generator = torch.Generator().manual_seed(seed)
    image = 0.2 + 0.6 * torch.rand(3, size, size, generator=generator)
    return EpisodeReport(image, image.flip(-1), tuple(chain), 0)


def test_gradients_are_averaged_by_use_count_on_a_hand_example(tools):
    reports = [_report(0, (0, 1)), _report(1, (1,)), _report(2, ()), _report(3, (2, 2))]
    degraded = torch.stack([r.degraded for r in reports])
    clean = torch.stack([r.clean for r in reports])
    loss, counts = chain_gradients(tools, degraded, clean, [r.chain for r in reports])
    assert counts.tolist() == [1, 2, 2] + [0] * (NUM_TOOLS - 3)
    got = {t: [p.grad.clone() for p in tools.tools[t].parameters()] for t in range(3)}
    assert all(p.grad is None for t in range(3, NUM_TOOLS) for p in tools.tools[t].parameters())

    def mse(index, chain):  # one chain by hand, clamped after every tool as the environment does
        x = degraded[index : index + 1]
        for tool in chain:
            x = tools.tools[tool](x).clamp(*STATE_RANGE)
        return (x - clean[index : index + 1]).square().mean()

    def grads(value, tool):
        return torch.autograd.grad(value, list(tools.tools[tool].parameters()))

    losses = [mse(0, (0, 1)), mse(1, (1,)), mse(3, (2, 2))]
    expected = {
        0: grads(losses[0], 0),  # used once
        1: [(a + b) / 2 for a, b in zip(grads(mse(0, (0, 1)), 1), grads(losses[1], 1))],  # once in each of 2 chains
        2: [g / 2 for g in grads(losses[2], 2)],  # twice in one chain
    }
    for tool in range(3):
        for a, b in zip(got[tool], expected[tool]):
            torch.testing.assert_close(a, b)
    assert loss == pytest.approx(float(torch.stack(losses).detach().mean()))  # the empty chain carries no loss
    assert chain_gradients(tools, degraded[2:3], clean[2:3], [()]) == (0.0, pytest.approx(np.zeros(NUM_TOOLS)))


def test_rounds_change_the_shared_tools_in_place_for_every_env(tools):
    single = RLRestoreEnv(toolbox=tools, end_on_psnr_drop=False)
    vec = RLRestoreVectorEnv(3, toolbox=tools, end_on_psnr_drop=False)
    trainer = JointTrainer(tools, JointConfig(every=6, batch_size=4, capacity=8))
    trainer.attach(single).attach(vec).attach(vec)  # attaching twice subscribes once
    seen = {"single": [], "vector": []}
    single.add_episode_listener(seen["single"].extend)
    vec.add_episode_listener(seen["vector"].extend)
    before, fingerprint = _weights(tools), tools.fingerprint()

    single.reset(seed=0)
    single.step(4)
    single.step(STOP)
    vec.reset(seed=0)
    # Row 2 stops at once, row 1 after one tool, row 0 after three; a row that ended restarts at the next step.
    for actions in ([1, 5, STOP], [2, STOP, 0], [0, 0, 7]):
        vec.step(np.array(actions))
    assert trainer.episodes == 1 + 3 == len(seen["single"]) + len(seen["vector"])
    assert [r.chain for r in seen["vector"]] == [(), (5,), (1, 2, 0)]
    vec.step(np.array([0, 3, STOP]))  # row 2 ends: the fifth episode
    assert trainer.rounds == 0 and tools.version == 0 and len(trainer.buffer) == 4  # empty chains are not kept
    vec.step(np.array([STOP, STOP, 0]))  # rows 0 and 1 end: the sixth episode starts round 1, the seventh waits
    assert trainer.rounds == 1 and tools.version == 1 and len(trainer.buffer) == 5 and trainer.pending == 1
    assert single.toolbox is vec.toolbox is tools and not tools.training
    assert not _same(before, _weights(tools)) and tools.fingerprint() != fingerprint

    rng = np.random.default_rng(0)
    degraded, clean = rng.random((63, 63, 3)).astype(np.float32), rng.random((63, 63, 3)).astype(np.float32)
    obs, *_ = single.reset(options={"degraded": degraded, "clean": clean})
    obs, *_ = single.step(6)
    expected = tools.apply(torch.from_numpy(degraded).permute(2, 0, 1)[None], [6]).clamp(*STATE_RANGE)[0]
    torch.testing.assert_close(torch.from_numpy(obs["image"]), expected)  # the env runs the new tools
    single.step(STOP)
    assert seen["single"][-1].toolbox_version == 1


def test_a_non_finite_loss_restores_the_weights_and_raises(tools):
    trainer = JointTrainer(tools, JointConfig(every=2, batch_size=2, capacity=2, updates=2, lr=1e30))
    before = _weights(tools)
    with pytest.raises(JointTrainingError, match=r"non-finite .* gradient step 2 of round 1; the tools were restored"):
        trainer([_report(0, (0, 4)), _report(1, (4,))])  # step 1 blows the weights up, step 2 meets NaN
    assert _same(before, _weights(tools)) and tools.version == 0 and trainer.rounds == 0
    assert trainer.optimizer.state_dict()["state"] == {} and not tools.training


def test_config_and_attach_errors(tools, toolbox):
    with pytest.raises(ValueError, match="every=0"):
        JointConfig(every=0)
    with pytest.raises(ValueError, match="lr=-1"):
        JointConfig(lr=-1)
    assert JointConfig.from_mapping({"every": 8, "lr": 1e-3}) == JointConfig(every=8, lr=1e-3)
    with pytest.raises(ValueError, match="here: unknown joint key 'evry'; valid keys: every, batch_size"):
        JointConfig.from_mapping({"evry": 8}, "here")
    with pytest.raises(ValueError, match="joint must be a mapping"):
        JointConfig.from_mapping(8)
    with pytest.raises(ValueError, match="another toolbox"):
        JointTrainer(tools).attach(RLRestoreVectorEnv(1, toolbox=toolbox))
    with pytest.raises(TypeError, match="not an RL-Restore environment"):
        JointTrainer(tools).attach(object())
    with pytest.raises(ValueError, match="tool ids 0..11"):
        chain_gradients(tools, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), [(12,)])


def _agent_file(path, toolbox):
    network = QNetwork()
    with torch.no_grad():
        network.q.bias[3] = 100.0  # always tool 4: non-empty chains
    atomic_torch_save(agent_payload(network, asdict(Config()), toolbox, 0), path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finetune_writes_a_new_versioned_toolbox_and_never_a_shipped_or_input_file(tools, tmp_path, capsys):
    agent, base = _agent_file(tmp_path / "agent.pt", tools), tmp_path / "base.pt"
    tools.save(base)
    shipped = SHIPPED_WEIGHTS_DIR / "toolbox.pt"
    digests = {path: _digest(path) for path in (shipped, base)}
    for out, message in ((shipped, "shipped weights"), (base, "overwrite the input file"), (tmp_path, "folder")):
        with pytest.raises(ValueError, match=message):
            finetune(agent, out, 8, base, progress=False)
    with pytest.raises(SystemExit):
        joint.main(["finetune", "--agent", str(agent), "--out", str(shipped), "--episodes", "8"])
    assert "restore_gym/weights/ holds the shipped weights" in capsys.readouterr().err
    assert check_output_path(tmp_path / "new.pt", base) == tmp_path / "new.pt"

    config = JointConfig(every=4, batch_size=4, capacity=4)
    tuned, record = finetune(agent, tmp_path / "tuned.pt", 8, base, config=config, num_envs=4, progress=False)
    loaded = Toolbox.load(tmp_path / "tuned.pt")
    assert loaded.version == tuned.version == record["rounds"] == 2 and record["episodes"] >= 8
    assert _same(_weights(loaded), _weights(tuned)) and not _same(_weights(loaded), _weights(tools))
    meta = loaded.metadata
    assert meta["base_toolbox"]["path"] == str(base) and meta["base_toolbox"]["sha256"] == digests[base]
    assert meta["agent"]["sha256"] == _digest(agent) and meta["joint_config"] == asdict(config)
    assert meta["episodes"] == record["episodes"] and meta["end_on_psnr_drop"] is False

    (tmp_path / "previous.pt").write_bytes(base.read_bytes())  # a failing run leaves the old file as it was
    with pytest.raises(JointTrainingError):
        finetune(agent, tmp_path / "previous.pt", 8, base, config=replace(config, lr=1e30, updates=2),
                 num_envs=4, progress=False)
    assert _digest(tmp_path / "previous.pt") == digests[base]
    assert {path: _digest(path) for path in digests} == digests


def test_lstm_dqn_joint_flag_runs_and_resumes_exactly(toolbox, tmp_path):
    cfg = preset("smoke", joint_every=4, joint_batch_size=4, joint_capacity=8)
    assert cfg.total_timesteps == 2 * cfg.checkpoint_frequency
    one_tools, two_tools = copy.deepcopy(toolbox), copy.deepcopy(toolbox)
    one = train(cfg, tmp_path / "one", one_tools, progress=False)
    assert one_tools.version > 2
    train(replace(cfg, total_timesteps=cfg.checkpoint_frequency), tmp_path / "two", two_tools, progress=False)
    assert 0 < two_tools.version < one_tools.version
    with pytest.raises(ValueError, match="toolbox"):  # a resume starts from the original tools
        train(cfg, tmp_path / "two", two_tools, resume=True, progress=False)
    resumed_tools = copy.deepcopy(toolbox)
    two = train(cfg, tmp_path / "two", resumed_tools, resume=True, progress=False)
    assert _same(one.state_dict(), two.state_dict())
    assert resumed_tools.version == one_tools.version and _same(_weights(one_tools), _weights(resumed_tools))
    saved = Toolbox.load(tmp_path / "one" / JOINT_TOOLBOX_FILE)
    assert saved.version == one_tools.version and _same(_weights(saved), _weights(one_tools))
    assert torch.load(tmp_path / "one" / AGENT_FILE, weights_only=True)["toolbox"]["version"] == saved.version
    assert PRESETS["smoke"].joint_every == 0
    with pytest.raises(ValueError, match="joint_every=-1"):
        preset("smoke", joint_every=-1)


def test_sb3_callback_and_yaml_joint_block(tools, tmp_path):
    trainer = JointTrainer(tools, JointConfig(every=32, batch_size=8, capacity=16))
    env = sb3.make_env(n_envs=2, env_kwargs={"observation": "uint8"}, toolbox=tools)
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=TINY_POLICY, seed=0,
                device="cpu")
    model.learn(256, callback=JointTrainingCallback(trainer))
    assert trainer.rounds > 0 and tools.version == trainer.rounds and trainer.episodes >= 32 * trainer.rounds

    block = {"policy": "MultiInputPolicy", "n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 1,
             "policy_kwargs": TINY_POLICY, "env_kwargs": {"observation": "uint8"},
             "joint": {"every": 32, "batch_size": 8}}
    path = tmp_path / "hp.yml"
    path.write_text(yaml.safe_dump({"RLRestore-v0": block}))
    for bad, message in (({"evry": 8}, "unknown joint key 'evry'; valid keys: every"),
                         (8, "joint must be a mapping"), ({"every": 0}, "every=0")):
        with pytest.raises(ValueError, match=message) as error:
            sb3.load_hyperparams("ppo", path=path, overrides={"joint": bad})
        assert str(path) in str(error.value)
    base = copy.deepcopy(tools)
    _, record = sb3.train("ppo", timesteps=128, out=tmp_path / "run", hyperparams=path, toolbox=base)
    saved = Toolbox.load(tmp_path / "run" / sb3.JOINT_TOOLBOX_FILE)
    assert saved.version == base.version == record["toolbox"]["version"] > tools.version
