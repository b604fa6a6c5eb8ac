"""The README's gallery: whole photos degraded | restored | clean, one picture per difficulty.

The built-in test photos at the full-image benchmark's scale, each degraded with that benchmark's draw
(:func:`benchmarks.full_image.degraded_set`), restored by the shipped agent and toolbox in ``--mode`` (default
vote). Rows of input | restored | clean, one row per photo, left-aligned on white.

    python -m benchmarks.gallery [--mode vote] [--scale 0.333]

Writes ``benchmarks/results/gallery/{mild,moderate,severe}.png`` and ``gallery.md`` (the PSNR of every row).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.full_image import RESULTS, degraded_set
from restore_gym.degrade import DIFFICULTIES
from restore_gym.image_io import side_by_side, write_png
from restore_gym.metrics import psnr_ssim
from restore_gym.records import write_text_atomic
from restore_gym.whole_image import MODES, resolve_agent, resolve_toolbox, restore_image

GAP = 8


def picture(rows: list[np.ndarray]) -> Image.Image:
    """uint8 rows of different widths stacked, left-aligned, ``GAP`` white pixels apart."""
    width = max(row.shape[1] for row in rows)
    canvas = np.full((sum(row.shape[0] for row in rows) + GAP * (len(rows) - 1), width, 3), 255, dtype=np.uint8)
    top = 0
    for row in rows:
        canvas[top:top + row.shape[0], :row.shape[1]] = row
        top += row.shape[0] + GAP
    return Image.fromarray(canvas)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the gallery (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="vote", choices=MODES)
    parser.add_argument("--scale", type=float, default=1 / 3)
    parser.add_argument("--out", default=str(RESULTS / "gallery"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    network, toolbox = resolve_agent(None)[0], resolve_toolbox(None)
    lines = [f"Shipped agent, mode {args.mode}; PSNR (dB) of input -> restored, per photo.", "",
             "| difficulty | photo | degradation (blur, noise, JPEG) | input | restored |", "|---|---|---|---|---|"]
    for difficulty in DIFFICULTIES:
        rows = []
        for photo in degraded_set(difficulty, args.scale):
            if not photo["name"].startswith("builtin:"):
                continue
            restored = restore_image(photo["degraded"], network, toolbox, args.mode).image
            rows.append(side_by_side([photo["degraded"], restored, photo["clean"]], gap=GAP))
            p = photo["params"]
            psnr_in, psnr_out = (psnr_ssim(np.clip(x, 0, 1), photo["clean"])[0] for x in (photo["degraded"], restored))
            name = photo["name"].split(":")[1]
            lines.append(f"| {difficulty} | {name} | {p['blur_sigma']:.2f}, {p['noise_sigma']:.1f}, "
                         f"{p['jpeg_quality']} | {psnr_in:.2f} | {psnr_out:.2f} |")
        write_png(out / f"{difficulty}.png", picture(rows))
        print(f"wrote {out / f'{difficulty}.png'}")
    write_text_atomic(out / "gallery.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
