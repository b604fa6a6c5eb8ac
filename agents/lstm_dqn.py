"""DQN training of the RL-Restore agent (Yu et al., CVPR 2018), as its authors trained it.

    python -m agents.lstm_dqn train --preset cpu --difficulty moderate --out runs/agent
    python -m restore_gym evaluate --agent lstm-dqn --checkpoint runs/agent/agent.pt --difficulty moderate

The network, its policy and its files are :mod:`restore_gym.lstm_dqn`; this script holds the training:
hyperparameters (:class:`Config`, presets), the replay of whole episodes, the loss, the loop and its CLI.

Steps are agent steps: transitions, summed over the sub-environments. The vector environment's autoreset
steps (the step after an episode ends, whose action is ignored) are not agent steps and are never stored.

Exact resume: at every checkpoint step the episodes in flight are dropped and every sub-environment is
reset from seeds derived from (seed, step), in a fresh run exactly as in a resumed one. The environment's
state (its per-row generators included) is then a function of (seed, step), and the checkpoint holds
everything else: networks, optimiser, replay contents and position, counters and the generators. Resumes
are bitwise exact on the CPU; on CUDA, cuDNN's non-deterministic kernels may make them differ in the last bits.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import validation_set
from restore_gym.data import to_nchw
from restore_gym.degrade import DIFFICULTIES, PATCH_SIZE, check_difficulty
from restore_gym.deprecation import moved_module
from restore_gym.devices import resolve_device
from restore_gym.engine import MAX_TOOLS
from restore_gym.joint import JointConfig, JointTrainer
from restore_gym.lstm_dqn import (
    LSTMDQNPolicy,
    QNetwork,
    agent_payload,
    greedy_chain,
    previous_tool_onehot,
    read_agent_file,
    toolbox_info,
)
from restore_gym.metrics import psnr_batch
from restore_gym.records import write_json_atomic
from restore_gym.resumable import TrainingLog, check_checkpoint, check_config, restore_rngs, rng_states, start_run
from restore_gym.summaries import TENSORBOARD_DIR, Scalars
from restore_gym.tf_checkpoint import CheckpointError
from restore_gym.toolbox import Toolbox, atomic_torch_save
from restore_gym.vector_env import RLRestoreVectorEnv

CHECKPOINT_FILE = "checkpoint.pt"
AGENT_FILE = "agent.pt"
LOG_FILE = "log.csv"
CONFIG_FILE = "config.json"
JOINT_TOOLBOX_FILE = "toolbox.pt"  # the jointly trained tools, written at the end when joint_every > 0
CHECKPOINT_KEYS = frozenset({"config", "toolbox", "global_step", "target_network", "optimizer", "replay", "episodes",
                             "recent", "losses", "rngs"})
LOG_COLUMNS = ("step", "episodes", "mean_return", "mean_psnr_gain", "mean_length", "loss", "epsilon", "lr",
               "steps_per_s")
# TensorBoard's tags of the log's columns from mean_return on (CleanRL's names where it has them).
LOG_TAGS = ("charts/episodic_return", "charts/episodic_gain", "charts/episodic_length", "losses/td_loss",
            "charts/epsilon", "charts/learning_rate", "charts/SPS")
RECENT_EPISODES = 100  # the log's means are over this many latest episodes
REPLAY_DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class Config:
    """Every hyperparameter of a run. Defaults are the authors' released values (the ``paper`` preset)."""

    seed: int = 0
    difficulty: str = "moderate"  # the paper trains on moderate only
    source: str = "builtin"  # training images: "builtin", "corpus" (the tools' corpus) or a folder of photos
    num_envs: int = 32  # collection is batched; the ratio of updates to agent steps is the authors'
    total_timesteps: int = 2_000_000
    buffer_size: int = 500_000  # steps; whole episodes leave first in, first out
    # float16 halves the replay (500k steps: 11.9 GB instead of 23.8 GB); its rounding (at most 2^-11
    # relative, an eighth of an 8-bit level at 1.0) is far below what the Q-network resolves.
    replay_dtype: str = "float16"
    learning_starts: int = 5_000
    train_frequency: int = 4  # one gradient step every this many agent steps
    batch_size: int = 32  # episodes per gradient step
    target_network_frequency: int = 10_000
    gamma: float = 0.99
    learning_rate: float = 1e-4
    lr_decay: float = 0.5  # the learning rate is multiplied by this every lr_decay_steps ...
    lr_decay_steps: int = 1_000_000
    lr_min: float = 2.5e-5  # ... down to this floor
    start_e: float = 1.0
    end_e: float = 0.1
    exploration_steps: int = 1_000_000  # epsilon goes linearly from start_e to end_e over these steps
    checkpoint_frequency: int = 250_000  # a checkpoint holds the whole replay (11.9 GB in this preset)
    log_frequency: int = 10_000
    # The greedy agent on eval_patches fixed train-split patches (restore_gym.baselines.validation_set) every
    # eval_frequency steps and at the end, for TensorBoard's eval/psnr_gain (0 = never); it leaves the run unchanged.
    eval_frequency: int = 25_000
    eval_patches: int = 64
    # Joint training of the tools on the agent's chains (the paper's Algorithm 1, restore_gym.joint); 0 = off.
    joint_every: int = 0  # finished episodes between update rounds of the tools
    joint_batch_size: int = 64  # (input, chain, clean) triples per gradient step
    joint_lr: float = 1e-4
    joint_updates: int = 1  # gradient steps per round
    joint_capacity: int = 64  # triples buffered

    def __post_init__(self) -> None:
        check_difficulty(self.difficulty)
        if self.replay_dtype not in REPLAY_DTYPES:
            raise ValueError(f"replay_dtype must be one of {sorted(REPLAY_DTYPES)}, got {self.replay_dtype!r}")
        counts = ("num_envs", "total_timesteps", "buffer_size", "train_frequency", "batch_size",
                  "target_network_frequency", "lr_decay_steps", "exploration_steps", "checkpoint_frequency",
                  "log_frequency", "joint_batch_size", "joint_updates", "joint_capacity", "eval_patches")
        bad = [f"{name}={getattr(self, name)!r}" for name in counts if getattr(self, name) < 1]
        if self.eval_frequency < 0:
            bad.append(f"eval_frequency={self.eval_frequency} (0 for never)")
        if self.joint_every < 0 or not self.joint_lr > 0:
            bad.append(f"joint_every={self.joint_every}, joint_lr={self.joint_lr} (need joint_every >= 0, 0 for "
                       "off, and joint_lr > 0)")
        if self.buffer_size < MAX_TOOLS:
            bad.append(f"buffer_size={self.buffer_size} (an episode has up to {MAX_TOOLS} steps)")
        if not 0.0 <= self.end_e <= self.start_e <= 1.0:
            bad.append(f"start_e={self.start_e}, end_e={self.end_e} (need 0 <= end_e <= start_e <= 1)")
        if not 0.0 <= self.gamma <= 1.0:
            bad.append(f"gamma={self.gamma}")
        if bad:
            raise ValueError(f"invalid config: {', '.join(bad)}")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # About an hour on 2 CPU cores (the shipped agent: 70 minutes with one thread beside other jobs). Costs
    # measured on one core (CPU time, official tools): collecting 2.7 ms per agent step (one tool each), an
    # update 96 ms (32 episodes, ~80 states through the Q-network forward and backward plus the target).
    # 400k steps with an update every 8 (50k updates, half the authors' rate per step) are 10% of the
    # authors' 500k updates, so the learning rate is 2.5x theirs and halves once, at mid-run. Epsilon decays
    # over half the run and the replay holds a quarter of it, the authors' proportions; the target network
    # is refreshed every 250 updates, ample for episodes of at most 3 steps (bootstrapping 2 deep).
    "cpu": Config(
        num_envs=32,
        total_timesteps=400_000,
        buffer_size=100_000,  # 2.4 GB in float16, ~40k episodes
        learning_starts=2_000,
        train_frequency=8,
        target_network_frequency=2_000,
        learning_rate=2.5e-4,
        lr_decay_steps=200_000,
        exploration_steps=200_000,
        checkpoint_frequency=50_000,
        log_frequency=2_500,
    ),
    # Seconds, for tests: every mechanism (updates, target syncs, a learning-rate halving, a checkpoint) runs.
    "smoke": Config(
        num_envs=4,
        total_timesteps=64,
        buffer_size=200,
        learning_starts=16,
        train_frequency=8,
        batch_size=8,
        target_network_frequency=24,
        lr_decay_steps=40,
        exploration_steps=48,
        checkpoint_frequency=32,
        log_frequency=16,
        eval_frequency=32,
        eval_patches=4,
    ),
}


