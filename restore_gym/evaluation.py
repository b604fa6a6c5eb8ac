"""Evaluate an agent or a baseline on a frozen test set: one report for every kind of agent.

``python -m restore_gym evaluate --agent NAME --difficulty D [--toolbox PATH | --official-toolbox DIR]
[--checkpoint PATH] [--out FILE] [--seed 0]`` (also ``restore-gym evaluate``)

Agents: the baselines of :mod:`restore_gym.baselines`, ``lstm-dqn`` (a trained agent: ``--checkpoint`` is an
agent file or training checkpoint of :mod:`restore_gym.lstm_dqn`; without it, the shipped agent), ``official``
(the authors' released agent: converted once by ``restore-gym import-official``, or ``--checkpoint`` the
folder of their release holding ``model.index``), ``sb3`` (a trained
Stable-Baselines3 model: ``--checkpoint`` is its run folder, :mod:`restore_gym.sb3_policy`) and
``single-network`` (a network of :mod:`restore_gym.networks` that restores in one pass, no toolbox:
``--checkpoint`` is its ``network.pt``).
The toolbox defaults to the shipped one.

Every test patch runs as one sub-environment of a ``split="test"`` vector environment, which does not end
episodes on a PSNR drop. PSNR is measured on the final, unclipped image (as the paper and the environment
do); SSIM on the final image clipped to [0, 1] (SSIM needs a bounded range).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import BASELINES, VALIDATION_SIZE, NamedPolicy
from restore_gym.data import ImageSource, TestSet, digest_of, to_nchw
from restore_gym.degrade import check_difficulty
from restore_gym.devices import resolve_device
from restore_gym.engine import MAX_TOOLS, PatchSupply
from restore_gym.lstm_dqn import LSTMDQNPolicy, QNetwork
from restore_gym.metrics import psnr_batch, ssim
from restore_gym.networks import load_network, restore
from restore_gym.official import OFFICIAL
from restore_gym.records import check_writable, file_sha256, provenance, write_json_atomic
from restore_gym.rollout import Policy, run_one_episode_each
from restore_gym.sources import resolve_source
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS, Toolbox, count_macs, count_parameters
from restore_gym.vector_env import RLRestoreVectorEnv

LEARNED_AGENTS: tuple[str, ...] = ("lstm-dqn", "official", "sb3")
SINGLE_NETWORK = "single-network"
AGENTS: tuple[str, ...] = (*BASELINES, SINGLE_NETWORK, *LEARNED_AGENTS)
CHECKPOINT_AGENTS: tuple[str, ...] = (SINGLE_NETWORK, *LEARNED_AGENTS)


@dataclass(frozen=True)
class Evaluation:
    """A JSON-ready ``report`` (see :func:`evaluate`) and the final images, N x H x W x 3 float32 (unclipped)."""

    report: dict[str, Any]
    images: np.ndarray


def _hwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def limit_test_set(test_set: TestSet, max_patches: int | None) -> TestSet:
    """The first ``max_patches`` patches of ``test_set`` (all of them for None), with the digest of those."""
    if max_patches is None or max_patches >= len(test_set):
        return test_set
    if max_patches < 1:
        raise ValueError(f"max_patches must be at least 1 (or None for the whole test set), got {max_patches}")
    degraded = test_set.degraded[:max_patches]
    return replace(test_set, degraded=degraded, clean=test_set.clean[:max_patches],
                   params=test_set.params[:max_patches], sources=test_set.sources[:max_patches],
                   digest=digest_of(degraded), expected_digest=None)


def _test_set_record(full: TestSet, used: TestSet) -> dict[str, Any]:
    record = {"difficulty": full.difficulty, "patches": len(full), "digest": full.digest,
              "expected_digest": full.expected_digest, "digest_matches": full.digest_matches}
    if used is not full:
        record.update(limited_to=len(used), subset_digest=used.digest)
    return record


def _report(name: str, details: dict[str, Any], full: TestSet, used: TestSet, final: np.ndarray,
            psnr_input: np.ndarray, psnr_final: np.ndarray, chains: list[list[int]] | None, macs: np.ndarray,
            wall: float, seed: int, device: torch.device, toolbox: Toolbox | None, notes: str) -> dict[str, Any]:
    """The report shared by policies and single networks (``chains`` None: no toolchain, no tool usage)."""
    size = len(used)
    ssim_final = np.array([ssim(np.clip(img, 0.0, 1.0), ref) for img, ref in zip(final, used.clean)])
    ssim_input = np.array([ssim(img, ref) for img, ref in zip(used.degraded, used.clean)])
    usage = None
    if chains is not None:
        per_tool = np.zeros(NUM_TOOLS, dtype=np.int64)
        per_step = np.zeros((MAX_TOOLS, NUM_TOOLS), dtype=np.int64)
        for chain in chains:
            for position, tool in enumerate(chain):
                per_tool[tool] += 1
                per_step[position, tool] += 1
        usage = {"per_tool": per_tool.tolist(), "per_step": per_step.tolist(),
                 "tool_names": [spec.name for spec in TOOL_SPECS]}
    return {
        "agent": {"name": name, **details},
        "difficulty": full.difficulty,
        "patches": size,
        "seed": seed,
        "device": str(device),
        "metrics": {
            "psnr": float(psnr_final.mean()),
            "ssim": float(ssim_final.mean()),
            "psnr_input": float(psnr_input.mean()),
            "ssim_input": float(ssim_input.mean()),
            "psnr_gain": float((psnr_final - psnr_input).mean()),
            "chain_length": None if chains is None else float(np.mean([len(chain) for chain in chains])),
            "macs_per_patch": float(macs.mean()),
            "wall_seconds_per_patch": wall / size,
        },
        "notes": notes,
        "tool_usage": usage,
        "per_patch": {
            "psnr_input": psnr_input.tolist(),
            "psnr": psnr_final.tolist(),
            "ssim": ssim_final.tolist(),
            "chain": chains,
        },
        "test_set": _test_set_record(full, used),
        "toolbox": None if toolbox is None else {
            "fingerprint": toolbox.fingerprint(),
            "version": toolbox.version,
            "metadata": toolbox.metadata,
        },
        "provenance": provenance(),
    }


def run_policy(
    policy: Policy,
    difficulty: str,
    toolbox: Toolbox,
    source: str | ImageSource = "builtin",
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_patches: int | None = None,
) -> Evaluation:
    """:func:`evaluate`'s report and the final image of every patch."""
    check_difficulty(difficulty)
    size = len(resolve_source(source, "test").grid_positions())
    size = size if max_patches is None else min(size, max_patches)
    vec = RLRestoreVectorEnv(num_envs=size, difficulty=difficulty, split="test", source=source,
                             toolbox=toolbox, device=device)
    full = vec.supply.test_set
    # Sub-environment i restores patch i; the policy (an oracle's search, say) sees only the patches used.
    vec.supply.test_set = used = limit_test_set(full, max_patches)
    start = time.perf_counter()
    result = run_one_episode_each(vec, policy, seed=seed)
    wall = time.perf_counter() - start
    chains = [list(map(int, chain)) for chain in result["chains"]]
    macs = np.array([sum(TOOL_SPECS[t].macs for t in chain) for chain in chains], dtype=np.int64)
    final = _hwc(result["final_images"])
    report = _report(
        getattr(policy, "name", type(policy).__name__), getattr(policy, "details", {}), full, used, final,
        result["psnr_input"], result["psnr_final"], chains, macs, wall, seed, vec.device, toolbox,
        "PSNR on the unclipped final image; SSIM on it clipped to [0, 1]; multiply-adds count the tools "
        "applied (63x63 patch), not a policy's own network or search; wall time includes the policy.")
    return Evaluation(report, final)


