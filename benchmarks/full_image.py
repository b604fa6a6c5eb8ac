"""Whole photos restored by each mode, by the best single tool and by the single networks.

The photos: the built-in test split (astronaut, chelsea, coffee) and the corpus's test split (when the corpus is
built), downscaled by ``--scale`` (default 1/3, the smallest scale of the test sets; Pillow's bicubic) to keep the
run modest on a 2-core CPU (the tiles mode costs about 5 tool runs per pixel per step). Each photo is degraded
whole with the paper's protocol, one draw per photo and difficulty from a fixed seed
(:func:`restore_gym.degrade.sample_params`, :func:`restore_gym.degrade.degrade`).

Methods: for the shipped agent with the shipped toolbox, and for the authors' agent with their tools when their
release is beside the project (``../shared/reference/rl-restore-official``): ``vote`` and ``tiles``
(:mod:`restore_gym.whole_image`) and the best single tool (the one with the best mean PSNR on the validation
patches of the train split, :func:`restore_gym.baselines.best_fixed_chain`) run on the whole photo; and the
single networks (DnCNN, VDSR, VDSR-s, the leaderboard's seed 0) on the whole photo. Every method runs in tiles.

Metrics per method and difficulty: mean PSNR and SSIM over the photos of the restored image as written (clipped
to [0, 1], 8 bits), the gain over the input, seconds per megapixel, and the peak resident memory of the process
that ran it (``VmHWM``; each (method, difficulty) runs in a fresh process, so it counts torch, the models and
the largest photo). The floors: on each difficulty, ``tiles`` gains more than ``vote``, and ``vote`` more than
the best single tool, for each agent.

    python -m benchmarks.full_image [--scale 0.333] [--out benchmarks/results]

Writes ``full_image.json`` and ``full_image.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restore_gym.baselines import best_fixed_chain, validation_set
from restore_gym.data import BuiltinImages, rescale
from restore_gym.degrade import DIFFICULTIES, PATCH_SIZE, degrade, sample_params
from restore_gym.image_io import quantize
from restore_gym.metrics import psnr_ssim
from restore_gym.networks import load_network
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.sources import resolve_source
from restore_gym.toolbox import TOOL_SPECS
from restore_gym.whole_image import apply_network, resolve_agent, resolve_toolbox, restore_image

RESULTS = Path(__file__).parent / "results"
OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rl-restore-official"
NETWORKS = Path(__file__).parent / "results" / "leaderboard" / "models" / "single"
SEED = 20180620
AGENT_METHODS = ("vote", "tiles", "best-tool")
NETWORK_METHODS = ("dncnn", "vdsr", "vdsr-s")


def photos(scale: float) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) of the built-in and corpus test photos, downscaled by ``scale`` (those still holding a
    63 x 63 patch)."""
    sources = [BuiltinImages("test")]
    try:
        sources.append(resolve_source("corpus", "test"))
    except FileNotFoundError as error:
        print(f"without the corpus's test photos: {error}", file=sys.stderr)
    scaled = [(f"{source.name}:{name}", rescale(image, scale)) for source in sources for name, image in source.images()]
    return [(name, image) for name, image in scaled if min(image.shape[:2]) >= PATCH_SIZE]


def degraded_set(difficulty: str, scale: float) -> list[dict[str, Any]]:
    """Every photo with its one degradation draw at ``difficulty`` (float32 in [0, 1])."""
    out = []
    for index, (name, image) in enumerate(photos(scale)):
        rng = np.random.default_rng([SEED, DIFFICULTIES.index(difficulty), index])
        clean = image.astype(np.float32) / np.float32(255.0)
        params = sample_params(difficulty, rng)
        out.append({"name": name, "clean": clean, "degraded": degrade(clean, params, rng), "params": params.as_dict()})
    return out


def agents() -> dict[str, tuple[str | None, str | None]]:
    """The agents compared, each with its toolbox: (agent, toolbox) names for :mod:`restore_gym.whole_image`."""
    found = {"shipped": (None, None)}
    if (OFFICIAL / "models" / "model.index").is_file():
        found["authors"] = (str(OFFICIAL / "models"), str(OFFICIAL / "toolbox"))
    return found


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _restorer(method: str, difficulty: str) -> tuple[Any, dict[str, Any]]:
    """A function degraded image -> restored image for ``method`` (``AGENT:MODE`` or a network), and details."""
    if method in NETWORK_METHODS:
        network = load_network(NETWORKS / method / "seed0" / "network.pt")[0]
        return (lambda image: apply_network(image, network)), {"network": f"{method} seed 0"}
    agent_name, mode = method.split(":")
    agent, toolbox_name = agents()[agent_name]
    toolbox = resolve_toolbox(toolbox_name)
    if mode == "best-tool":
        (tool,), mean = best_fixed_chain(toolbox, validation_set(difficulty), 1, exact_length=True)
        return (lambda image: apply_network(image, toolbox.tools[tool])), {
            "tool": TOOL_SPECS[tool].name, "validation_mean_psnr": mean}
    network = resolve_agent(agent)[0]
    return (lambda image: restore_image(image, network, toolbox, mode).image), {}


