import base64
import csv
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import read_scalars
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from agents import sb3
from agents.sb3 import load_hyperparams, make_env, model_kwargs, train, validate_hyperparams
from restore_gym.baselines import NamedPolicy
from restore_gym.engine import STOP
from restore_gym.evaluation import evaluate
from restore_gym.sb3_policy import ALGORITHMS, SB3Policy, algorithm_class, load_policy
from restore_gym.vector_env import RLRestoreVectorEnv

MODELS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "leaderboard" / "models"

ENV_IDS = ("RLRestore-v0", "RLRestoreMild-v0", "RLRestoreModerate-v0", "RLRestoreSevere-v0")
TINY_POLICY = {"net_arch": [8], "features_extractor_kwargs": {"cnn_output_dim": 8}}


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_hyperparameter_file_validates_and_builds_its_model(toolbox, algo):
    blocks = yaml.safe_load(sb3.default_hyperparams_file(algo).read_text())
    assert set(ENV_IDS) <= set(blocks)
    for env_id in blocks:
        hyperparams = load_hyperparams(algo, env_id)
        assert hyperparams["n_timesteps"] >= 100_000 and hyperparams["env_kwargs"]["observation"] == "uint8"
    # The keys are real constructor arguments: SB3 accepts the block (replay buffer shrunk to save memory).
    small = {"buffer_size": 64} if "buffer_size" in hyperparams else {}
    hyperparams = load_hyperparams(algo, "RLRestore-v0", overrides=small)
    env = make_env("RLRestore-v0", hyperparams["n_envs"], hyperparams["env_kwargs"], toolbox)
    model = algorithm_class(algo)(hyperparams["policy"], env, device="cpu", **model_kwargs(hyperparams))
    assert model.n_envs == hyperparams["n_envs"] and model.gamma == hyperparams["gamma"]


def _tiny(algo):
    base = {"n_envs": 2, "policy_kwargs": TINY_POLICY}
    if algo == "dqn":
        return {**base, "buffer_size": 128, "learning_starts": 32, "batch_size": 16, "train_freq": 4,
                "gradient_steps": 1, "target_update_interval": 32}
    return {**base, "n_steps": 8}


@pytest.mark.parametrize(("algo", "env_id", "eval_difficulty", "expected", "optimizer_state"), [
    ("a2c", "RLRestore-v0", "mild", "mild", True),
    ("dqn", "RLRestoreSevere-v0", None, "severe", False),
])
def test_train_writes_a_run_that_load_policy_reproduces(toolbox, tmp_path, algo, env_id, eval_difficulty, expected,
                                                        optimizer_state):
    model, record = train(algo, env_id, seed=3, timesteps=128, out=tmp_path, overrides=_tiny(algo),
                          toolbox=toolbox, eval_difficulty=eval_difficulty, optimizer_state=optimizer_state)
    assert model.num_timesteps >= 128 and record["training"]["timesteps"] == model.num_timesteps
    assert {p.name for p in tmp_path.iterdir()} == {"config.yml", "progress.csv", "model.zip", "eval.json",
                                                    "tensorboard"}
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(json.dumps(record))
    metrics = record["metrics"]
    assert record["difficulty"] == expected and record["patches"] == 164 and record["test_set"]["digest_matches"]
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["psnr_input"])
    assert 0 <= metrics["chain_length"] <= 3 and "packages" in record["provenance"]
    assert record["agent"]["name"] == f"sb3-{algo}"
    config = yaml.safe_load((tmp_path / "config.yml").read_text())
    assert config["algo"] == algo and config["hyperparams"]["n_timesteps"] == 128 and config["seed"] == 3
    assert config["toolbox_info"] == {"version": toolbox.version, "metadata": toolbox.metadata}
    assert record["toolbox"]["fingerprint"] == toolbox.fingerprint()

    policy = load_policy(tmp_path / "model.zip")
    assert type(policy.model) is type(model) and policy.observation_mode == "uint8"
    assert bool(policy.model.policy.optimizer.state) == optimizer_state
    loaded = policy.model.policy.state_dict()
    for name, weights in model.policy.state_dict().items():
        assert torch.equal(loaded[name], weights), name
    vec = RLRestoreVectorEnv(4, expected, split="test", toolbox=toolbox, observation="uint8")
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(policy(vec, obs), model.predict(obs, deterministic=True)[0])
    if algo == "a2c":  # the loaded policy scores exactly what train() recorded
        again = evaluate(NamedPolicy(f"sb3-{algo}", load_policy(tmp_path)), expected, toolbox)
        assert again["per_patch"] == record["per_patch"] and again["metrics"]["psnr"] == metrics["psnr"]


