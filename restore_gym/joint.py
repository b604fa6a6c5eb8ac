"""Joint training of the agent and the tools: the paper's Algorithm 1 as an environment hook.

With the agent fixed, the tools are trained on the toolchains the agent chose: each degraded input runs
through its chain with autograd, the MSE against the clean patch is taken at the chain's end, the gradient
flows back through every tool of the chain, each tool's gradient is averaged over its uses in the batch (its
summed gradient divided by how many times it was applied), and Adam (lr 1e-4 by default) updates the tools.
This lets the tools learn the "middle states" their own training never showed them (the paper reports
+0.25 dB). The authors released no code for it; this follows the paper's description.

:class:`JointTrainer` subscribes to the finished-episode reports of any number of environments sharing its
toolbox (``attach``), buffers (input, chain, clean) triples, and every ``every`` episodes runs an update
round of ``updates`` gradient steps on batches of ``batch_size`` buffered triples. The default
(``capacity == batch_size == every``, one step) is Algorithm 1 exactly: each step trains on the chains the
agent has just chosen with the current tools. Empty chains (an immediate stop) carry no loss and are not
buffered. Tool outputs are clamped to :data:`restore_gym.engine.STATE_RANGE` after every tool, as the
environment does (the clamp is essentially never active, so it costs no gradient); ``quantize`` is ignored.

The tools change in place, so every environment sharing the toolbox acts with the new tools from its next
step on. Nothing is left stale: the engine caches nothing computed by the tools across steps, and
:mod:`restore_gym.baselines` keys its oracle tables (on disk and in ``ExhaustiveOracle``) by
``Toolbox.fingerprint()``, a hash of the weights, so they invalidate themselves; the greedy oracle runs the
tools afresh at every step. Only choices made once from the tools (the chain of ``best-tool`` /
``best-chain``, picked when the policy is made) keep the old tools' answer. An environment built without a
toolbox shares the process-wide shipped one: attaching trains that object in place (its file is never
written). ``toolbox.version`` is
incremented after every update round and each :class:`~restore_gym.engine.EpisodeReport` records the
version that ran its chain. A round whose loss or gradients turn NaN/inf puts back the weights (and
optimiser state) from before the round and raises :class:`JointTrainingError`.

Usable from every agent: :class:`restore_gym.sb3_joint.JointTrainingCallback` for Stable-Baselines3 (``joint:`` in the
YAML files of ``agents/hyperparams``), ``joint_*`` fields of the LSTM-DQN training's ``Config``, and the paper's
protocol of
fine-tuning the tools after the agent is trained:

    python -m restore_gym.joint finetune --agent AGENT.pt [--toolbox TOOLBOX.pt] --out OUT.pt --episodes N

which writes a new, versioned toolbox file (never the shipped weights nor the input file) and evaluates the
agent with the tools before and after on the frozen test sets. Fine-tuning episodes do NOT end on a PSNR
drop: the chains are those the agent runs at test time, which are the chains the tools must serve.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import NamedPolicy
from restore_gym.degrade import DIFFICULTIES, check_difficulty
from restore_gym.devices import resolve_device
from restore_gym.engine import STATE_RANGE, EpisodeReport
from restore_gym.env import RLRestoreEnv
from restore_gym.evaluation import evaluate
from restore_gym.lstm_dqn import LSTMDQNPolicy, load_agent
from restore_gym.records import file_sha256
from restore_gym.toolbox import NUM_TOOLS, Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class JointTrainingError(RuntimeError):
    """Joint training stopped because a loss or gradient became NaN or infinite (the weights were restored)."""


@dataclass(frozen=True)
class JointConfig:
    """Options of :class:`JointTrainer`.

    every: finished episodes between update rounds (K). batch_size: triples per gradient step.
    lr: Adam's learning rate. updates: gradient steps per round. capacity: triples kept (the oldest leave
    first). seed: the generator drawing batches from the buffer.
    """

    every: int = 64
    batch_size: int = 64
    lr: float = 1e-4
    updates: int = 1
    capacity: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [f"{name}={getattr(self, name)!r}" for name in ("every", "batch_size", "updates", "capacity")
               if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int)
               or getattr(self, name) < 1]
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            bad.append(f"lr={self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            bad.append(f"seed={self.seed!r}")
        if bad:
            raise ValueError(f"invalid joint-training config: {', '.join(bad)} (counts must be positive integers, "
                             "lr a positive number)")

    @classmethod
    def from_mapping(cls, data: Any, where: str = "joint") -> JointConfig:
        """A config from a mapping of its field names (e.g. a YAML ``joint:`` block); ValueError naming
        ``where`` on a non-mapping, an unknown key or a bad value."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: joint must be a mapping of {', '.join(f.name for f in fields(cls))}, "
                             f"got {data!r}")
        valid = [f.name for f in fields(cls)]
        for key in data:
            if key not in valid:
                raise ValueError(f"{where}: unknown joint key {key!r}; valid keys: {', '.join(valid)}")
        try:
            return cls(**data)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error


