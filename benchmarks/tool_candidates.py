"""Candidate tools from training runs, measured against the toolbox floors before a whole toolbox is trained.

A training run of :mod:`restore_gym.train_tools` leaves each finished tool in ``RUN/toolNN.pt``. This benchmark
puts the tools of each run into a base toolbox (default: the shipped v3) and measures, per tool, the numbers of
the floors of :mod:`benchmarks.toolbox`: its gain on its own distortion alone, its mean first-step gain on each
frozen test set, and with ``--greedy`` the greedy oracle's gain of the base toolbox with the run's tools swapped
in. The base itself is the first row, and the authors' tools (when present) the last, with the floors.

    python -m benchmarks.tool_candidates RUN[=LABEL] [RUN[=LABEL] ...] --tools 1,9 [--base v3] [--greedy]
        [--patches 200] [--out benchmarks/results/tool_candidates]

Writes ``OUT/candidates.json`` and ``OUT/candidates.md``; a label names a run in the tables (default: the
folder's name).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.toolbox import (
    DEFAULT_OFFICIAL,
    FIRST_STEP_SLACK_DB,
    GREEDY_SHARE,
    RESULTS,
    band_patches,
    greedy_oracle,
    meets_bar,
    tool_gain,
)
from restore_gym.data import load_test_set, to_nchw
from restore_gym.degrade import DIFFICULTIES
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.toolbox import TOOL_SPECS, Toolbox
from restore_gym.train_tools import parse_tool_list, read_finished_tool


def with_run_tools(base: Toolbox, run: Path, tools: Sequence[int]) -> Toolbox:
    """A copy of ``base`` whose tools ``tools`` (0-based) are the finished tools of the training run ``run``."""
    toolbox = Toolbox(base.version, {**base.metadata, "candidate_run": run.name})
    toolbox.load_state_dict(base.state_dict())
    for index in tools:
        state = read_finished_tool(run / f"tool{index + 1:02d}.pt", "it is no candidate of a recorded run")
        toolbox.tools[index].load_state_dict(state["state_dict"])
    return toolbox


def measure(toolbox: Toolbox, tools: Sequence[int], patches: int, seed: int, greedy: bool) -> dict:
    """Per tool of ``tools``: the single-distortion gain and the first-step gain per frozen test set; with
    ``greedy``, the greedy oracle's gain of ``toolbox`` per test set."""
    result: dict = {"tools": {}}
    for index in tools:
        result["tools"][str(index + 1)] = {
            "single": tool_gain(toolbox, index, *_band_patches(TOOL_SPECS[index], patches, seed)),
            "first_step": {difficulty: tool_gain(toolbox, index, *pair) for difficulty, pair in _test_sets().items()},
        }
    if greedy:
        result["greedy_oracle"] = {difficulty: greedy_oracle(toolbox, difficulty)["gain"]
                                   for difficulty in DIFFICULTIES}
    return result


# The same patches for every candidate: made once per tool.
_band_patches = functools.cache(band_patches)


