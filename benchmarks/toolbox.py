"""Per-tool quality: PSNR gain of our tools and of the authors' tools, alone and where the MDP uses them.

Two measurements, each for our toolbox and (when present) the authors':

1. Single distortions: for each tool, patches of the built-in test split distorted by that tool's family
   alone, with a value drawn uniformly in its band (degraded inside their margin, as everywhere else): the
   input PSNR, the gain of our tool and of the authors' on the same patches, and ours as a percentage of
   theirs. The bar: at least 90% of the authors' gain, or, where their tool loses PSNR on its own band, at
   least their gain.
2. Where tools work: on each frozen test set, every tool's mean first-step gain (each tool applied once to
   every test patch) and the greedy oracle's gain (best tool per step against the clean patch, up to three,
   as :mod:`restore_gym.baselines` runs it), also step by step (each step's gain and the tools it chose).
   Floors: each tool's first-step gain at least the authors' tool's minus :data:`FIRST_STEP_SLACK_DB`, and
   the greedy oracle at least :data:`GREEDY_SHARE` of its gain with the authors' toolbox, on every test set.

The authors' tools are read from
``../shared/reference/rl-restore-official/toolbox`` (or ``--official``); without them only ours is
measured. Writes ``benchmarks/results/toolbox.json`` and ``toolbox.md``.

    python -m benchmarks.toolbox [--toolbox PATH] [--patches 200] [--seed 0] [--no-mdp]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from restore_gym.baselines import BASELINES, all_tool_psnrs
from restore_gym.data import PATCH_SIZE, BuiltinImages, load_test_set, to_nchw
from restore_gym.degrade import DIFFICULTIES, DegradationParams
from restore_gym.engine import MAX_TOOLS, STATE_RANGE
from restore_gym.evaluation import evaluate
from restore_gym.metrics import psnr_batch
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.tool_data import sample_band_batch
from restore_gym.toolbox import TOOL_SPECS, Toolbox, ToolSpec

RESULTS = Path(__file__).parent / "results"
DEFAULT_OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rl-restore-official" / "toolbox"
FIRST_STEP_SLACK_DB = 0.3
GREEDY_SHARE = 0.9


def single_distortion(spec: ToolSpec, rng: np.random.Generator) -> DegradationParams:
    """Only ``spec``'s family, drawn uniformly in its band; the other two families are off."""
    value = float(rng.uniform(*spec.band))
    return DegradationParams(
        levels=(0, 0, 0),
        blur_sigma=value if spec.family == "blur" else 0.0,
        noise_sigma=value if spec.family == "noise" else 0.0,
        jpeg_quality=int(round(value)) if spec.family == "jpeg" else 100,
    )


