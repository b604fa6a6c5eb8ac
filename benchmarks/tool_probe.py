"""What each tool copes with: its PSNR gain as a function of the distortions that come with its own.

Every tool gets patches of the built-in test split distorted inside its own band (value drawn uniformly
in the band, as in training) plus one other family at a fixed strength: noise sigma, JPEG quality or
blur sigma over a grid, the third family off. Probing the authors' released tools this way shows which
co-occurring distortions their training data held (a tool whose gain holds up under a distortion has
seen it); probing ours shows where they fail. Writes ``benchmarks/results/tool_probe.json`` and ``.md``.

    python -m benchmarks.tool_probe [--toolbox PATH] [--official DIR] [--patches 96]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from restore_gym.data import BuiltinImages
from restore_gym.degrade import PATCH_SIZE, DegradationParams
from restore_gym.metrics import psnr_batch
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.tool_data import sample_band_batch
from restore_gym.toolbox import TOOL_SPECS, Toolbox, ToolSpec

RESULTS = Path(__file__).parent / "results"
DEFAULT_OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rl-restore-official" / "toolbox"

# The co-occurring strengths probed per family; the first entry of each is "off".
GRIDS: dict[str, tuple[float, ...]] = {
    "noise": (0.0, 5.0, 10.0, 20.0, 30.0, 50.0),
    "jpeg": (100.0, 80.0, 60.0, 40.0, 20.0, 10.0),
    "blur": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
}
UNIT = {"noise": "noise", "jpeg": "q", "blur": "blur"}


def conditions(spec: ToolSpec) -> list[tuple[str, float]]:
    """The (family, value) pairs probed for ``spec``: each other family over its grid, "off" once."""
    others = [family for family in GRIDS if family != spec.family]
    pairs = [("none", 0.0)]
    for family in others:
        pairs += [(family, value) for value in GRIDS[family][1:]]
    return pairs


def condition_label(family: str, value: float) -> str:
    """``"alone"`` or e.g. ``"noise 20"``, ``"q40"``."""
    if family == "none":
        return "alone"
    return f"q{value:g}" if family == "jpeg" else f"{UNIT[family]} {value:g}"


def probe_draw(spec: ToolSpec, family: str, value: float):
    """A distortion draw: ``spec``'s family uniform in its band, ``family`` at ``value``, the third off."""
    def draw(_spec: ToolSpec, rng: np.random.Generator) -> DegradationParams:
        own = float(rng.uniform(*spec.band))
        values = {"blur": 0.0, "noise": 0.0, "jpeg": 100.0, spec.family: own}
        if family != "none":
            values[family] = value
        return DegradationParams(levels=(0, 0, 0), blur_sigma=values["blur"], noise_sigma=values["noise"],
                                 jpeg_quality=int(round(values["jpeg"])))
    return draw


@torch.inference_mode()
def gain(toolbox: Toolbox, index: int, distorted: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR gain (dB) of tool ``index``, output unclipped."""
    return float((psnr_batch(toolbox.run_tool(index, distorted), clean) - psnr_batch(distorted, clean)).mean())


def run(toolboxes: dict[str, Toolbox], patches: int, seed: int) -> list[dict]:
    """One row per (tool, condition): the input PSNR and each toolbox's gain on the same patches."""
    source = BuiltinImages("test")
    rows = []
    for spec in TOOL_SPECS:
        for k, (family, value) in enumerate(conditions(spec)):
            rng = np.random.default_rng([seed, spec.index, k])
            distorted, clean = sample_band_batch(source, spec, patches, PATCH_SIZE, rng,
                                                 draw=probe_draw(spec, family, value))
            row = {"tool": spec.index + 1, "name": spec.name, "with": family, "value": value,
                   "condition": condition_label(family, value),
                   "input_psnr": float(psnr_batch(distorted, clean).mean())}
            row.update({f"{name}_gain": gain(toolbox, spec.index, distorted, clean)
                        for name, toolbox in toolboxes.items()})
            rows.append(row)
    return rows


def markdown(rows: list[dict], names: Sequence[str]) -> str:
    """Per tool family, a table of tools by co-occurring condition; cells ``ours / theirs`` gains in dB."""
    out = []
    for family in ("blur", "noise", "jpeg"):
        tools = [spec for spec in TOOL_SPECS if spec.family == family]
        labels = [condition_label(f, v) for f, v in conditions(tools[0])]
        out.append(f"Gain (dB, {' / '.join(names)}) of the {family} tools, own distortion in band, plus:\n")
        out.append("| tool | " + " | ".join(labels) + " |")
        out.append("|---|" + "---|" * len(labels))
        for spec in tools:
            cells = []
            for label in labels:
                row = next(r for r in rows if r["tool"] == spec.index + 1 and r["condition"] == label)
                cells.append(" / ".join(f"{row[f'{name}_gain']:+.2f}" for name in names))
            out.append(f"| {spec.index + 1} {spec.name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tool_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toolbox", help="our toolbox file (default: the shipped pretrained tools)")
    parser.add_argument("--official", default=str(DEFAULT_OFFICIAL), help="the authors' toolbox folder")
    parser.add_argument("--patches", type=int, default=96, help="patches per tool and condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="folder for tool_probe.json and tool_probe.md")
    args = parser.parse_args(argv)
    toolboxes = {"ours": Toolbox.resolve(args.toolbox)}
    if Path(args.official).is_dir():
        toolboxes["authors"] = Toolbox.from_official(args.official)
    else:
        print(f"the authors' tools are not at {args.official}: probing ours only")
    rows = run(toolboxes, args.patches, args.seed)
    table = markdown(rows, list(toolboxes))
    print(table)
    write_json_atomic(Path(args.out) / "tool_probe.json", {
        "benchmark": "tool_probe", "patches": args.patches, "seed": args.seed,
        "toolbox": {"file": Path(args.toolbox).name if args.toolbox else "pretrained",
                    "metadata": toolboxes["ours"].metadata},
        "rows": rows, "provenance": provenance(),
    })
    write_text_atomic(Path(args.out) / "tool_probe.md", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