@functools.cache
def _test_sets() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The frozen test sets as (degraded, clean) N x 3 x 63 x 63 tensors, read once per process."""
    sets = {difficulty: load_test_set(difficulty) for difficulty in DIFFICULTIES}
    return {difficulty: (to_nchw(s.degraded), to_nchw(s.clean)) for difficulty, s in sets.items()}


def markdown(rows: dict[str, dict], tools: Sequence[int], authors: str | None) -> str:
    """The tables of :func:`main`'s rows (label to :func:`measure`'s result); ``authors`` is the authors' row's
    label, whose numbers set the floors (a miss is marked ``*``)."""
    floors = rows.get(authors) if authors else None
    lines = []
    for index in tools:
        key, spec = str(index + 1), TOOL_SPECS[index]
        lines += [f"Tool {key} ({spec.name}), gain in dB: alone on its band, then first step on each frozen test set"
                  + (f" (floors: alone at least 90% of the authors' or theirs where it is negative; first step at "
                     f"least theirs - {FIRST_STEP_SLACK_DB} dB; * marks a miss):" if floors else ":"), "",
                  "| candidate | alone | " + " | ".join(DIFFICULTIES) + " |", "|---|---|" + "---|" * len(DIFFICULTIES)]
        for label, row in rows.items():
            tool = row["tools"][key]
            theirs = floors["tools"][key] if floors and label != authors else None
            alone = f"{tool['single']:+.2f}" + ("" if theirs is None or meets_bar(tool["single"], theirs["single"])
                                                else " *")
            steps = [f"{tool['first_step'][d]:+.2f}" + (
                "" if theirs is None or tool["first_step"][d] >= theirs["first_step"][d] - FIRST_STEP_SLACK_DB
                else " *") for d in DIFFICULTIES]
            lines.append(f"| {label} | {alone} | " + " | ".join(steps) + " |")
        lines.append("")
    with_greedy = {label: row["greedy_oracle"] for label, row in rows.items() if "greedy_oracle" in row}
    if with_greedy:
        their_greedy = with_greedy.get(authors) if authors else None
        lines += ["Greedy oracle's gain (dB) of the base toolbox with each candidate's tools swapped in"
                  + (f" (share of the authors' toolbox's; floor {GREEDY_SHARE:.0%}):" if their_greedy else ":"), "",
                  "| candidate | " + " | ".join(DIFFICULTIES) + " |", "|---|" + "---|" * len(DIFFICULTIES)]
        for label, greedy in with_greedy.items():
            cells = [f"{greedy[d]:+.3f}" + (f" ({greedy[d] / their_greedy[d]:.0%})"
                                            if their_greedy and label != authors else "") for d in DIFFICULTIES]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def parse_run(text: str) -> tuple[Path, str]:
    """``RUN`` or ``RUN=LABEL`` as (folder, label)."""
    folder, _, label = text.partition("=")
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"run folder {folder} does not exist")
    return path, label or path.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tool_candidates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training run folders of restore_gym.train_tools, RUN or RUN=LABEL")
    parser.add_argument("--tools", required=True, help="1-based tools to take from every run, e.g. 1,9")
    parser.add_argument("--base", default="v3", help="the toolbox the tools go into (default: %(default)s)")
    parser.add_argument("--official", default=str(DEFAULT_OFFICIAL), help="the authors' toolbox folder")
    parser.add_argument("--greedy", action="store_true", help="also the greedy oracle (a few minutes per row)")
    parser.add_argument("--patches", type=int, default=200, help="patches per tool alone on its band")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "tool_candidates"), help="folder for candidates.{json,md}")
    args = parser.parse_args(argv)
    try:
        tools = parse_tool_list(args.tools)
        runs = [parse_run(text) for text in args.runs]
    except ValueError as error:
        parser.error(str(error))
    base = Toolbox.resolve(args.base)
    candidates = {f"base ({args.base})": base}
    candidates.update({label: with_run_tools(base, path, tools) for path, label in runs})
    authors = None
    if Path(args.official).is_dir():
        authors = "authors'"
        candidates[authors] = Toolbox.from_official(args.official)
    else:
        print(f"the authors' tools are not at {args.official}: no floors")
    rows = {label: measure(toolbox, tools, args.patches, args.seed, args.greedy)
            for label, toolbox in candidates.items()}
    table = markdown(rows, tools, authors)
    print(table)
    out = Path(args.out)
    write_json_atomic(out / "candidates.json", {
        "benchmark": "tool_candidates", "base": args.base, "tools": [i + 1 for i in tools],
        "runs": {label: {"folder": path.name, "config": _run_config(path)} for path, label in runs},
        "patches_per_tool": args.patches, "seed": args.seed, "rows": rows, "provenance": provenance(),
    })
    write_text_atomic(out / "candidates.md", table)
    return 0


def _run_config(run: Path) -> dict | None:
    """The config a run of :mod:`restore_gym.train_tools` recorded in ``run/config.json``, if any (a prior
    toolbox given as a file by its name)."""
    path = run / "config.json"
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    prior = recorded.get("config", {}).get("prior_toolbox")
    if prior and prior.endswith(".pt"):  # a file: its name only, no path of the machine that trained
        recorded["config"]["prior_toolbox"] = Path(prior).name
    return recorded


if __name__ == "__main__":
    raise SystemExit(main())
