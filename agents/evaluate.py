"""Evaluate an agent or a baseline on a frozen test set.

``python -m agents.evaluate --agent NAME --difficulty D [--toolbox PATH | --official-toolbox DIR]
[--checkpoint PATH] [--out FILE] [--seed 0]``

Agents: the baselines of :mod:`agents.baselines`, ``lstm-dqn`` (a trained agent: ``--checkpoint`` is an
agent file or training checkpoint of :mod:`agents.lstm_dqn`) and ``official`` (the authors' released agent:
``--checkpoint`` is the folder holding ``model.index``). The toolbox defaults to the shipped one.

Every test patch runs as one sub-environment of a ``split="test"`` vector environment, which does not end
episodes on a PSNR drop. PSNR is measured on the final, unclipped image (as the paper and the environment
do); SSIM on the final image clipped to [0, 1] (SSIM needs a bounded range).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.baselines import BASELINES, VALIDATION_SIZE, NamedPolicy, toolbox_fingerprint
from restore_gym.data import ImageSource
from restore_gym.degrade import check_difficulty
from restore_gym.engine import MAX_TOOLS, resolve_device, resolve_source
from restore_gym.metrics import ssim
from restore_gym.records import provenance, write_json_atomic
from restore_gym.rollout import Policy, run_one_episode_each
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS, Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv

LEARNED_AGENTS: tuple[str, ...] = ("lstm-dqn", "official")
AGENTS: tuple[str, ...] = (*BASELINES, *LEARNED_AGENTS)


def _hwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def evaluate(
    policy: Policy,
    difficulty: str,
    toolbox: Toolbox,
    source: str | ImageSource = "builtin",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run ``policy`` once on every patch of the test set of ``difficulty`` and summarize the results.

    ``source`` gives the test set: ``"builtin"`` (the frozen set), a folder or an :class:`ImageSource` of
    the test split. Returns a JSON-ready dict: ``agent``, ``difficulty``, ``metrics`` (means of PSNR, SSIM,
    input PSNR/SSIM, gain, chain length, multiply-adds per patch of the tools applied, wall time per patch
    including the policy's own work, e.g. an oracle's search), ``tool_usage`` (per tool and per step
    position), ``per_patch`` values, ``test_set`` (digest and whether it matches the recorded one),
    ``toolbox`` (fingerprint, version, metadata) and ``provenance``.
    """
    check_difficulty(difficulty)
    size = len(resolve_source(source, "test").grid_positions())
    vec = RLRestoreVectorEnv(num_envs=size, difficulty=difficulty, split="test", source=source,
                             toolbox=toolbox, device=device)
    test_set = vec.supply.test_set
    start = time.perf_counter()
    result = run_one_episode_each(vec, policy, seed=seed)
    wall = time.perf_counter() - start

    final = _hwc(result["final_images"])
    ssim_final = np.array([ssim(np.clip(img, 0.0, 1.0), ref) for img, ref in zip(final, test_set.clean)])
    ssim_input = np.array([ssim(img, ref) for img, ref in zip(test_set.degraded, test_set.clean)])
    chains = [list(map(int, chain)) for chain in result["chains"]]
    per_tool = np.zeros(NUM_TOOLS, dtype=np.int64)
    per_step = np.zeros((MAX_TOOLS, NUM_TOOLS), dtype=np.int64)
    for chain in chains:
        for position, tool in enumerate(chain):
            per_tool[tool] += 1
            per_step[position, tool] += 1
    macs = np.array([sum(TOOL_SPECS[t].macs for t in chain) for chain in chains], dtype=np.int64)
    lengths = np.array([len(chain) for chain in chains])
    psnr_input, psnr_final = result["psnr_input"], result["psnr_final"]
    return {
        "agent": {"name": getattr(policy, "name", type(policy).__name__), **getattr(policy, "details", {})},
        "difficulty": difficulty,
        "patches": size,
        "seed": seed,
        "device": str(vec.device),
        "metrics": {
            "psnr": float(psnr_final.mean()),
            "ssim": float(ssim_final.mean()),
            "psnr_input": float(psnr_input.mean()),
            "ssim_input": float(ssim_input.mean()),
            "psnr_gain": float((psnr_final - psnr_input).mean()),
            "chain_length": float(lengths.mean()),
            "macs_per_patch": float(macs.mean()),
            "wall_seconds_per_patch": wall / size,
        },
        "notes": "PSNR on the unclipped final image; SSIM on it clipped to [0, 1]; multiply-adds count the tools "
                 "applied (63x63 patch), not a policy's own network or search; wall time includes the policy.",
        "tool_usage": {
            "per_tool": per_tool.tolist(),
            "per_step": per_step.tolist(),
            "tool_names": [spec.name for spec in TOOL_SPECS],
        },
        "per_patch": {
            "psnr_input": psnr_input.tolist(),
            "psnr": psnr_final.tolist(),
            "ssim": ssim_final.tolist(),
            "chain": chains,
        },
        "test_set": {
            "difficulty": test_set.difficulty,
            "patches": len(test_set),
            "digest": test_set.digest,
            "expected_digest": test_set.expected_digest,
            "digest_matches": test_set.digest_matches,
        },
        "toolbox": {
            "fingerprint": toolbox_fingerprint(toolbox),
            "version": toolbox.version,
            "metadata": toolbox.metadata,
        },
        "provenance": provenance(),
    }