def evaluate(
    policy: Policy,
    difficulty: str,
    toolbox: Toolbox,
    source: str | ImageSource = "builtin",
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_patches: int | None = None,
) -> dict[str, Any]:
    """Run ``policy`` once on every patch of the test set of ``difficulty`` and summarize the results.

    ``source`` gives the test set: ``"builtin"`` (the frozen set), a folder or an :class:`ImageSource` of
    the test split; ``max_patches`` keeps only its first patches (for quick checks; the report's
    ``test_set`` then says ``limited_to``). Returns a JSON-ready dict: ``agent``, ``difficulty``, ``metrics``
    (means of PSNR, SSIM, input PSNR/SSIM, gain, chain length, multiply-adds per patch of the tools applied,
    wall time per patch including the policy's own work, e.g. an oracle's search), ``tool_usage`` (per tool
    and per step position), ``per_patch`` values, ``test_set`` (digest and whether it matches the recorded
    one), ``toolbox`` (fingerprint, version, metadata) and ``provenance``.
    """
    return run_policy(policy, difficulty, toolbox, source, seed, device, max_patches).report


def run_network(
    network: nn.Module,
    difficulty: str,
    source: str | ImageSource = "builtin",
    device: str | torch.device = "cpu",
    max_patches: int | None = None,
    name: str = SINGLE_NETWORK,
    details: dict[str, Any] | None = None,
) -> Evaluation:
    """Restore every patch of the test set of ``difficulty`` with ``network`` in one pass (a single network
    of :mod:`restore_gym.networks`, on ``device``) and report it as :func:`evaluate` reports a policy.

    The output is bounded like the environment's state; PSNR is measured on it, SSIM on it clipped to
    [0, 1]. There is no toolchain: ``chain_length``, ``per_patch.chain``, ``tool_usage`` and ``toolbox`` are
    None. Multiply-adds are the network's own on a 63x63 patch; wall time covers the forward passes.
    """
    check_difficulty(difficulty)
    device = resolve_device(device)
    full = PatchSupply(source, "test", difficulty).test_set
    used = limit_test_set(full, max_patches)
    degraded, clean = to_nchw(used.degraded).to(device), to_nchw(used.clean).to(device)
    start = time.perf_counter()
    restored = restore(network.to(device), degraded)
    wall = time.perf_counter() - start
    macs = np.full(len(used), count_macs(network), dtype=np.int64)
    final = _hwc(restored.cpu().numpy())
    report = _report(
        name, {"parameters": count_parameters(network), **(details or {})}, full, used, final,
        psnr_batch(degraded, clean).cpu().numpy().astype(np.float64),
        psnr_batch(restored, clean).cpu().numpy().astype(np.float64), None, macs, wall, 0, device, None,
        "One forward pass per patch, output bounded like the environment's state; PSNR on it, SSIM on it clipped "
        "to [0, 1]; multiply-adds are the network's own convolutions on a 63x63 patch.")
    return Evaluation(report, final)