def preset(name: str, **overrides: Any) -> Config:
    """The preset ``name`` ("paper", "cpu" or "smoke") with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["field=value", ...]`` as Config overrides, each value converted to the field's type."""
    types = {name: type(value) for name, value in asdict(Config()).items()}
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in types:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        try:
            overrides[name] = types[name](text)
        except ValueError as error:
            raise ValueError(f"--set {pair!r}: {text!r} is not a valid {types[name].__name__}") from error
    return overrides


def joint_config(cfg: Config) -> JointConfig:
    """The joint-training options of ``cfg`` (used when ``cfg.joint_every`` > 0)."""
    return JointConfig(every=cfg.joint_every, batch_size=cfg.joint_batch_size, lr=cfg.joint_lr,
                       updates=cfg.joint_updates, capacity=cfg.joint_capacity, seed=cfg.seed)


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` at step 0, linearly to ``end`` at ``duration``, then ``end``."""
    return start + (end - start) * min(step / duration, 1.0)


def learning_rate(cfg: Config, step: int) -> float:
    """The authors' schedule: ``learning_rate * lr_decay ** (step // lr_decay_steps)``, never below ``lr_min``."""
    return max(cfg.learning_rate * cfg.lr_decay ** (step // cfg.lr_decay_steps), cfg.lr_min)


def crossings(before: int, after: int, every: int) -> int:
    """How many multiples of ``every`` lie in (before, after]."""
    return max(after // every - before // every, 0)


# Names that moved into the library resolve there, with a DeprecationWarning.
__getattr__ = moved_module(__name__, "restore_gym.lstm_dqn")


# ---- Replay of whole episodes ---------------------------------------------------------------------------


@dataclass
class EpisodeGroup:
    """``n`` sampled episodes of the same length ``L``: images n x L x 3 x 63 x 63 (float32), actions and
    rewards n x L; ``weight`` is n over the batch size (its share of the loss)."""

    images: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    weight: float


class EpisodeReplay:
    """First-in first-out replay of whole episodes (1 to 3 steps), its capacity counted in steps as the paper's.

    Steps live in flat arrays, each episode in consecutive slots: ``length[slot]`` is the episode's length at
    its first slot and 0 elsewhere. An episode that does not fit before the end starts over at slot 0 (the
    tail slots are dropped), and an episode whose first slot is overwritten is gone. Images are stored as
    ``dtype`` (float16 by default; see :class:`Config`); actions and rewards exactly.
    """

    def __init__(self, capacity: int, dtype: str = "float16") -> None:
        self.capacity = capacity
        self.images = np.zeros((capacity, 3, PATCH_SIZE, PATCH_SIZE), dtype=REPLAY_DTYPES[dtype])
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.length = np.zeros(capacity, dtype=np.int64)
        self.position = 0  # where the next episode goes
        self.used = 0  # slots ever written (a checkpoint saves images[:used])

    @property
    def num_episodes(self) -> int:
        return int(np.count_nonzero(self.length))

    @property
    def num_steps(self) -> int:
        return int(self.length.sum())

    def add(self, images: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Store one episode: its L states (L x 3 x 63 x 63, the images the actions were taken on), L actions
        and L rewards, in order."""
        size = len(actions)
        if not 1 <= size <= MAX_TOOLS or len(images) != size or len(rewards) != size:
            raise ValueError(f"an episode has 1 to {MAX_TOOLS} steps with one image, action and reward each; "
                             f"got {len(images)} images, {len(actions)} actions, {len(rewards)} rewards")
        if self.position + size > self.capacity:
            self.length[self.position :] = 0
            self.position = 0
        slots = slice(self.position, self.position + size)
        self.images[slots] = images
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.length[slots] = 0
        self.length[self.position] = size
        self.position += size
        self.used = max(self.used, self.position)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"
               ) -> list[EpisodeGroup]:
        """``batch_size`` episodes drawn uniformly with replacement, grouped by length (shortest first), on
        ``device``."""
        starts = np.flatnonzero(self.length)
        if starts.size == 0:
            raise RuntimeError("the replay holds no finished episode yet; raise learning_starts")
        picked = rng.choice(starts, size=batch_size)
        lengths = self.length[picked]
        groups = []
        for size in range(1, MAX_TOOLS + 1):
            chosen = picked[lengths == size]
            if chosen.size:
                slots = chosen[:, None] + np.arange(size)
                groups.append(EpisodeGroup(
                    images=torch.from_numpy(self.images[slots]).to(device, torch.float32),
                    actions=torch.from_numpy(self.actions[slots]).to(device),
                    rewards=torch.from_numpy(self.rewards[slots]).to(device),
                    weight=chosen.size / batch_size,
                ))
        return groups

    def state_dict(self) -> dict[str, Any]:
        return {
            "images": torch.from_numpy(self.images[: self.used]),
            "actions": torch.from_numpy(self.actions),
            "rewards": torch.from_numpy(self.rewards),
            "length": torch.from_numpy(self.length),
            "position": self.position,
            "used": self.used,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["length"].shape[0] != self.capacity or state["images"].dtype != torch.from_numpy(self.images).dtype:
            raise ValueError(f"the saved replay holds {state['length'].shape[0]} steps of {state['images'].dtype}, "
                             f"this one {self.capacity} of {self.images.dtype}")
        self.used = int(state["used"])
        self.position = int(state["position"])
        self.images[: self.used] = state["images"].numpy()
        self.actions[:] = state["actions"].numpy()
        self.rewards[:] = state["rewards"].numpy()
        self.length[:] = state["length"].numpy()


# ---- Loss ---------------------------------------------------------------------------------------------


def sequence_q_values(network: nn.Module, images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q-values (n x L x 13) along n episodes of L steps: the LSTM starts from zeros and is fed at step t
    the state s_t (``images[:, t]``) and the previous tool a_{t-1} (none at t = 0)."""
    previous = torch.cat([torch.full_like(actions[:, :1], -1), actions[:, :-1]], dim=1)
    state = None
    q_values = []
    for t in range(actions.shape[1]):
        q, state = network(images[:, t], previous_tool_onehot(previous[:, t]), state)
        q_values.append(q)
    return torch.stack(q_values, dim=1)


def td_targets(target_q: torch.Tensor, rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """y_t = r_t + gamma * max_a Q'(s_{t+1}, a) for t < L - 1 and y_{L-1} = r_{L-1}: every stored episode ends
    in a terminal state (stop, third tool or PSNR drop). ``target_q`` is n x L x 13, ``rewards`` n x L."""
    bootstrap = torch.zeros_like(rewards)
    bootstrap[:, :-1] = target_q[:, 1:].max(dim=2).values
    return rewards + gamma * bootstrap


def dqn_loss(network: nn.Module, target_network: nn.Module, groups: list[EpisodeGroup], gamma: float
             ) -> torch.Tensor:
    """Sum over length groups of ``weight`` x the group's mean Huber loss between Q(s_t, a_t) and y_t.

    Huber bounds each term's gradient in Q to [-1, 1] (rewards are PSNR gains of up to several dB), so the
    gradients are not clipped further, as in the authors' code.
    """
    losses = []
    for group in groups:
        with torch.no_grad():
            targets = td_targets(sequence_q_values(target_network, group.images, group.actions), group.rewards, gamma)
        q_values = sequence_q_values(network, group.images, group.actions)
        taken = q_values.gather(2, group.actions.unsqueeze(2)).squeeze(2)
        losses.append(group.weight * F.smooth_l1_loss(taken, targets))
    return torch.stack(losses).sum()


# ---- Acting -----------------------------------------------------------------------------------------



@dataclass(frozen=True)
class EpisodeStats:
    """A finished training episode: undiscounted return, final PSNR gain over the input (dB), tools + stop."""

    episode_return: float
    psnr_gain: float
    length: int


class EpisodeCollector:
    """Steps a vector environment with a policy and stores every finished episode in the replay.

    With NEXT_STEP autoreset, a row that terminated at one step is reset at the next, its action ignored:
    that step is neither stored nor counted. Episodes still running at :meth:`restart` are dropped.
    """

    def __init__(self, env: RLRestoreVectorEnv, policy: LSTMDQNPolicy, replay: EpisodeReplay) -> None:
        self.env = env
        self.policy = policy
        self.replay = replay
        self.obs: dict[str, np.ndarray] = {}
        self.resetting = np.zeros(env.num_envs, dtype=bool)
        self.running: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in range(env.num_envs)]

    def restart(self, seeds: list[int]) -> None:
        """Reset every sub-environment from its seed; episodes in flight are dropped."""
        self.obs, _ = self.env.reset(seed=seeds)
        self.resetting[:] = False
        for steps in self.running:
            steps.clear()

    def step(self) -> tuple[int, list[EpisodeStats]]:
        """One step of every sub-environment; returns the agent steps taken and the episodes that ended."""
        actions = np.asarray(self.policy(self.env, self.obs))
        obs, rewards, terminated, _, info = self.env.step(actions)
        acting = np.flatnonzero(~self.resetting)
        finished = []
        for row in acting.tolist():
            steps = self.running[row]
            steps.append((self.obs["image"][row], int(actions[row]), float(rewards[row])))
            if terminated[row]:
                images, taken, earned = zip(*steps)
                self.replay.add(np.stack(images), np.array(taken), np.array(earned, dtype=np.float32))
                gain = float(info["psnr"][row] - info["psnr_input"][row])
                finished.append(EpisodeStats(float(sum(earned)), gain, len(steps)))
                steps.clear()
        self.resetting = terminated.copy()
        self.obs = obs
        return acting.size, finished


def env_seeds(seed: int, step: int, num_envs: int) -> list[int]:
    """Seeds of the sub-environments for the restart at ``step`` (a function of (seed, step) only)."""
    return np.random.SeedSequence([seed, step]).generate_state(num_envs).tolist()


# ---- Checkpoints and log --------------------------------------------------------------------------------


def stored_config(payload: dict[str, Any]) -> dict[str, Any]:
    """The config of an agent file or checkpoint as a dict; fields added to Config since it was written take
    their defaults."""
    return {**asdict(Config()), **payload["config"]}


def _check_resumable(payload: dict[str, Any], cfg: Config, toolbox: Toolbox, path: Path) -> None:
    """ValueError unless ``payload`` is a checkpoint of ``cfg`` (``total_timesteps`` aside) and this toolbox."""
    check_checkpoint(payload, CHECKPOINT_KEYS, path, "an agent file cannot be resumed", CheckpointError)
    check_config(stored_config(payload), asdict(cfg), path, ("total_timesteps",))
    if payload.get("base_toolbox", payload["toolbox"]) != toolbox_info(toolbox):
        raise ValueError(f"cannot resume {path}: it was trained with toolbox {payload['toolbox']}, "
                         f"not {toolbox_info(toolbox)}")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _means(recent: deque[EpisodeStats]) -> tuple[float, float, float]:
    """Mean return, final PSNR gain and length of the recent episodes (the return telescopes to the gain)."""
    return (_mean([s.episode_return for s in recent]), _mean([s.psnr_gain for s in recent]),
            _mean([float(s.length) for s in recent]))


def _validation_tensors(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The degraded and clean patches (N x 3 x 63 x 63 on ``device``) of the run's evaluation."""
    patches = validation_set(cfg.difficulty, cfg.source, cfg.eval_patches)
    return to_nchw(patches.degraded).to(device), to_nchw(patches.clean).to(device)


def greedy_gain(network: QNetwork, toolbox: Toolbox, degraded: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR gain (dB) of the greedy agent on a batch, evaluated as the authors do (:func:`greedy_chain`)."""
    final = greedy_chain(network, toolbox, degraded)[1][-1]
    return float((psnr_batch(final, clean) - psnr_batch(degraded, clean)).mean())


# ---- Training loop --------------------------------------------------------------------------------------


def train(
    cfg: Config,
    out_dir: str | os.PathLike,
    toolbox: Toolbox,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    on_steps: Callable[[int], None] | None = None,
) -> QNetwork:
    """Train the agent with DQN on ``cfg.difficulty`` and return the Q-network; ``on_steps(n)`` (optional) is
    told of every ``n`` agent steps taken (a caller's progress bar).

    Writes to ``out_dir``, atomically: ``config.json``, ``checkpoint.pt`` every ``checkpoint_frequency`` steps
    and at the end, and at the end ``agent.pt`` (network, config, toolbox version and metadata); ``log.csv`` is
    a :class:`restore_gym.resumable.TrainingLog` (created atomically, rows appended with an fsync). TensorBoard
    events in ``tensorboard/`` (:mod:`restore_gym.summaries`) hold the log's rows (:data:`LOG_TAGS`) and
    ``eval/psnr_gain``, the greedy agent's gain on the validation patches every ``eval_frequency`` steps. A run starts
    by removing the temp files a killed run left in ``out_dir``. ``resume`` continues from ``checkpoint.pt``
    exactly as if never stopped (same config, ``total_timesteps`` aside, and same toolbox; the log is cut back to
    the checkpoint's step, damaged lines dropped with a warning); without it an existing checkpoint is an
    error, never overwritten. The checkpoint at the end also restarts the episodes in flight, so a run extended
    past ``total_timesteps`` matches a run trained in one go only if its old end was a multiple of
    ``checkpoint_frequency``. With ``joint_every`` > 0 the tools train in place along with the agent
    (:class:`restore_gym.joint.JointTrainer`): checkpoints hold the tools and the trainer, ``toolbox.pt`` the
    final tools, and a resume takes the original toolbox.
    """
    device = resolve_device(device)
    out_dir = Path(out_dir)
    checkpoint_path, log = start_run(out_dir, CHECKPOINT_FILE, resume), TrainingLog(out_dir / LOG_FILE, LOG_COLUMNS)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    q_network = QNetwork().to(device)
    target_network = QNetwork().to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=cfg.learning_rate)
    replay = EpisodeReplay(cfg.buffer_size, cfg.replay_dtype)
    env = RLRestoreVectorEnv(cfg.num_envs, cfg.difficulty, "train", cfg.source, toolbox, device, end_on_psnr_drop=True)
    policy = LSTMDQNPolicy(q_network, epsilon=cfg.start_e, rng=rng)
    collector = EpisodeCollector(env, policy, replay)
    base_toolbox = toolbox_info(toolbox)
    joint = JointTrainer(toolbox, joint_config(cfg)).attach(env) if cfg.joint_every else None
    global_step, episodes = 0, 0
    recent: deque[EpisodeStats] = deque(maxlen=RECENT_EPISODES)
    losses: list[float] = []

    if resume:
        payload = read_agent_file(checkpoint_path)
        _check_resumable(payload, cfg, toolbox, checkpoint_path)
        if joint:
            joint.load_state_dict(payload["joint"])
        q_network.load_state_dict(payload["q_network"])
        target_network.load_state_dict(payload["target_network"])
        optimizer.load_state_dict(payload["optimizer"])
        replay.load_state_dict(payload["replay"])
        global_step, episodes = payload["global_step"], payload["episodes"]
        recent.extend(EpisodeStats(*stats) for stats in payload["recent"])
        losses = list(payload["losses"])
        restore_rngs(payload["rngs"], rng)
        log.truncate(global_step)  # the rows written after the checkpoint are written again
    else:
        write_json_atomic(out_dir / CONFIG_FILE, asdict(cfg))
        log.create(replace=True)  # a fresh run's log never continues the rows of an earlier run
    collector.restart(env_seeds(cfg.seed, global_step, cfg.num_envs))

    bar = tqdm(total=cfg.total_timesteps, initial=global_step, unit="step", disable=not progress)
    last_log_time, last_log_step = time.perf_counter(), global_step
    with Scalars(out_dir / TENSORBOARD_DIR, purge_step=global_step + 1 if resume else None) as scalars:
        validation = _validation_tensors(cfg, device) if cfg.eval_frequency and scalars.active else None
        while global_step < cfg.total_timesteps:
            policy.epsilon = linear_schedule(cfg.start_e, cfg.end_e, cfg.exploration_steps, global_step)
            taken, finished = collector.step()
            before, global_step = global_step, global_step + taken
            episodes += len(finished)
            recent.extend(finished)
            bar.update(taken)
            if on_steps is not None:
                on_steps(taken)

            for _ in range(crossings(max(before, cfg.learning_starts), global_step, cfg.train_frequency)):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, global_step)
                loss = dqn_loss(q_network, target_network, replay.sample(cfg.batch_size, rng, device), cfg.gamma)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            if crossings(before, global_step, cfg.target_network_frequency):
                target_network.load_state_dict(q_network.state_dict())

            if crossings(before, global_step, cfg.log_frequency):
                now = time.perf_counter()
                speed = (global_step - last_log_step) / max(now - last_log_time, 1e-9)
                row = [global_step, episodes, *_means(recent), _mean(losses), policy.epsilon,
                       learning_rate(cfg, global_step), speed]
                log.append({column: f"{v:.6g}" if isinstance(v, float) else v for column, v in zip(LOG_COLUMNS, row)})
                scalars.add(global_step, dict(zip(LOG_TAGS, row[2:])))
                bar.set_postfix(gain=f"{row[3]:.2f}dB", eps=f"{policy.epsilon:.2f}", loss=f"{row[5]:.3g}")
                losses.clear()
                last_log_time, last_log_step = now, global_step

            if crossings(before, global_step, cfg.checkpoint_frequency) or global_step >= cfg.total_timesteps:
                collector.restart(env_seeds(cfg.seed, global_step, cfg.num_envs))
                checkpoint = agent_payload(q_network, asdict(cfg), toolbox, global_step)
                checkpoint.update(
                    target_network={k: v.detach().cpu() for k, v in target_network.state_dict().items()},
                    optimizer=optimizer.state_dict(),
                    replay=replay.state_dict(),
                    episodes=episodes,
                    recent=[astuple(s) for s in recent],
                    losses=list(losses),
                    rngs=rng_states(rng),
                )
                if joint:
                    checkpoint.update(base_toolbox=base_toolbox, joint=joint.state_dict())
                atomic_torch_save(checkpoint, checkpoint_path)
            if validation is not None and (crossings(before, global_step, cfg.eval_frequency)
                                           or global_step >= cfg.total_timesteps):
                scalars.add(global_step, {"eval/psnr_gain": greedy_gain(q_network, toolbox, *validation)})
    bar.close()
    atomic_torch_save(agent_payload(q_network, asdict(cfg), toolbox, global_step), out_dir / AGENT_FILE)
    if joint:
        toolbox.save(out_dir / JOINT_TOOLBOX_FILE)
    return q_network


# ---- Command line ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.lstm_dqn", description="Train the RL-Restore agent "
                                     "(recurrent DQN); evaluate it with `python -m restore_gym evaluate`.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("train")
    command.add_argument("--difficulty", default="moderate", choices=DIFFICULTIES)
    tools = command.add_mutually_exclusive_group()
    tools.add_argument("--toolbox", help="toolbox .pt file (default: the shipped pretrained toolbox)")
    tools.add_argument("--official-toolbox", help="folder of the authors' released tools (tool01..tool12)")
    command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    command.add_argument("--preset", default="cpu", choices=list(PRESETS))
    command.add_argument("--out", required=True, help="output folder (checkpoint, log, agent)")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--source", default="builtin", help="training images: builtin, corpus or a folder")
    command.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                         help="override one Config field of the preset (repeatable), e.g. total_timesteps=400000")
    command.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is far faster when "
                         "other jobs share the cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    retain_freed_memory()
    if args.official_toolbox:
        toolbox = Toolbox.from_official(args.official_toolbox).to(device)
    else:
        toolbox = Toolbox.resolve(args.toolbox, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(args.preset, difficulty=args.difficulty, seed=args.seed, source=args.source,
                 **parse_overrides(args.set))
    train(cfg, args.out, toolbox, device, resume=args.resume, progress=not args.no_progress)
    print(f"agent written to {Path(args.out) / AGENT_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