def check_agent(name: str, checkpoint: str | None) -> None:
    """ValueError for an unknown agent (listing the known ones) or a checkpoint given to or missing for one;
    FileNotFoundError for a checkpoint path that does not exist."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
    if name in LEARNED_AGENTS:
        if checkpoint is None:
            raise ValueError(f"agent {name!r} needs --checkpoint"
                             + (" (the authors' model folder)" if name == "official" else " (a .pt file)"))
        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    elif checkpoint is not None:
        raise ValueError(f"agent {name!r} is a baseline and takes no checkpoint")


def make_policy(name: str, toolbox: Toolbox, difficulty: str, seed: int = 0, checkpoint: str | None = None,
                validation_size: int = VALIDATION_SIZE, device: str | torch.device = "cpu") -> Policy:
    """The policy of agent ``name`` (see :data:`AGENTS`) with a ``name``; errors as :func:`check_agent`, and
    a ValueError naming the file for a checkpoint that is not an agent of this architecture."""
    check_difficulty(difficulty)
    check_agent(name, checkpoint)
    if name in BASELINES:
        return BASELINES[name](toolbox, difficulty, seed, validation_size=validation_size)
    from agents.lstm_dqn import LSTMDQNPolicy, QNetwork

    if name == "official":
        policy = LSTMDQNPolicy(QNetwork.from_official(checkpoint).to(resolve_device(device)))
    else:
        policy = LSTMDQNPolicy.load(checkpoint, device)
    return NamedPolicy(name, policy, {"checkpoint": str(Path(checkpoint).resolve())})


def load_toolbox(path: str | None = None, official_dir: str | None = None) -> Toolbox:
    """A toolbox file written by ``Toolbox.save``, the authors' released tools, or else the shipped one."""
    if official_dir is not None:
        if not Path(official_dir).is_dir():
            raise FileNotFoundError(f"official toolbox folder {official_dir} does not exist")
        return Toolbox.from_official(official_dir)
    return Toolbox.load(path) if path is not None else Toolbox.pretrained()


def format_summary(report: dict[str, Any]) -> str:
    """A short human-readable table of an :func:`evaluate` report."""
    m, ts = report["metrics"], report["test_set"]
    digest = "matches the recorded digest" if ts["digest_matches"] else "has NO recorded match"
    usage = " ".join(f"t{i + 1}:{n}" for i, n in enumerate(report["tool_usage"]["per_tool"]))
    return "\n".join([
        f"{report['agent']['name']} on {report['difficulty']} ({report['patches']} patches; test set "
        f"{ts['digest'][:12]}… {digest})",
        f"{'PSNR':>10} {'SSIM':>7} {'input':>8} {'gain':>7} {'length':>7} {'GMACs':>7} {'ms/patch':>9}",
        f"{m['psnr']:>10.3f} {m['ssim']:>7.4f} {m['psnr_input']:>8.3f} {m['psnr_gain']:>+7.3f} "
        f"{m['chain_length']:>7.2f} {m['macs_per_patch'] / 1e9:>7.3f} {1e3 * m['wall_seconds_per_patch']:>9.2f}",
        f"tool usage: {usage}",
    ])


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m agents.evaluate``."""
    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help=f"one of: {', '.join(AGENTS)}")
    parser.add_argument("--difficulty", required=True, help="mild, moderate or severe")
    tools = parser.add_mutually_exclusive_group()
    tools.add_argument("--toolbox", help="a toolbox .pt file (default: the shipped toolbox)")
    tools.add_argument("--official-toolbox", metavar="DIR", help="the authors' released tools (tool01..tool12)")
    parser.add_argument("--checkpoint", help="lstm-dqn: a .pt file; official: the authors' model folder")
    parser.add_argument("--out", help="write the JSON report here (atomically)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validation-size", type=int, default=VALIDATION_SIZE,
                        help="train-split patches on which best-tool and best-chain are chosen")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad arguments exit with status 2 and a message naming the problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_difficulty(args.difficulty)
        check_agent(args.agent, args.checkpoint)
        device = resolve_device(args.device)
        toolbox = load_toolbox(args.toolbox, args.official_toolbox).to(device)
        policy = make_policy(args.agent, toolbox, args.difficulty, args.seed, args.checkpoint, args.validation_size,
                             device)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    report = evaluate(policy, args.difficulty, toolbox, seed=args.seed, device=device)
    print(format_summary(report))
    if args.out:
        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