def checkpoint_details(checkpoint: str | os.PathLike) -> dict[str, str]:
    """How a result names its checkpoint: the file or folder name and the SHA-256 of its bytes, never a path
    of the machine that ran it."""
    return {"checkpoint": Path(checkpoint).name, "sha256": file_sha256(checkpoint)}


def check_agent(name: str, checkpoint: str | None) -> None:
    """ValueError for an unknown agent (listing the known ones) or a checkpoint given to or missing for one;
    FileNotFoundError for a checkpoint path that does not exist."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
    if name in CHECKPOINT_AGENTS:
        if checkpoint is None and name in ("lstm-dqn", "official"):
            return
        if checkpoint is None:
            what = {"sb3": "the SB3 run folder"}.get(name, "a .pt file")
            raise ValueError(f"agent {name!r} needs --checkpoint ({what})")
        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    elif checkpoint is not None:
        raise ValueError(f"agent {name!r} is a baseline and takes no checkpoint")


def make_policy(name: str, toolbox: Toolbox, difficulty: str, seed: int = 0, checkpoint: str | None = None,
                validation_size: int = VALIDATION_SIZE, device: str | torch.device = "cpu",
                source: str | ImageSource = "builtin") -> Policy:
    """The policy of agent ``name`` (see :data:`AGENTS`) with a ``name``; errors as :func:`check_agent`, and
    a ValueError naming the file for a checkpoint that is not an agent of this architecture. ``source`` is
    the image source whose train split best-tool and best-chain are chosen on. A single network is no
    policy (ValueError): restore with :func:`run_network`."""
    check_difficulty(difficulty)
    check_agent(name, checkpoint)
    if name == SINGLE_NETWORK:
        raise ValueError(f"{SINGLE_NETWORK!r} restores in one pass, not as a policy: use run_network")
    if name in BASELINES:
        return BASELINES[name](toolbox, difficulty, seed, source=source, validation_size=validation_size)
    if name == "sb3":
        from restore_gym.sb3_policy import load_policy  # Stable-Baselines3 is imported only for SB3 agents

        return NamedPolicy(name, load_policy(checkpoint, device), checkpoint_details(checkpoint))
    if name == "official" and checkpoint is None:
        return NamedPolicy(name, LSTMDQNPolicy.resolve(OFFICIAL, device), {"checkpoint": "official (converted)"})
    if name == "official":
        policy = LSTMDQNPolicy(QNetwork.from_official(checkpoint).to(resolve_device(device)))
    elif checkpoint is None:
        policy = LSTMDQNPolicy.pretrained(device)
        return NamedPolicy(name, policy, {"checkpoint": "shipped (restore_gym/weights)"})
    else:
        policy = LSTMDQNPolicy.load(checkpoint, device)
    return NamedPolicy(name, policy, checkpoint_details(checkpoint))


def load_toolbox(path: str | None = None, official_dir: str | None = None) -> Toolbox:
    """The toolbox named by ``path`` (see :meth:`Toolbox.resolve`), or the authors' released tools."""
    if official_dir is not None:
        if not Path(official_dir).is_dir():
            raise FileNotFoundError(f"official toolbox folder {official_dir} does not exist")
        return Toolbox.from_official(official_dir)
    return Toolbox.resolve(path)


