"""Stable-Baselines3 agents on RL-Restore: DQN, QR-DQN, PPO, A2C and RecurrentPPO with zoo-style hyperparameters.

``python -m agents.sb3 --algo {dqn,qrdqn,ppo,a2c,recurrent_ppo} [--env RLRestore-v0] [--seed 0] [--timesteps N]
[--device cpu|cuda] [--out runs/sb3/ALGO-ENV-SEED] [--toolbox PATH] [--hyperparams FILE] [--eval-difficulty D]``

Hyperparameters follow the RL Baselines3 Zoo layout: ``agents/hyperparams/ALGO.yml`` holds one block per
environment id with the zoo keys ``n_envs``, ``n_timesteps``, ``policy``, ``policy_kwargs`` (a mapping; class
names such as ``activation_fn: ReLU`` or ``features_extractor_class: NatureCNN`` resolve from the fixed
:data:`restore_gym.sb3_policy.POLICY_CLASSES`, nothing is evaluated), ``env_kwargs`` (keyword arguments of the
environment: ``observation``, ``difficulty``, ...) and the algorithm's constructor arguments. ``learning_rate``
/ ``clip_range`` / ``clip_range_vf`` may be ``lin_<value>``: linear decay from the value to 0, as in the zoo.
``joint`` (a mapping of :class:`restore_gym.joint.JointConfig`'s fields: ``every``, ``batch_size``, ``lr``,
``updates``, ``capacity``, ``seed``) trains the tools jointly with the agent (the paper's Algorithm 1) and saves
them as ``toolbox.pt`` in the run folder. Any other key is an error naming the file.

Training runs on the batched vector environment through :class:`restore_gym.sb3.RLRestoreSB3VecEnv` (wrapped
in ``VecMonitor``). A run folder holds ``config.yml`` (the resolved hyperparameters and run arguments),
``progress.csv`` (SB3's training log), ``tensorboard/`` (the same log as SB3 writes it for TensorBoard, its
``tensorboard_log``, and ``eval/test_psnr_gain``: :mod:`restore_gym.summaries`), ``model.zip`` (written
atomically) and ``eval.json``: the greedy policy once on every patch of a frozen test set, the report of
:func:`restore_gym.evaluation.evaluate` with a ``training`` record (algorithm, environment, seed, timesteps,
seconds).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecMonitor

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import NamedPolicy
from restore_gym.degrade import DIFFICULTIES, check_difficulty
from restore_gym.deprecation import moved_module
from restore_gym.evaluation import evaluate, format_summary
from restore_gym.joint import JointConfig, JointTrainer
from restore_gym.records import write_atomic, write_json_atomic, write_text_atomic
from restore_gym.sb3 import RLRestoreSB3VecEnv
from restore_gym.sb3_joint import JointTrainingCallback
from restore_gym.sb3_policy import (
    ALGORITHMS,
    CONFIG_FILE,
    MODEL_FILE,
    SCHEDULE_KEYS,
    ZOO_KEYS,
    SB3Policy,
    algorithm_class,
    resolve_policy_kwargs,
)
from restore_gym.summaries import TENSORBOARD_DIR, Scalars, tensorboard_available
from restore_gym.toolbox import Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
DEFAULT_ENV_ID = "RLRestore-v0"
EVAL_FILE = "eval.json"
JOINT_TOOLBOX_FILE = "toolbox.pt"

# Constructor arguments the trainer sets itself (or that YAML cannot express).
TRAINER_KEYS: tuple[str, ...] = (
    "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model",
    "replay_buffer_class", "rollout_buffer_class",
)
# Environment arguments fixed by the trainer: training uses the train split, evaluation the test split, and the
# SB3 adapter resets finished sub-environments itself.
TRAINER_ENV_KEYS: tuple[str, ...] = ("num_envs", "split", "toolbox", "device", "render_mode", "autoreset_mode")


# Names that moved into the library resolve there, with a DeprecationWarning.
__getattr__ = moved_module(__name__, "restore_gym.sb3_policy")

# ---- Hyperparameters ------------------------------------------------------------------------------------


def default_hyperparams_file(algo: str) -> Path:
    """``agents/hyperparams/ALGO.yml``."""
    algorithm_class(algo)
    return HYPERPARAMS_DIR / f"{algo}.yml"


def _parameters(function: Any, skip: tuple[str, ...]) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name not in ("self", *skip)]


def _check_keys(given: Mapping, valid: list[str], what: str, where: str) -> None:
    for key in given:
        if key not in valid:
            raise ValueError(f"{where}: unknown {what} key {key!r}; valid keys: {', '.join(sorted(valid))}")


def _schedule(key: str, value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    kind, _, number = value.partition("_")
    try:
        if kind == "lin":
            return LinearSchedule(float(number), 0.0, 1.0)
    except ValueError:
        pass
    raise ValueError(f"{where}: {key} {value!r} is neither a number nor 'lin_<number>'")


def validate_hyperparams(algo: str, hyperparams: Mapping[str, Any], where: str) -> None:
    """Check one block: zoo keys and ``algo``'s constructor arguments only, a policy ``algo`` knows,
    ``policy_kwargs`` keys that its policy class takes, ``env_kwargs`` keys that the environment takes.
    Raises ValueError naming ``where``, the key and the valid keys."""
    cls = algorithm_class(algo)
    for key in hyperparams:
        if key in TRAINER_KEYS:
            raise ValueError(f"{where}: {key!r} is set by the trainer, not by the hyperparameters")
    _check_keys(hyperparams, [*ZOO_KEYS, *_parameters(cls.__init__, ("policy", *TRAINER_KEYS))],
                f"{cls.__name__} hyperparameter", where)
    if "policy" not in hyperparams:
        raise ValueError(f"{where}: no policy; choose one of {', '.join(cls.policy_aliases)}")
    policy = hyperparams["policy"]
    if policy not in cls.policy_aliases:
        raise ValueError(f"{where}: policy {policy!r} is not a {cls.__name__} policy; "
                         f"choose one of {', '.join(cls.policy_aliases)}")
    for key in ("n_envs", "n_timesteps"):
        value = hyperparams.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
    for key in SCHEDULE_KEYS:
        if key in hyperparams:
            _schedule(key, hyperparams[key], where)
    for key in ("policy_kwargs", "env_kwargs"):
        if not isinstance(hyperparams.get(key, {}), Mapping):
            raise ValueError(f"{where}: {key} must be a mapping, got {hyperparams[key]!r}")
    policy_kwargs = hyperparams.get("policy_kwargs", {})
    policy_parameters = _parameters(cls.policy_aliases[policy].__init__,
                                    ("observation_space", "action_space", "lr_schedule"))
    _check_keys(policy_kwargs, policy_parameters, f"{policy} policy_kwargs", where)
    resolve_policy_kwargs(policy_kwargs, where)
    env_kwargs = hyperparams.get("env_kwargs", {})
    for key in env_kwargs:
        if key in TRAINER_ENV_KEYS:
            raise ValueError(f"{where}: env_kwargs {key!r} is set by the trainer")
    _check_keys(env_kwargs, _parameters(RLRestoreVectorEnv.__init__, TRAINER_ENV_KEYS), "env_kwargs", where)
    if "joint" in hyperparams:
        JointConfig.from_mapping(hyperparams["joint"], where)


def load_hyperparams(
    algo: str,
    env_id: str = DEFAULT_ENV_ID,
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The block of ``env_id`` in ``path`` (default :func:`default_hyperparams_file`), its top-level keys
    replaced by ``overrides``, validated by :func:`validate_hyperparams`. The result is a fresh plain dict."""
    path = Path(path) if path is not None else default_hyperparams_file(algo)
    algorithm_class(algo)
    if not path.is_file():
        raise FileNotFoundError(f"hyperparameter file {path} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of environment ids to hyperparameter blocks")
    if env_id not in data:
        raise ValueError(f"{path} has no block for environment {env_id!r}; blocks: {', '.join(map(str, data))}")
    if not isinstance(data[env_id], dict):
        raise ValueError(f"{path}: the block of {env_id!r} must be a mapping, got {data[env_id]!r}")
    hyperparams = copy.deepcopy({**data[env_id], **(overrides or {})})
    validate_hyperparams(algo, hyperparams, f"{path} [{env_id}]" + (" with overrides" if overrides else ""))
    return hyperparams