def run_chains(toolbox: Toolbox, degraded: torch.Tensor, chains: Sequence[Sequence[int]]) -> torch.Tensor:
    """Each image of ``degraded`` (N x 3 x H x W) run through its chain with autograd, clamped to the
    environment's state range after every tool; an empty chain returns its input.

    Runs each tool once per depth on every image whose chain uses it there: the same result as running
    each group of equal chains through its chain, in fewer calls.
    """
    images = degraded
    for depth in range(max((len(chain) for chain in chains), default=0)):
        at_depth = [(row, chain[depth]) for row, chain in enumerate(chains) if len(chain) > depth]
        for tool in sorted({tool for _, tool in at_depth}):
            rows = torch.tensor([row for row, used in at_depth if used == tool], device=degraded.device)
            out = toolbox.tools[tool](images.index_select(0, rows)).clamp(*STATE_RANGE)
            images = images.index_copy(0, rows, out)
    return images


def _check_chains(chains: Sequence[Sequence[int]], batch: int) -> None:
    if len(chains) != batch:
        raise ValueError(f"got {len(chains)} chains for {batch} images; give one chain per image")
    for chain in chains:
        if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < NUM_TOOLS for t in chain):
            raise ValueError(f"chains hold tool ids 0..{NUM_TOOLS - 1}, got {list(chain)!r}")


def chain_gradients(
    toolbox: Toolbox, degraded: torch.Tensor, clean: torch.Tensor, chains: Sequence[Sequence[int]]
) -> tuple[float, np.ndarray]:
    """Set every tool's ``.grad`` for one step of joint training and return (mean loss, use counts).

    The loss of a chain is the MSE between its output (:func:`run_chains`) and ``clean``; the summed loss
    of the batch is back-propagated through every tool of every chain, and each tool's gradient is divided
    by its use count (applications in the batch, a tool used twice in one chain counting twice). Empty
    chains carry no loss. Tools unused in the batch get no gradient (``None``). Works under inference
    mode too (it switches autograd on itself). The loss may be NaN or inf: the caller checks it.
    """
    _check_chains(chains, degraded.shape[0])
    counts = np.bincount([int(t) for chain in chains for t in chain], minlength=NUM_TOOLS)
    toolbox.zero_grad(set_to_none=True)
    used = [row for row, chain in enumerate(chains) if chain]
    if not used:
        return 0.0, counts
    with torch.inference_mode(False), torch.enable_grad():
        rows = torch.tensor(used, device=degraded.device)
        # Reports are made under inference mode; tensors made here, outside it, are ones autograd may save.
        inputs, targets = degraded.index_select(0, rows), clean.index_select(0, rows)
        outputs = run_chains(toolbox, inputs, [chains[row] for row in used])
        per_chain = (outputs - targets).square().mean(dim=(1, 2, 3))
        per_chain.sum().backward()
    with torch.no_grad():
        for tool, count in enumerate(counts.tolist()):
            if count:
                for parameter in toolbox.tools[tool].parameters():
                    if parameter.grad is not None:
                        parameter.grad.div_(count)
    return float(per_chain.detach().mean()), counts