def worker(method: str, difficulty: str, data: Path, out: Path) -> None:
    """Run ``method`` on the degraded photos in ``data`` (an .npz per photo) and write its results to ``out``."""
    restore, details = _restorer(method, difficulty)
    rows, seconds, pixels = [], 0.0, 0
    for path in sorted(data.glob("*.npz")):
        with np.load(path) as stored:
            clean, degraded = stored["clean"], stored["degraded"]
        start = time.perf_counter()
        restored = restore(degraded)
        seconds += time.perf_counter() - start
        pixels += degraded.shape[0] * degraded.shape[1]
        psnr, ssim = psnr_ssim(quantize(restored).astype(np.float32) / np.float32(255.0), clean)
        psnr_in, ssim_in = psnr_ssim(degraded, clean)
        rows.append({"photo": path.stem, "psnr": psnr, "ssim": ssim, "psnr_input": psnr_in, "ssim_input": ssim_in})
    write_json_atomic(out, {"method": method, "difficulty": difficulty, "details": details, "photos": rows,
                            "seconds": seconds, "megapixels": pixels / 1e6, "peak_rss_mib": peak_rss_mib(),
                            "torch_threads": torch.get_num_threads()})


def run(scale: float, out_dir: Path) -> dict[str, Any]:
    """Every method on every difficulty, each in its own process; returns the JSON-ready results."""
    methods = [f"{agent}:{mode}" for agent in agents() for mode in AGENT_METHODS]
    methods += [m for m in NETWORK_METHODS if (NETWORKS / m / "seed0" / "network.pt").is_file()]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="full-image-") as tmp:
        for difficulty in DIFFICULTIES:
            data = Path(tmp) / difficulty
            data.mkdir()
            photos_here = degraded_set(difficulty, scale)
            for index, photo in enumerate(photos_here):
                np.savez(data / f"{index}", clean=photo["clean"], degraded=photo["degraded"])
            for method in methods:
                out = Path(tmp) / f"{method}-{difficulty}.json"
                command = [sys.executable, "-m", "benchmarks.full_image", "--worker", method, difficulty, str(data),
                           str(out)]
                subprocess.run(command, check=True, cwd=Path(__file__).parents[1])
                result = json.loads(out.read_text())
                for row, photo in zip(result["photos"], photos_here):
                    row.update(photo=photo["name"], degradation=photo["params"])
                results.append(result)
                summary = summarize(result)
                print(f"{difficulty} {method}: {summary['psnr']:.3f} dB, {summary['s_per_mp']:.1f} s/MP, "
                      f"{summary['peak_rss_mib']:.0f} MiB", flush=True)
    report = {"scale": scale, "seed": SEED, "results": results, "floors": floors(results), "provenance": provenance()}
    write_json_atomic(out_dir / "full_image.json", report)
    write_text_atomic(out_dir / "full_image.md", markdown(report))
    return report


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Means over the photos of one (method, difficulty) result."""
    rows = result["photos"]
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
            "gain": float(np.mean([r["psnr"] - r["psnr_input"] for r in rows])),
            "psnr_input": float(np.mean([r["psnr_input"] for r in rows])),
            "s_per_mp": result["seconds"] / result["megapixels"], "peak_rss_mib": result["peak_rss_mib"]}


def floors(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent and difficulty: whether tiles gains more than vote and vote more than the best single tool."""
    gains = {(r["method"], r["difficulty"]): summarize(r)["gain"] for r in results}
    rows = []
    for agent in sorted({m.split(":")[0] for m, _ in gains if ":" in m}):
        for difficulty in DIFFICULTIES:
            tiles, vote, best = (gains[(f"{agent}:{mode}", difficulty)] for mode in ("tiles", "vote", "best-tool"))
            rows.append({"agent": agent, "difficulty": difficulty, "tiles_gain": tiles, "vote_gain": vote,
                         "best_tool_gain": best, "tiles_over_vote": tiles > vote, "vote_over_best_tool": vote > best})
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The benchmark's tables."""
    lines = [f"Whole photos (built-in and corpus test photos at scale {report['scale']:g}), one degradation draw per "
             "photo and difficulty; PSNR and SSIM of the image as written (clipped, 8 bits), means over the photos; "
             "s/MP: seconds per megapixel; peak: the process's peak resident memory (VmHWM).", "",
             "| difficulty | method | PSNR (dB) | SSIM | gain (dB) | s/MP | peak (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for result in report["results"]:
        s = summarize(result)
        lines.append(f"| {result['difficulty']} | {result['method']} | {s['psnr']:.3f} | {s['ssim']:.4f} | "
                     f"{s['gain']:+.3f} | {s['s_per_mp']:.1f} | {s['peak_rss_mib']:.0f} |")
    lines += ["", "Floors (gain over the input, dB): tiles > vote > best single tool.", "",
              "| agent | difficulty | tiles | vote | best tool | tiles > vote | vote > best tool |",
              "|---|---|---|---|---|---|---|"]
    for row in report["floors"]:
        lines.append(f"| {row['agent']} | {row['difficulty']} | {row['tiles_gain']:+.3f} | {row['vote_gain']:+.3f} | "
                     f"{row['best_tool_gain']:+.3f} | {'met' if row['tiles_over_vote'] else 'NOT met'} | "
                     f"{'met' if row['vote_over_best_tool'] else 'NOT met'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one of its runs)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.full_image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1 / 3, help="downscaling of the photos (1: full size)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for full_image.json and full_image.md")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "DIFFICULTY", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, difficulty, data, out = args.worker
        worker(method, difficulty, Path(data), Path(out))
        return 0
    report = run(args.scale, Path(args.out))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