def test_the_command_line_trains_evaluates_and_prints_the_summary(tmp_path, capsys):
    from agents import sb3

    assert sb3.main(["--algo", "a2c", "--timesteps", "40", "--out", str(tmp_path), "--eval-difficulty", "mild"]) == 0
    record = json.loads((tmp_path / "eval.json").read_text())
    printed = capsys.readouterr().out
    assert "mild" in printed and f"{record['metrics']['psnr']:.3f}" in printed


def test_train_writes_sb3s_tensorboard_log_and_the_test_gain(toolbox, tmp_path):
    model, record = train("dqn", seed=1, timesteps=160, out=tmp_path, overrides=_tiny("dqn"), toolbox=toolbox)
    scalars = read_scalars(tmp_path / "tensorboard")
    assert {"rollout/ep_rew_mean", "rollout/exploration_rate", "time/fps", "train/loss"} <= set(scalars)
    gain = record["metrics"]["psnr_gain"]
    assert scalars["eval/test_psnr_gain"] == [(model.num_timesteps, pytest.approx(gain, abs=1e-6))]
    progress = [row for row in csv.DictReader((tmp_path / "progress.csv").open()) if row["rollout/ep_rew_mean"]]
    # the same rows as progress.csv: SB3 writes each dump to both
    assert [step for step, _ in scalars["rollout/ep_rew_mean"]] == [int(r["time/total_timesteps"]) for r in progress]
    assert [v for _, v in scalars["rollout/ep_rew_mean"]] == pytest.approx(
        [float(r["rollout/ep_rew_mean"]) for r in progress], rel=1e-6)


def _step_and_state(policy, vec, obs):
    actions = policy(vec, obs)
    return actions, tuple(s.copy() for s in policy.state)


@pytest.mark.parametrize(("mode", "policy_name"), [("uint8", "MultiInputLstmPolicy"), ("image", "CnnLstmPolicy")])
def test_recurrent_policy_carries_lstm_states_and_resets_them_at_episode_starts(toolbox, mode, policy_name):
    env = make_env(n_envs=2, env_kwargs={"observation": mode}, toolbox=toolbox)
    kwargs = {"lstm_hidden_size": 8, **TINY_POLICY} if mode == "uint8" else {
        "lstm_hidden_size": 8, "net_arch": [8], "features_extractor_kwargs": {"features_dim": 8}}
    model = RecurrentPPO(policy_name, env, n_steps=8, batch_size=16, policy_kwargs=kwargs, seed=0, device="cpu")
    vec = RLRestoreVectorEnv(2, toolbox=toolbox, observation=mode, end_on_psnr_drop=False)
    policy = SB3Policy(model, mode)
    first, _ = vec.reset(seed=0)
    _, start_state = _step_and_state(policy, vec, first)
    second, *_ = vec.step(np.array([3, 5]))
    _, carried = _step_and_state(policy, vec, second)
    _, fresh = _step_and_state(SB3Policy(model), vec, second)
    assert not np.allclose(carried[0], fresh[0])  # the state of the first step reached the second
    _, restarted = _step_and_state(policy, vec, first)  # both rows at step 0: states reset
    for got, expected in zip(restarted, start_state):
        np.testing.assert_array_equal(got, expected)
    bigger = RLRestoreVectorEnv(3, toolbox=toolbox, observation=mode)
    actions = policy(bigger, bigger.reset(seed=1)[0])
    assert actions.shape == (3,) and policy.state[0].shape[1] == 3


def test_policy_reobserves_an_environment_of_another_mode(toolbox):
    model = A2C("MultiInputPolicy", make_env(n_envs=2, env_kwargs={"observation": "uint8"}, toolbox=toolbox),
                policy_kwargs=TINY_POLICY, seed=0, device="cpu")
    policy = SB3Policy(model)
    as_uint8 = RLRestoreVectorEnv(3, toolbox=toolbox, observation="uint8")
    as_dict = RLRestoreVectorEnv(3, toolbox=toolbox)
    expected = policy(as_uint8, as_uint8.reset(seed=2)[0])
    np.testing.assert_array_equal(policy(as_dict, as_dict.reset(seed=2)[0]), expected)
    assert ((expected >= 0) & (expected <= STOP)).all()
    with pytest.raises(ValueError, match="trained on observation mode 'uint8', not 'image'"):
        SB3Policy(model, "image")