def _grads_finite(toolbox: Toolbox) -> bool:
    grads = [p.grad for p in toolbox.parameters() if p.grad is not None]
    return all(bool(torch.isfinite(g).all()) for g in grads)


def _unwrap(env: Any) -> RLRestoreEnv | RLRestoreVectorEnv:
    """The RL-Restore environment behind Gymnasium wrappers, SB3 wrappers and the SB3 adapter."""
    inner = env
    while not isinstance(inner, (RLRestoreEnv, RLRestoreVectorEnv)):
        nested = next((getattr(inner, name) for name in ("vector_env", "venv", "env") if hasattr(inner, name)), None)
        if nested is None:
            raise TypeError(f"{type(env).__name__} is not an RL-Restore environment (RLRestoreEnv, "
                            "RLRestoreVectorEnv, or one of them wrapped)")
        inner = nested
    return inner


class JointTrainer:
    """Trains ``toolbox`` in place on the chains of the episodes that environments report (module docstring).

    ``attach(env)`` subscribes it to an environment that uses this very toolbox. Every ``config.every``
    reported episodes, :meth:`update_round` runs; a round that meets a NaN/inf loss or gradient restores the
    weights and optimiser state of before the round and raises :class:`JointTrainingError` (out of the
    environment's ``step``). ``state_dict`` / ``load_state_dict`` cover the tools, their version, the
    optimiser, the buffer and the counters, for exact resumes.
    """

    def __init__(self, toolbox: Toolbox, config: JointConfig | None = None) -> None:
        if not isinstance(toolbox, Toolbox):
            raise TypeError(f"JointTrainer trains a Toolbox, got {type(toolbox).__name__}")
        self.toolbox = toolbox
        self.config = config if config is not None else JointConfig()
        self.optimizer = torch.optim.Adam(toolbox.parameters(), lr=self.config.lr)
        self.rng = np.random.default_rng(self.config.seed)
        self.buffer: deque[tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]] = deque(maxlen=self.config.capacity)
        self.episodes = 0  # reported episodes, all of them
        self.pending = 0  # reported episodes since the last round
        self.rounds = 0
        self.losses: list[float] = []  # mean loss of every round
        self._attached: list[Any] = []

    def attach(self, env: Any) -> JointTrainer:
        """Subscribe to ``env``'s finished episodes (once per environment); returns self. ValueError if the
        environment runs another toolbox than this trainer's."""
        inner = _unwrap(env)
        if inner.batch.toolbox is not self.toolbox:
            raise ValueError("the environment runs another toolbox than the trainer's; build it with "
                             "toolbox=trainer.toolbox so that both share the same tools")
        if not any(inner is seen for seen in self._attached):
            inner.add_episode_listener(self)
            self._attached.append(inner)
        return self

    def __call__(self, reports: list[EpisodeReport]) -> None:
        """Buffer the reports' non-empty chains; run a round after every ``config.every`` episodes."""
        for report in reports:
            self.episodes += 1
            self.pending += 1
            if report.chain:
                self.buffer.append((report.degraded, report.clean, tuple(report.chain)))
            if self.pending >= self.config.every:
                self.pending = 0
                self.update_round()

    def update_round(self) -> float | None:
        """``config.updates`` gradient steps on batches drawn from the buffer (without replacement within a
        batch); then ``toolbox.version`` += 1. Returns the round's mean loss, or None (and no version change)
        when the buffer is empty. The toolbox is left in eval mode."""
        if not self.buffer:
            return None
        device = next(self.toolbox.parameters()).device
        snapshot = {k: v.detach().clone() for k, v in self.toolbox.state_dict().items()}
        optimizer_snapshot = copy.deepcopy(self.optimizer.state_dict())
        losses = []
        try:
            with torch.inference_mode(False), torch.enable_grad():
                self.toolbox.train()
                for step in range(self.config.updates):
                    picked = self.rng.choice(len(self.buffer), min(self.config.batch_size, len(self.buffer)),
                                             replace=False)
                    degraded, clean, chains = zip(*(self.buffer[i] for i in picked.tolist()))
                    loss, _ = chain_gradients(self.toolbox, torch.stack(degraded).to(device),
                                              torch.stack(clean).to(device), chains)
                    if not math.isfinite(loss) or not _grads_finite(self.toolbox):
                        raise JointTrainingError(
                            f"joint training stopped: the loss or a gradient became non-finite (loss {loss}) at "
                            f"gradient step {step + 1} of round {self.rounds + 1}; the tools were restored to "
                            f"their weights before the round (toolbox version {self.toolbox.version})")
                    self.optimizer.step()
                    losses.append(loss)
        except BaseException:  # NaN, but also an interruption: never leave the tools half-updated
            with torch.inference_mode(False), torch.no_grad():
                self.toolbox.load_state_dict(snapshot)
            self.optimizer.load_state_dict(optimizer_snapshot)
            raise
        finally:
            self.toolbox.zero_grad(set_to_none=True)
            self.toolbox.eval()
        self.toolbox.version += 1
        self.rounds += 1
        self.losses.append(float(np.mean(losses)))
        return self.losses[-1]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (loadable with ``torch.load(weights_only=True)``)."""
        degraded, clean, chains = zip(*self.buffer) if self.buffer else ((), (), ())
        empty = torch.zeros(0, 3, 0, 0)
        return {
            "config": asdict(self.config),
            "toolbox": {k: v.detach().cpu() for k, v in self.toolbox.state_dict().items()},
            "version": self.toolbox.version,
            "optimizer": self.optimizer.state_dict(),
            "buffer": {"degraded": torch.stack(degraded) if degraded else empty,
                       "clean": torch.stack(clean) if clean else empty,
                       "chains": [list(chain) for chain in chains]},
            "counters": {"episodes": self.episodes, "pending": self.pending, "rounds": self.rounds},
            "losses": list(self.losses),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s contents: the tools' weights and version in place, and the rest."""
        if state["config"] != asdict(self.config):
            raise ValueError(f"the saved joint trainer has config {state['config']}, this one {asdict(self.config)}")
        with torch.no_grad():
            self.toolbox.load_state_dict(state["toolbox"])
        self.toolbox.version = int(state["version"])
        self.optimizer.load_state_dict(state["optimizer"])
        buffer = state["buffer"]
        self.buffer.clear()
        self.buffer.extend(zip(buffer["degraded"], buffer["clean"], (tuple(c) for c in buffer["chains"])))
        self.episodes, self.pending, self.rounds = (int(state["counters"][k]) for k in ("episodes", "pending",
                                                                                          "rounds"))
        self.losses = list(state["losses"])
        self.rng.bit_generator.state = state["rng"]