def format_summary(report: dict[str, Any]) -> str:
    """A short human-readable table of an :func:`evaluate` report."""
    m, ts = report["metrics"], report["test_set"]
    digest = "matches the recorded digest" if ts["digest_matches"] else "has NO recorded match"
    limited = f", the first {ts['limited_to']} only" if "limited_to" in ts else ""
    length = "n/a" if m["chain_length"] is None else f"{m['chain_length']:.2f}"
    usage = ("none (a single network)" if report["tool_usage"] is None else
             " ".join(f"t{i + 1}:{n}" for i, n in enumerate(report["tool_usage"]["per_tool"])))
    return "\n".join([
        f"{report['agent']['name']} on {report['difficulty']} ({report['patches']} patches; test set "
        f"{ts['digest'][:12]}… {digest}{limited})",
        f"{'PSNR':>10} {'SSIM':>7} {'input':>8} {'gain':>7} {'length':>7} {'GMACs':>7} {'ms/patch':>9}",
        f"{m['psnr']:>10.3f} {m['ssim']:>7.4f} {m['psnr_input']:>8.3f} {m['psnr_gain']:>+7.3f} "
        f"{length:>7} {m['macs_per_patch'] / 1e9:>7.3f} {1e3 * m['wall_seconds_per_patch']:>9.2f}",
        f"tool usage: {usage}",
    ])


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m restore_gym evaluate``."""
    parser = argparse.ArgumentParser(prog="restore-gym evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help=f"one of: {', '.join(AGENTS)}")
    parser.add_argument("--difficulty", required=True, help="mild, moderate or severe")
    tools = parser.add_mutually_exclusive_group()
    tools.add_argument("--toolbox", help="shipped (default), a variant (v2, joint), official or a toolbox .pt file")
    tools.add_argument("--official-toolbox", metavar="DIR", help="the authors' released tools (tool01..tool12)")
    parser.add_argument("--checkpoint", help="lstm-dqn, single-network: a .pt file; official: the authors' model "
                        "folder; sb3: the run folder")
    parser.add_argument("--out", help="write the JSON report here (atomically; checked before evaluating)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validation-size", type=int, default=VALIDATION_SIZE,
                        help="train-split patches on which best-tool and best-chain are chosen")
    parser.add_argument("--max-patches", type=int, help="only the first N test patches (quick checks)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad arguments exit with status 2 and a message naming the problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.out:  # checked before the evaluation, which would otherwise be lost
            check_writable(args.out)
        check_difficulty(args.difficulty)
        check_agent(args.agent, args.checkpoint)
        device = resolve_device(args.device)
        if args.max_patches is not None and args.max_patches < 1:
            raise ValueError(f"--max-patches must be at least 1, got {args.max_patches}")
        if args.agent == SINGLE_NETWORK:
            network = load_network(args.checkpoint, device)[0]
        else:
            toolbox = load_toolbox(args.toolbox, args.official_toolbox).to(device)
            policy = make_policy(args.agent, toolbox, args.difficulty, args.seed, args.checkpoint,
                                 args.validation_size, device)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    retain_freed_memory()
    if args.agent == SINGLE_NETWORK:
        report = run_network(network, args.difficulty, device=device, max_patches=args.max_patches,
                             details=checkpoint_details(args.checkpoint)).report
    else:
        report = evaluate(policy, args.difficulty, toolbox, seed=args.seed, device=device,
                          max_patches=args.max_patches)
    print(format_summary(report))
    if args.out:
        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