def _write(tmp_path, block, env_id="RLRestore-v0"):
    path = tmp_path / "hp.yml"
    path.write_text(yaml.safe_dump({env_id: block}))
    return path


def test_schedules_and_class_names_resolve(tmp_path):
    block = {"policy": "MultiInputPolicy", "learning_rate": "lin_0.001", "clip_range": 0.1,
             "policy_kwargs": {"activation_fn": "nn.Tanh", "features_extractor_class": "CombinedExtractor"}}
    kwargs = model_kwargs(load_hyperparams("ppo", path=_write(tmp_path, block)))
    assert isinstance(kwargs["learning_rate"], LinearSchedule) and kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert kwargs["policy_kwargs"]["activation_fn"] is nn.Tanh and kwargs["clip_range"] == 0.1


@pytest.mark.parametrize(("block", "message"), [
    ({"policy": "MultiInputPolicy", "learning_rat": 0.1}, r"PPO hyperparameter key 'learning_rat'.*learning_rate"),
    ({"policy": "MultiInputPolicy", "buffer_size": 10}, r"unknown PPO hyperparameter key 'buffer_size'.*n_epochs"),
    ({"policy": "MultiInputPolicy", "normalize": True}, r"unknown PPO hyperparameter key 'normalize'.*n_timesteps"),
    ({"policy": "MultiInputPolicy", "seed": 1}, "'seed' is set by the trainer"),
    ({"n_envs": 2}, "no policy; choose one of MlpPolicy, CnnPolicy, MultiInputPolicy"),
    ({"policy": "CnnLstmPolicy"}, "'CnnLstmPolicy' is not a PPO policy"),
    ({"policy": "MultiInputPolicy", "n_envs": 0}, "n_envs must be a positive integer"),
    ({"policy": "MultiInputPolicy", "n_timesteps": 1.5}, "n_timesteps must be a positive integer"),
    ({"policy": "MultiInputPolicy", "learning_rate": "fast"}, "learning_rate 'fast' is neither a number nor"),
    ({"policy": "MultiInputPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
     r"unknown MultiInputPolicy policy_kwargs key 'lstm_hidden_size'.*net_arch"),
    ({"policy": "MultiInputPolicy", "policy_kwargs": "dict(net_arch=[64])"}, "policy_kwargs must be a mapping"),
    ({"policy": "MultiInputPolicy", "policy_kwargs": {"activation_fn": "Swish"}}, "'Swish' is not a known name"),
    ({"policy": "MultiInputPolicy", "env_kwargs": {"split": "test"}}, "env_kwargs 'split' is set by the trainer"),
    ({"policy": "MultiInputPolicy", "env_kwargs": {"autoreset_mode": "same_step"}},
     "env_kwargs 'autoreset_mode' is set by the trainer"),
    ({"policy": "MultiInputPolicy", "env_kwargs": {"colour": "red"}}, r"unknown env_kwargs key 'colour'.*observation"),
])
def test_bad_hyperparameters_name_the_key_the_file_and_the_valid_keys(tmp_path, block, message):
    path = _write(tmp_path, block)
    with pytest.raises(ValueError, match=message) as error:
        load_hyperparams("ppo", path=path)
    assert str(path) in str(error.value)


def test_bad_inputs(toolbox, tmp_path, capsys):
    known = "known algorithms: a2c, dqn, ppo, qrdqn, recurrent_ppo"
    with pytest.raises(ValueError, match=known):
        algorithm_class("sac")
    with pytest.raises(ValueError, match=known):
        train("sac", out=tmp_path, toolbox=toolbox)
    with pytest.raises(ValueError, match=r"ppo.yml has no block for environment 'CartPole-v1'; blocks: RLRestore-v0"):
        load_hyperparams("ppo", "CartPole-v1")
    with pytest.raises(FileNotFoundError, match="nope.yml does not exist"):
        load_hyperparams("ppo", path=tmp_path / "nope.yml")
    with pytest.raises(ValueError, match="unknown difficulty 'hard'"):
        train("ppo", out=tmp_path, toolbox=toolbox, eval_difficulty="hard")
    with pytest.raises(ValueError, match="with overrides: unknown DQN hyperparameter key 'n_epochs'"):
        train("dqn", out=tmp_path, toolbox=toolbox, overrides={"n_epochs": 3})
    with pytest.raises(ValueError, match="RLRestoreSevere-v0 has difficulty 'severe'; env_kwargs asks for 'mild'"):
        make_env("RLRestoreSevere-v0", env_kwargs={"difficulty": "mild"}, toolbox=toolbox)
    validate_hyperparams("qrdqn", {"policy": "CnnPolicy", "policy_kwargs": {"n_quantiles": 5}}, "here")
    with pytest.raises(FileNotFoundError, match="is not an SB3 run"):
        load_policy(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written by the failed runs
    with pytest.raises(SystemExit):
        sb3.main(["--algo", "sac"])
    with pytest.raises(SystemExit):
        sb3.main(["--algo", "ppo", "--env", "Nope-v0"])
    assert "no block for environment 'Nope-v0'" in capsys.readouterr().err


def _same_actions(first, second, toolbox, steps=3):
    vec = RLRestoreVectorEnv(8, split="test", toolbox=toolbox, observation=first.observation_mode)
    obs, _ = vec.reset(seed=0)
    for _ in range(steps):
        actions = first(vec, obs)
        np.testing.assert_array_equal(second(vec, obs), actions)
        obs, *_ = vec.step(actions)


@pytest.mark.parametrize("run", ["sb3-ppo/seed0", "sb3-dqn/seed1"])
def test_the_committed_models_load_as_sb3_loaded_them(toolbox, run):
    folder = MODELS / run
    algo = yaml.safe_load((folder / "config.yml").read_text())["algo"]
    # SB3's own loader, as load_policy used it (it unpickles the model's spaces: these files are ours).
    inference = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0,
                 "exploration_schedule": lambda _: 0.0}
    trusted = SB3Policy(algorithm_class(algo).load(folder / "model.zip", device="cpu", custom_objects=inference))
    policy = load_policy(folder)
    assert type(policy.model) is type(trusted.model) and policy.observation_mode == trusted.observation_mode
    assert policy.model.observation_space == trusted.model.observation_space
    assert policy.model.action_space == trusted.model.action_space
    expected = trusted.model.policy.state_dict()
    for name, weights in policy.model.policy.state_dict().items():
        assert torch.equal(weights, expected[name]), name
    _same_actions(trusted, policy, toolbox)


class _WritesMarker:
    """Unpickled, it creates the file ``marker`` (what a crafted model file could do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_loading_a_model_runs_no_code_from_its_file(toolbox, tmp_path):
    original = MODELS / "sb3-dqn" / "seed0"
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(original, run)
    with zipfile.ZipFile(original / "model.zip") as source, zipfile.ZipFile(run / "model.zip", "w") as crafted:
        for member in source.namelist():
            data = source.read(member)
            if member == "data":  # every pickled entry (spaces, policy class, schedules, ...) would write the marker
                entries = json.loads(data)
                payload = base64.b64encode(pickle.dumps(_WritesMarker(marker))).decode()
                pickled = [key for key, value in entries.items() if isinstance(value, dict) and ":serialized:" in value]
                assert {"observation_space", "action_space", "policy_class"} <= set(pickled)
                for key in pickled:
                    entries[key] = {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": payload}
                data = json.dumps(entries).encode()
            crafted.writestr(member, data)
    policy = load_policy(run)
    assert not marker.exists()
    _same_actions(load_policy(original), policy, toolbox, steps=1)


def test_a_damaged_model_or_config_is_an_error_naming_it(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(MODELS / "sb3-ppo" / "seed0", run)
    config = yaml.safe_load((run / "config.yml").read_text())
    (run / "config.yml").write_text(yaml.safe_dump({**config, "hyperparams": {**config["hyperparams"],
                                                                             "policy_kwargs": {"net_arch": [64]}}}))
    with pytest.raises(ValueError, match=r"weights of .*model.zip do not fit the model .*config.yml describes"):
        load_policy(run)
    (run / "config.yml").write_text(yaml.safe_dump({**config, "algo": "sac"}))
    with pytest.raises(ValueError, match=r"config.yml does not describe an SB3 model .*unknown algorithm 'sac'"):
        load_policy(run)
    shutil.copy(MODELS / "sb3-ppo" / "seed0" / "config.yml", run / "config.yml")
    data = (run / "model.zip").read_bytes()
    (run / "model.zip").write_bytes(data[:100_000] + bytes(b ^ 0xFF for b in data[100_000:100_100]) + data[100_100:])
    with pytest.raises(ValueError, match=r"model.zip is damaged: archive member .* fails its CRC check"):
        load_policy(run)
    (run / "model.zip").write_bytes(data[:100_000])
    with pytest.raises(ValueError, match=r"model.zip is not a readable SB3 model \(BadZipFile"):
        load_policy(run)