# ---- The paper's protocol: fine-tune the tools after the agent is trained ------------------------------


def check_output_path(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """``out`` as a Path if a fine-tuned toolbox may be written there; ValueError if it is a shipped weight
    file (anything in ``restore_gym/weights/``), one of ``inputs`` or a folder."""
    out = Path(out)
    if out.resolve().parent == SHIPPED_WEIGHTS_DIR:
        raise ValueError(f"refusing to write {out}: restore_gym/weights/ holds the shipped weights, which joint "
                         "training never changes; write the fine-tuned toolbox to a new file")
    for given in inputs:
        if given is None:
            continue
        same = out.resolve() == Path(given).resolve() or (
            out.exists() and Path(given).exists() and os.path.samefile(out, given))
        if same:
            raise ValueError(f"refusing to overwrite the input file {given}: write the fine-tuned toolbox to a "
                             "new file")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give the path of the toolbox file to write")
    return out


def finetune(
    agent: str | os.PathLike,
    out: str | os.PathLike,
    episodes: int,
    toolbox: Toolbox | str | os.PathLike | None = None,
    *,
    config: JointConfig | None = None,
    difficulty: str = "moderate",
    source: str = "builtin",
    num_envs: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[Toolbox, dict[str, Any]]:
    """Fine-tune the tools with the agent fixed (greedy, epsilon 0) on its own chains, the paper's protocol.

    ``agent`` is an agent file or checkpoint (:mod:`restore_gym.lstm_dqn`); ``toolbox`` names the tools to fine-tune
    (:meth:`Toolbox.resolve`; default: the shipped ones). Runs ``num_envs`` episodes at a time on the train split of
    ``source`` at ``difficulty``, without ending on a PSNR drop (the chains the agent runs at test time), until
    ``episodes // config.every`` rounds are due (``config.seed`` also seeds the environment); a round finding only
    empty chains (the agent stopped at once every time) is skipped and not counted. Writes the fine-tuned toolbox to
    ``out`` atomically, only at the end; its ``version`` counts the rounds on top of the input's and its
    metadata records the base toolbox, the agent, the config and the episodes. ``out`` may be neither a
    shipped weight file nor an input (ValueError, before any work). Returns the toolbox and a record.
    """
    config = config if config is not None else JointConfig()
    out = check_output_path(out, None if isinstance(toolbox, Toolbox) else toolbox, agent)
    check_difficulty(difficulty)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < config.every:
        raise ValueError(f"episodes must be an integer of at least every={config.every} (one update round), "
                         f"got {episodes!r}")
    device = resolve_device(device)
    network, agent_info = load_agent(agent, device)
    tools = Toolbox.resolve(toolbox, device)
    from_file = toolbox is not None and not isinstance(toolbox, Toolbox) and Path(toolbox).is_file()
    base = {"path": str(toolbox) if toolbox is not None else "shipped",
            "sha256": file_sha256(toolbox) if from_file else None, "fingerprint": tools.fingerprint(),
            "version": tools.version, "metadata": dict(tools.metadata)}
    env = RLRestoreVectorEnv(num_envs, difficulty, "train", source, tools, device, end_on_psnr_drop=False)
    trainer = JointTrainer(tools, config).attach(env)
    policy = LSTMDQNPolicy(network, epsilon=0.0)
    due = episodes // config.every * config.every
    start = time.perf_counter()
    obs, _ = env.reset(seed=config.seed)
    with tqdm(total=due, unit="episode", disable=not progress) as bar:
        while trainer.episodes < due:
            seen = trainer.episodes
            obs, *_ = env.step(policy(env, obs))
            bar.update(min(trainer.episodes, due) - seen)
            if trainer.losses:
                bar.set_postfix(rounds=trainer.rounds, loss=f"{trainer.losses[-1]:.3g}")
    env.close()
    seconds = time.perf_counter() - start
    record = {
        "base_toolbox": base,
        "agent": {"path": str(agent), "sha256": file_sha256(agent), "global_step": agent_info.get("global_step"),
                  "toolbox": agent_info.get("toolbox")},
        "joint_config": asdict(config),
        "difficulty": difficulty,
        "source": str(source),
        "num_envs": num_envs,
        "end_on_psnr_drop": False,
        "episodes": trainer.episodes,
        "rounds": trainer.rounds,
        "version": tools.version,
        "seconds": seconds,
        "first_losses": trainer.losses[:5],
        "last_losses": trainer.losses[-5:],
    }
    tools.metadata = {
        "provenance": "restore_gym.joint.finetune: the tools fine-tuned jointly with a fixed agent (Algorithm 1 "
                      "of Yu et al., CVPR 2018)",
        **{k: v for k, v in record.items() if k not in ("seconds", "first_losses", "last_losses")},
    }
    tools.save(out)
    return tools, record


def evaluate_agent(agent: str | os.PathLike, toolbox: Toolbox, difficulties: Sequence[str] = DIFFICULTIES,
                   device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """The :func:`restore_gym.evaluation.evaluate` report of the greedy LSTM-DQN ``agent`` (a file) with
    ``toolbox`` on the frozen test set of each difficulty, by difficulty."""
    policy = NamedPolicy("lstm-dqn", LSTMDQNPolicy.load(agent, resolve_device(device)))
    return {d: evaluate(policy, d, toolbox, device=device) for d in difficulties}


# ---- Command line ---------------------------------------------------------------------------------------


def add_joint_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`JointConfig` as ``--every``, ``--batch-size``, ``--lr``, ``--updates``,
    ``--capacity``, ``--seed`` (defaults: JointConfig's)."""
    defaults = JointConfig()
    parser.add_argument("--every", type=int, default=defaults.every, help="episodes between update rounds (K)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="triples per gradient step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate of the tools")
    parser.add_argument("--updates", type=int, default=defaults.updates, help="gradient steps per round")
    parser.add_argument("--capacity", type=int, default=defaults.capacity, help="buffered triples")
    parser.add_argument("--seed", type=int, default=defaults.seed)


def joint_config_from_args(args: argparse.Namespace) -> JointConfig:
    """The :class:`JointConfig` of arguments added by :func:`add_joint_arguments`."""
    return JointConfig(every=args.every, batch_size=args.batch_size, lr=args.lr, updates=args.updates,
                       capacity=args.capacity, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m restore_gym.joint", description="Joint training of the tools "
                                     "with a fixed agent (the paper's Algorithm 1).")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("finetune", help="fine-tune the tools on a trained agent's chains, save them "
                                  "as a new toolbox file and evaluate the agent with them on the test sets")
    command.add_argument("--agent", required=True, help="agent.pt or checkpoint.pt of the LSTM-DQN training")
    command.add_argument("--toolbox", help="toolbox .pt file to start from (default: the shipped toolbox)")
    command.add_argument("--out", required=True, help="the new toolbox file (never the shipped or input file)")
    command.add_argument("--episodes", type=int, required=True, help="training episodes (rounds = episodes // every)")
    command.add_argument("--difficulty", default="moderate", choices=DIFFICULTIES, help="of the training patches")
    command.add_argument("--source", default="builtin", help="training images: builtin, corpus or a folder; the "
                         "tools' corpus overfits far less than builtin's 3 photos")
    command.add_argument("--num-envs", type=int, default=64, help="episodes run in lockstep")
    command.add_argument("--eval-difficulties", nargs="+", default=list(DIFFICULTIES), choices=DIFFICULTIES)
    command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    command.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    command.add_argument("--no-progress", action="store_true")
    add_joint_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = joint_config_from_args(args)
        check_output_path(args.out, args.toolbox, args.agent)
    except ValueError as error:
        parser.error(str(error))
    retain_freed_memory()
    tools, record = finetune(args.agent, args.out, args.episodes, args.toolbox, config=config,
                             difficulty=args.difficulty, source=os.path.expanduser(args.source),
                             num_envs=args.num_envs, device=args.device, progress=not args.no_progress)
    base = Toolbox.resolve(args.toolbox, args.device)
    record["test"] = {label: {d: report["metrics"] for d, report in
                              evaluate_agent(args.agent, tools_, args.eval_difficulties, args.device).items()}
                      for label, tools_ in (("without", base), ("with", tools))}
    print(json.dumps(record, indent=2))
    print(f"fine-tuned toolbox (version {tools.version}) written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
