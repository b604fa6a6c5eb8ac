"""Joint training of the tools (the paper's Algorithm 1): the same agent on the three frozen test sets with
the tools before and after fine-tuning them on its own chains.

    python -m benchmarks.joint --agent AGENT.pt [--toolbox TOOLBOX.pt] [--episodes 12800] [--source DIR|builtin]

The protocol of :func:`restore_gym.joint.finetune`: the agent is fixed (greedy), the tools are fine-tuned
once, on the moderate train split, with episodes that do not end on a PSNR drop (the chains the agent runs
at test time), in rounds of 64 episodes, each one Adam step (lr 1e-4) on the 64 chains the agent has just
chosen; then the agent is evaluated with the tools before and after on mild, moderate and severe. The bar:
at least +0.15 dB on moderate (the paper reports +0.25 dB) and no difficulty worse.

Training images: by default the tools' own corpus (``python -m restore_gym.corpus`` builds it; 25 photos),
not the built-in train split (3 photos), on which the tools overfit. Measured with a 100k-step agent of the
``cpu`` preset (builtin-trained, three tools per patch): after 20 rounds, builtin gave mild -0.20 / moderate
+0.19 / severe +0.48 dB; the corpus +0.04 / +0.36 / +0.65 dB, then -0.03 / +0.34 / +0.67 after 40 rounds,
+0.05 / +0.47 / +0.81 after 80 and +0.10 / +0.51 / +0.85 after 120: mild stays near zero, the tight part of
the bar.

Default size: one round costs about 4.1 s of one CPU thread with the shipped tools and an agent that runs
three tools per patch (measured: 3.1 s for the gradient step on 64 chains of 3 tools, 1.0 s to run the 64
episodes), so 12,800 episodes (200 rounds) take about 14 minutes and the six evaluations well under one.
The fine-tuned toolbox goes to ``--out-toolbox`` (default ``runs/joint/toolbox.pt``; never the shipped or
input file). Writes ``benchmarks/results/joint.json`` and ``joint.md`` atomically.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from restore_gym.allocator import retain_freed_memory
from restore_gym.degrade import DIFFICULTIES
from restore_gym.joint import (
    add_joint_arguments,
    check_output_path,
    evaluate_agent,
    finetune,
    joint_config_from_args,
)
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.sources import CORPUS_SOURCE, resolve_source
from restore_gym.toolbox import Toolbox

RESULTS = Path(__file__).parent / "results"
DEFAULT_EPISODES = 12_800
BAR_MODERATE_DB = 0.15


def compare(without: dict[str, dict[str, Any]], with_joint: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per difficulty of two evaluation reports by difficulty: input PSNR, PSNR and gain without and
    with joint training, their difference."""
    rows = []
    for difficulty, report in without.items():
        before, after = report["metrics"], with_joint[difficulty]["metrics"]
        rows.append({
            "difficulty": difficulty,
            "psnr_input": before["psnr_input"],
            "psnr_without": before["psnr"], "gain_without": before["psnr_gain"],
            "chain_length_without": before["chain_length"],
            "psnr_with": after["psnr"], "gain_with": after["psnr_gain"], "chain_length_with": after["chain_length"],
            "difference": after["psnr"] - before["psnr"],
            "test_set_digest": report["test_set"]["digest"], "digest_matches": report["test_set"]["digest_matches"],
        })
    return rows


def bar_met(rows: list[dict[str, Any]]) -> bool:
    """At least +0.15 dB on moderate and no difficulty worse."""
    by_difficulty = {row["difficulty"]: row["difference"] for row in rows}
    return by_difficulty.get("moderate", float("-inf")) >= BAR_MODERATE_DB and min(by_difficulty.values()) >= 0.0


def markdown(record: dict[str, Any]) -> str:
    """The result table (difficulty, PSNR/gain without, PSNR/gain with, difference) and how it was made."""
    tuning = record["finetune"]
    cfg = tuning["joint_config"]
    lines = [
        "# Joint training of the tools (fine-tuning with the agent fixed)",
        "",
        f"Agent `{tuning['agent']['path']}`; tools fine-tuned on its own chains over the {tuning['difficulty']} train "
        f"split (source `{tuning['source']}`, episodes not ended on a PSNR drop): {tuning['episodes']} episodes, "
        f"{tuning['rounds']} rounds of {cfg['updates']} Adam step(s) on {cfg['batch_size']} chains every "
        f"{cfg['every']} episodes (lr {cfg['lr']:g}), {tuning['seconds']:.0f} s on "
        f"{record['provenance']['torch_threads']} CPU thread(s). Toolbox version {tuning['base_toolbox']['version']} "
        f"-> {tuning['version']}.",
        "",
        "| difficulty | PSNR without (dB) | gain without (dB) | PSNR with (dB) | gain with (dB) | difference (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['difficulty']} | {row['psnr_without']:.3f} | {row['gain_without']:+.3f} | "
                     f"{row['psnr_with']:.3f} | {row['gain_with']:+.3f} | {row['difference']:+.3f} |")
    lines += ["", f"Bar (at least +{BAR_MODERATE_DB} dB on moderate, no difficulty worse): "
              f"{'met' if record['bar_met'] else 'NOT met'}.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.joint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", required=True, help="agent.pt or checkpoint.pt of agents.lstm_dqn")
    parser.add_argument("--toolbox", help="toolbox .pt file the agent uses (default: the shipped toolbox)")
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help="fine-tuning episodes")
    parser.add_argument("--source", default=CORPUS_SOURCE, help="training images: corpus (the tools' corpus, "
                        "built by python -m restore_gym.corpus; the default), builtin or a folder")
    parser.add_argument("--num-envs", type=int, default=64, help="episodes run in lockstep")
    parser.add_argument("--out-toolbox", default="runs/joint/toolbox.pt", help="where the fine-tuned toolbox goes")
    parser.add_argument("--results", default=str(RESULTS), help="folder of joint.json and joint.md")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true")
    add_joint_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = joint_config_from_args(args)
        check_output_path(args.out_toolbox, args.toolbox, args.agent)
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        resolve_source(os.path.expanduser(args.source), "train")
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    retain_freed_memory()
    start = time.perf_counter()
    tuned, tuning = finetune(args.agent, args.out_toolbox, args.episodes, args.toolbox, config=config,
                             source=os.path.expanduser(args.source), num_envs=args.num_envs,
                             progress=not args.no_progress)
    base = Toolbox.resolve(args.toolbox)
    rows = compare(evaluate_agent(args.agent, base, DIFFICULTIES), evaluate_agent(args.agent, tuned, DIFFICULTIES))
    record = {
        "benchmark": "joint",
        "rows": rows,
        "bar_met": bar_met(rows),
        "finetune": tuning,
        "fine_tuned_toolbox": str(args.out_toolbox),
        "total_seconds": time.perf_counter() - start,
        "provenance": provenance(),
    }
    results = Path(args.results)
    write_json_atomic(results / "joint.json", record)
    write_text_atomic(results / "joint.md", markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