def band_patches(spec: ToolSpec, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` (distorted, clean) 63x63 test-split patches for ``spec``'s band, as N x 3 x 63 x 63 tensors."""
    rng = np.random.default_rng([seed, spec.index])
    return sample_band_batch(BuiltinImages("test"), spec, count, PATCH_SIZE, rng, draw=single_distortion)


def tool_gain(toolbox: Toolbox, index: int, distorted: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR gain (dB) of tool ``index`` over its input, outputs unclipped as in the authors' system."""
    with torch.inference_mode():
        out = toolbox.run_tool(index, distorted)
    return float((psnr_batch(out, clean) - psnr_batch(distorted, clean)).mean())


def meets_bar(ours: float, theirs: float | None) -> bool | None:
    """At least 90% of the authors' gain; where their tool loses PSNR on its own band, at least theirs."""
    if theirs is None:
        return None
    return ours >= 0.9 * theirs if theirs > 0 else ours >= theirs


def run(toolbox: Toolbox, official: Toolbox | None, patches: int, seed: int) -> list[dict]:
    """One row per tool: input PSNR, our gain, the authors' gain and ours as a percentage of theirs."""
    rows = []
    for spec in TOOL_SPECS:
        distorted, clean = band_patches(spec, patches, seed)
        ours = tool_gain(toolbox, spec.index, distorted, clean)
        theirs = tool_gain(official, spec.index, distorted, clean) if official is not None else None
        rows.append({
            "tool": spec.index + 1,
            "name": spec.name,
            "band": list(spec.band),
            "input_psnr": float(psnr_batch(distorted, clean).mean()),
            "ours_gain": ours,
            "official_gain": theirs,
            "percent_of_official": 100.0 * ours / theirs if theirs is not None and theirs > 0 else None,
            "meets_bar": meets_bar(ours, theirs),
        })
    return rows


def first_step_gains(toolbox: Toolbox, difficulty: str) -> torch.Tensor:
    """PSNR gain (dB, N x 12) of each tool applied once to each patch of the frozen test set of ``difficulty``."""
    test_set = load_test_set(difficulty)
    degraded, clean = to_nchw(test_set.degraded), to_nchw(test_set.clean)
    return all_tool_psnrs(toolbox, degraded, clean) - psnr_batch(degraded, clean).unsqueeze(1)


def where_theirs_win(ours: torch.Tensor, theirs: torch.Tensor) -> list[dict]:
    """For each tool, the patches on which the authors' tool is their best first step: how many, the mean gain
    of their tool and of ours there, and of our best tool there (the greedy oracle's first step is its best)."""
    pick = theirs.argmax(dim=1)
    rows = []
    for spec in TOOL_SPECS:
        mask = pick == spec.index
        if mask.any():
            rows.append({"tool": spec.index + 1, "patches": int(mask.sum()),
                         "authors": float(theirs[mask, spec.index].mean()),
                         "ours": float(ours[mask, spec.index].mean()),
                         "our_best": float(ours[mask].max(dim=1).values.mean())})
    return rows


@torch.inference_mode()
def greedy_oracle(toolbox: Toolbox, difficulty: str, max_patches: int | None = None) -> dict:
    """The greedy oracle with ``toolbox`` on the frozen test set of ``difficulty`` (its first ``max_patches``): its
    mean gain (dB), and step by step the mean gain over all patches (its chains replayed, states bounded as in the
    environment), how many patches took a step and how often each tool was chosen (patches, not shares)."""
    report = evaluate(BASELINES["greedy-oracle"](toolbox, difficulty), difficulty, toolbox, max_patches=max_patches)
    test_set = load_test_set(difficulty)
    state, clean = to_nchw(test_set.degraded[:max_patches]), to_nchw(test_set.clean[:max_patches])
    chains = report["per_patch"]["chain"]
    psnr_now, step_gains, acting = psnr_batch(state, clean), [], []
    for step in range(MAX_TOOLS):
        rows = [n for n, chain in enumerate(chains) if len(chain) > step]
        acting.append(len(rows))
        if rows:
            index = torch.tensor(rows)
            state[index] = toolbox(state[index], [chains[n][step] for n in rows]).clamp(*STATE_RANGE)
        psnr_next = psnr_batch(state, clean)
        step_gains.append(float((psnr_next - psnr_now).mean()))
        psnr_now = psnr_next
    return {"gain": report["metrics"]["psnr_gain"], "step_gains": step_gains, "patches_acting": acting,
            "tools_per_step": report["tool_usage"]["per_step"]}


def mdp_run(toolbox: Toolbox, official: Toolbox | None) -> dict:
    """Per difficulty: each tool's first-step gain and the greedy oracle's gain, ours and the authors', with the
    floors of the module docstring."""
    result = {}
    for difficulty in DIFFICULTIES:
        gains, greedy = first_step_gains(toolbox, difficulty), greedy_oracle(toolbox, difficulty)
        ours = gains.mean(dim=0).tolist()
        row = {"first_step": {"ours": ours}, "greedy_oracle": {"ours": greedy["gain"]},
               "greedy_steps": {"ours": greedy}}
        if official is not None:
            their_gains, their_greedy = first_step_gains(official, difficulty), greedy_oracle(official, difficulty)
            theirs = their_gains.mean(dim=0).tolist()
            floor = [o >= t - FIRST_STEP_SLACK_DB for o, t in zip(ours, theirs)]
            row["first_step"].update(authors=theirs, floor_met=floor)
            row["where_theirs_win"] = where_theirs_win(gains, their_gains)
            row["greedy_oracle"].update(authors=their_greedy["gain"], share=greedy["gain"] / their_greedy["gain"],
                                        floor_met=greedy["gain"] >= GREEDY_SHARE * their_greedy["gain"])
            row["greedy_steps"]["authors"] = their_greedy
        result[difficulty] = row
    return result


def mdp_markdown(result: dict) -> str:
    """The first-step and greedy-oracle tables of :func:`mdp_run` as Markdown."""
    official = "authors" in next(iter(result.values()))["first_step"]
    tools = " | ".join(f"t{spec.index + 1}" for spec in TOOL_SPECS)
    lines = [f"Mean first-step gain (dB) of each tool on the frozen test sets{', ours / authors' if official else ''}"
             f"{f' (floor: ours at least theirs - {FIRST_STEP_SLACK_DB} dB; * marks a miss)' if official else ''}:",
             "", f"| test set | {tools} |", "|---|" + "---|" * len(TOOL_SPECS)]
    for difficulty, row in result.items():
        step = row["first_step"]
        cells = [f"{o:+.2f}" + (f" / {t:+.2f}{'' if met else ' *'}" if official else "")
                 for o, t, met in zip(step["ours"], step.get("authors", step["ours"]),
                                      step.get("floor_met", [True] * len(TOOL_SPECS)))]
        lines.append(f"| {difficulty} | " + " | ".join(cells) + " |")
    lines += ["", "Greedy oracle's gain (dB) on the frozen test sets" + (
        f" (floor: ours at least {GREEDY_SHARE:.0%} of it with the authors' toolbox):" if official else ":"), ""]
    lines += ["| test set | ours | authors' toolbox | share | floor |", "|---|---|---|---|---|"] if official else [
        "| test set | ours |", "|---|---|"]
    for difficulty, row in result.items():
        greedy = row["greedy_oracle"]
        lines.append(f"| {difficulty} | {greedy['ours']:+.3f} | {greedy['authors']:+.3f} | {greedy['share']:.0%} | "
                     f"{'met' if greedy['floor_met'] else 'MISSED'} |" if official else
                     f"| {difficulty} | {greedy['ours']:+.3f} |")
    return "\n".join(lines + greedy_steps_markdown(result))


def greedy_steps_markdown(result: dict) -> list[str]:
    """The greedy oracle step by step: the mean gain of each step over all patches (patches taking it) and the
    tools chosen at each step, per test set and toolbox."""
    tools = " | ".join(f"t{spec.index + 1}" for spec in TOOL_SPECS)
    lines = ["", "Greedy oracle step by step: each step's mean gain over all patches (dB; patches that took it):", "",
             "| test set | toolbox | " + " | ".join(f"step {k + 1}" for k in range(MAX_TOOLS)) + " | total |",
             "|---|---|" + "---|" * (MAX_TOOLS + 1)]
    usage = ["", "Tools the greedy oracle chose, per step (patches):", "", f"| test set | toolbox | step | {tools} |",
             "|---|---|---|" + "---|" * len(TOOL_SPECS)]
    for difficulty, row in result.items():
        for who, steps in row["greedy_steps"].items():
            cells = [f"{gain:+.3f} ({n})" for gain, n in zip(steps["step_gains"], steps["patches_acting"])]
            lines.append(f"| {difficulty} | {who} | " + " | ".join(cells) + f" | {steps['gain']:+.3f} |")
            usage += [f"| {difficulty} | {who} | {k + 1} | " + " | ".join(str(n) for n in counts) + " |"
                      for k, counts in enumerate(steps["tools_per_step"])]
    return [*lines, *usage, *where_theirs_win_markdown(result)]


def where_theirs_win_markdown(result: dict) -> list[str]:
    """The table of :func:`where_theirs_win` per test set (empty without the authors' toolbox)."""
    if not any("where_theirs_win" in row for row in result.values()):
        return [""]
    lines = ["", "Where each of the authors' tools is their best first step (a tool's own ground): mean gain (dB) of "
             "their tool, of ours and of our best tool on those patches:", "",
             "| test set | tool | patches | authors' tool | our tool | our best tool | our best - theirs |",
             "|---|---|---|---|---|---|---|"]
    for difficulty, row in result.items():
        lines += [f"| {difficulty} | t{r['tool']} | {r['patches']} | {r['authors']:+.2f} | {r['ours']:+.2f} | "
                  f"{r['our_best']:+.2f} | {r['our_best'] - r['authors']:+.2f} |" for r in row["where_theirs_win"]]
    return [*lines, ""]


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| tool | band | input PSNR | our gain | authors' gain | ours / theirs | bar |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        theirs = f"{r['official_gain']:+.2f} dB" if r["official_gain"] is not None else "n/a"
        share = f"{r['percent_of_official']:.0f}%" if r["percent_of_official"] is not None else "n/a"
        bar = {True: "met", False: "MISSED", None: "n/a"}[r["meets_bar"]]
        band = f"{r['band'][0]:g}..{r['band'][1]:g}"
        psnr_in, ours = f"{r['input_psnr']:.2f} dB", f"{r['ours_gain']:+.2f} dB"
        cells = [f"{r['tool']} {r['name']}", band, psnr_in, ours, theirs, share, bar]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.toolbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toolbox", help="toolbox file to measure (default: the shipped pretrained tools)")
    parser.add_argument("--official", default=str(DEFAULT_OFFICIAL), help="the authors' toolbox folder")
    parser.add_argument("--patches", type=int, default=200, help="patches per tool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="folder for toolbox.json and toolbox.md")
    parser.add_argument("--no-mdp", action="store_true", help="only the single-distortion table")
    args = parser.parse_args(argv)
    toolbox = Toolbox.resolve(args.toolbox)
    official = Toolbox.from_official(args.official) if Path(args.official).is_dir() else None
    if official is None:
        print(f"the authors' tools are not at {args.official}: measuring ours only")
    rows = run(toolbox, official, args.patches, args.seed)
    table = markdown(rows)
    mdp = None if args.no_mdp else mdp_run(toolbox, official)
    if mdp is not None:
        table += "\n" + mdp_markdown(mdp)
    print(table)
    out = Path(args.out)
    write_json_atomic(out / "toolbox.json", {
        "benchmark": "toolbox", "patches_per_tool": args.patches, "seed": args.seed,
        "toolbox": {"file": Path(args.toolbox).name if args.toolbox else "pretrained", "version": toolbox.version,
                    "fingerprint": toolbox.fingerprint(), "metadata": toolbox.metadata},
        "rows": rows, "mdp": mdp, "provenance": provenance(),
    })
    write_text_atomic(out / "toolbox.md", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