def model_kwargs(hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keyword arguments of a validated block (zoo keys dropped, names and schedules resolved)."""
    kwargs = {key: value for key, value in hyperparams.items() if key not in ZOO_KEYS}
    for key in SCHEDULE_KEYS:
        if key in kwargs:
            kwargs[key] = _schedule(key, kwargs[key], "hyperparameters")
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = resolve_policy_kwargs(kwargs["policy_kwargs"])
    return kwargs


# ---- Environments and policies --------------------------------------------------------------------------


def make_env(
    env_id: str = DEFAULT_ENV_ID,
    n_envs: int = 1,
    env_kwargs: Mapping[str, Any] | None = None,
    toolbox: Toolbox | None = None,
    device: str | torch.device = "cpu",
) -> RLRestoreSB3VecEnv:
    """``gym.make_vec(env_id)`` (the batched train-split environment) as an SB3 VecEnv. A ``difficulty`` in
    ``env_kwargs`` must agree with a fixed-difficulty id such as ``RLRestoreSevere-v0``."""
    kwargs = dict(env_kwargs or {})
    fixed = gym.spec(env_id).kwargs.get("difficulty")
    if fixed is not None and kwargs.get("difficulty", fixed) != fixed:
        raise ValueError(f"{env_id} has difficulty {fixed!r}; env_kwargs asks for {kwargs['difficulty']!r}")
    vec = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", toolbox=toolbox,
                       device=device, **kwargs)
    return RLRestoreSB3VecEnv.from_vector_env(vec)


# ---- Training -------------------------------------------------------------------------------------------


def default_out_dir(algo: str, env_id: str = DEFAULT_ENV_ID, seed: int = 0) -> Path:
    """``runs/sb3/ALGO-ENV-SEED``."""
    return Path("runs") / "sb3" / f"{algo}-{env_id}-{seed}"


def training_logger(out: Path, verbose: int = 0) -> Logger:
    """SB3's logger of a run: ``progress.csv`` in ``out``, TensorBoard events in ``out/tensorboard`` (as SB3's
    ``tensorboard_log`` writes them; left out when tensorboard is not installed) and, when ``verbose``, stdout."""
    formats = [make_output_format("csv", str(out))]
    if verbose:
        formats.append(make_output_format("stdout", str(out)))
    if tensorboard_available():
        formats.append(make_output_format("tensorboard", str(out / TENSORBOARD_DIR)))
    return Logger(str(out), formats)


def save_model_atomic(model: BaseAlgorithm, path: str | os.PathLike, optimizer_state: bool = True) -> None:
    """``model.save`` to ``path`` atomically (see :func:`restore_gym.records.write_atomic`). Without
    ``optimizer_state`` the model's optimizer is first emptied of its running statistics (Adam's moments, two
    thirds of a PPO file): the file still loads, evaluates and trains on, but not exactly as the run would have."""
    if not optimizer_state:
        model.policy.optimizer.state.clear()
    write_atomic(path, model.save)


def train(
    algo: str,
    env_id: str = DEFAULT_ENV_ID,
    seed: int = 0,
    timesteps: int | None = None,
    *,
    out: str | os.PathLike | None = None,
    hyperparams: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    toolbox: Toolbox | str | os.PathLike | None = None,
    device: str = "cpu",
    eval_difficulty: str | None = None,
    verbose: int = 0,
    optimizer_state: bool = True,
) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """Train ``algo`` on ``env_id`` with the hyperparameters of ``hyperparams`` (default
    ``agents/hyperparams/ALGO.yml``; top-level keys replaced by ``overrides``; ``timesteps`` replaces
    ``n_timesteps``), then evaluate it greedily on the test set of ``eval_difficulty`` (default: the
    environment's difficulty).

    ``toolbox`` is a Toolbox, a toolbox file or None (the shipped one). Writes ``config.yml``,
    ``progress.csv``, ``tensorboard/`` (:func:`training_logger`; the test gain at the end), ``model.zip``
    (without the optimizer's statistics unless ``optimizer_state``; see :func:`save_model_atomic`) and
    ``eval.json`` to ``out`` (default :func:`default_out_dir`). With a
    ``joint`` block the tools train in place along with the agent (a given Toolbox is changed; files never
    are), are saved as ``toolbox.pt`` and are the ones evaluated.
    Returns the model and the evaluation record written to ``eval.json``.
    """
    if eval_difficulty is not None:
        check_difficulty(eval_difficulty)
    hyperparams_file = Path(hyperparams) if hyperparams is not None else default_hyperparams_file(algo)
    if timesteps is not None:
        overrides = {**(overrides or {}), "n_timesteps": timesteps}
    block = load_hyperparams(algo, env_id, hyperparams_file, overrides)
    if "n_timesteps" not in block:
        raise ValueError(f"{hyperparams_file} [{env_id}] has no n_timesteps; give timesteps")
    out = Path(out) if out is not None else default_out_dir(algo, env_id, seed)
    tools = Toolbox.resolve(toolbox, device)
    env = make_env(env_id, int(block.get("n_envs", 1)), block.get("env_kwargs"), tools, device)
    config = {"algo": algo, "env_id": env_id, "seed": seed, "device": str(device),
              "toolbox": None if toolbox is None or isinstance(toolbox, Toolbox) else str(toolbox),
              "toolbox_info": {"version": tools.version, "metadata": dict(tools.metadata)},
              "hyperparams_file": str(hyperparams_file), "hyperparams": block}
    write_text_atomic(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    model = algorithm_class(algo)(block["policy"], VecMonitor(env), seed=seed, device=device, verbose=verbose,
                                  **model_kwargs(block))
    model.set_logger(training_logger(out, verbose))
    joint = (JointTrainer(tools, JointConfig.from_mapping({"seed": seed, **block["joint"]}))
             if "joint" in block else None)
    start = time.perf_counter()
    model.learn(total_timesteps=int(block["n_timesteps"]), callback=JointTrainingCallback(joint) if joint else None)
    train_seconds = time.perf_counter() - start
    save_model_atomic(model, out / MODEL_FILE, optimizer_state)
    if joint:
        tools.save(out / JOINT_TOOLBOX_FILE)

    difficulty = eval_difficulty or env.vector_env.difficulty
    record = evaluate(NamedPolicy(f"sb3-{algo}", SB3Policy(model)), difficulty, tools, device=device)
    record["training"] = {"algo": algo, "env_id": env_id, "seed": seed, "timesteps": int(model.num_timesteps),
                          "train_seconds": train_seconds}
    write_json_atomic(out / EVAL_FILE, record)
    with Scalars(out / TENSORBOARD_DIR) as scalars:
        scalars.add(model.num_timesteps, {"eval/test_psnr_gain": record["metrics"]["psnr_gain"]})
    return model, record


# ---- Command line ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.sb3", description="Train a Stable-Baselines3 agent on "
                                     "RL-Restore with zoo-style hyperparameters, then evaluate it on a test set.")
    parser.add_argument("--algo", required=True, choices=list(ALGORITHMS))
    parser.add_argument("--env", default=DEFAULT_ENV_ID, help="environment id (a block of the hyperparameter file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, help="total environment steps (default: n_timesteps of the file)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (model and environment)")
    parser.add_argument("--out", help="run folder (default: runs/sb3/ALGO-ENV-SEED)")
    parser.add_argument("--toolbox", help="toolbox .pt file (default: the shipped pretrained toolbox)")
    parser.add_argument("--hyperparams", help="hyperparameter YAML file (default: agents/hyperparams/ALGO.yml)")
    parser.add_argument("--eval-difficulty", choices=DIFFICULTIES, help="test set (default: the env's difficulty)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = None if args.timesteps is None else {"n_timesteps": args.timesteps}
    try:
        load_hyperparams(args.algo, args.env, args.hyperparams, overrides)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    retain_freed_memory()
    _, record = train(args.algo, args.env, args.seed, args.timesteps, out=args.out, hyperparams=args.hyperparams,
                      toolbox=args.toolbox, device=args.device, eval_difficulty=args.eval_difficulty, verbose=1)
    print(format_summary(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
