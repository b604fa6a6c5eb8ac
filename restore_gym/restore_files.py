"""``restore-gym restore IN [IN ...] --out DIR``: photo files restored whole by the agent.

``python -m restore_gym restore IN [IN ...] --out DIR [--mode vote|tiles] [--agent shipped|FILE|DIR]
[--toolbox NAME|FILE|DIR] [--device cpu|cuda] [--reference CLEAN ...] [--side-by-side] [--stride 48]
[--batch 16] [--no-progress]``

For every input (any size, PNG, JPEG, BMP, TIFF, ...; read by :func:`restore_gym.image_io.read_photo`:
EXIF orientation applied, grayscale, alpha and 16-bit handled) it writes into DIR:

- ``<name>.png``: the restored image, clipped to [0, 1] and quantized to 8 bits (grayscale written as
  grayscale, alpha put back);
- ``<name>.json``: the record of :func:`restore_gym.whole_image.restore_image` (mode, agent, toolbox
  fingerprint, per-step votes or per-patch chains, seconds) with the input's form; with ``--reference``, the
  PSNR and SSIM of the input and of the written image against the clean one (RGB, as written: 8 bits);
- with ``--side-by-side``, ``<name>-side-by-side.png``: input | restored (| clean).

``--reference`` is given once per input, in order. ``--agent``: ``shipped`` (default), an agent file or
checkpoint, or the folder of the authors' release holding ``model.index``; ``--toolbox``: a shipped variant, a
toolbox file, or a folder of the authors' tools (default: the shipped toolbox).

Bad input: an input that cannot be read (not an image, truncated), is smaller than one 63x63 patch, or whose
reference cannot be read or differs in size is named on stderr and skipped, and the others are restored; the exit
status is then 1. Before anything runs, an output that would overwrite an input or a reference, or two inputs
with one name, are refused (status 2). Every file is written atomically, so an interrupted run leaves the
files it wrote before whole, and a file it was writing as it was.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from restore_gym.allocator import retain_freed_memory
from restore_gym.degrade import PATCH_SIZE
from restore_gym.devices import resolve_device
from restore_gym.image_io import (
    ImageReadError,
    Photo,
    photo_size,
    quantize,
    read_photo,
    side_by_side,
    to_pillow,
    write_png,
)
from restore_gym.metrics import psnr_ssim
from restore_gym.records import write_json_atomic
from restore_gym.whole_image import MODES, PATCH_BATCH, TILE_STRIDE, resolve_agent, resolve_toolbox, restore_image

SIDE_BY_SIDE_SUFFIX = "-side-by-side"
# Blocks below these sizes come from malloc's heap and are kept for reuse (retain_freed_memory). Vote: a batch's
# activations, tens of MB of fixed shapes, which would otherwise be page-faulted afresh at every tile (a 24 MP photo
# spent 189 of its 597 CPU seconds in the kernel; 34 of 405 with this). Tiles: the batches' shapes vary (regions
# clipped at the border, sub-batches per tool), and a heap serving them grows by fragmentation (1 GB in 4 minutes on
# a 24 MP photo, also with glibc's default, which moves its threshold up to 32 MB); 4 MB keeps it flat.
HEAP_BLOCKS = {"vote": 128 << 20, "tiles": 4 << 20}


def output_paths(source: Path, out_dir: Path) -> dict[str, Path]:
    """Where the outputs of ``source`` go: ``image``, ``record`` and ``side_by_side``."""
    return {"image": out_dir / f"{source.stem}.png", "record": out_dir / f"{source.stem}.json",
            "side_by_side": out_dir / f"{source.stem}{SIDE_BY_SIDE_SUFFIX}.png"}


def check_plan(inputs: list[Path], references: list[Path] | None, out_dir: Path) -> None:
    """ValueError unless there is one reference per input (or none), no two inputs share a name and no output
    would overwrite an input or a reference."""
    if references is not None and len(references) != len(inputs):
        raise ValueError(f"--reference was given {len(references)} time(s) for {len(inputs)} input(s); give one "
                         "clean image per input, in order")
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem]} and {path} would both be written to {out_dir / path.stem}.png; "
                             "restore them into separate --out folders")
        stems[path.stem] = path
    protected = {p.resolve(): p for p in [*inputs, *(references or [])]}
    for path in inputs:
        for output in output_paths(path, out_dir).values():
            if output.resolve() in protected:
                raise ValueError(f"{output} would overwrite the input or reference {protected[output.resolve()]}; "
                                 "choose another --out folder")


def _check_reference(path: Path, photo: Photo) -> None:
    size = photo_size(path)
    if size != photo.size:
        raise ValueError(f"reference {path} is {size[0]}x{size[1]} pixels but the input is "
                         f"{photo.size[0]}x{photo.size[1]}; give the clean image of this input")


def restore_file(source: Path, out_dir: Path, args: argparse.Namespace, network: Any, toolbox: Any,
                 agent_record: dict[str, Any], reference: Path | None) -> dict[str, Any]:
    """Restore one file and write its outputs (see the module docstring); returns its record. ImageReadError or
    ValueError for an input or reference that cannot be used. The reference is read only after the restoration,
    and the restored float image is dropped once it is written, so that at most four photo-sized float arrays are
    held at once."""
    photo = read_photo(source)
    if min(photo.size) < PATCH_SIZE:
        raise ValueError(f"{source} is {photo.size[0]}x{photo.size[1]} pixels, smaller than one {PATCH_SIZE}x"
                         f"{PATCH_SIZE} patch of the agent; it cannot be restored")
    if reference is not None:
        _check_reference(reference, photo)
    start = time.perf_counter()
    result = restore_image(photo.rgb, network, toolbox, args.mode, args.device, args.stride, args.batch,
                           progress=not args.no_progress)
    restored, run_record = result.image, result.record
    del result
    paths = output_paths(source, out_dir)
    write_png(paths["image"], to_pillow(restored, photo.alpha, photo.grayscale))
    written = None
    if reference is not None or args.side_by_side:
        written = quantize(restored).astype(np.float32)  # the RGB as written
        written /= np.float32(255.0)
    del restored
    record = {"input": source.name, "output": paths["image"].name, **run_record, "agent": agent_record,
              "input_form": {"grayscale": photo.grayscale, "alpha": photo.alpha is not None,
                             "bit_depth": photo.bit_depth, "exif_orientation": photo.orientation},
              "output_form": "8-bit PNG, clipped to [0, 1]" + (", grayscale" if photo.grayscale else "")
                             + (", alpha re-attached" if photo.alpha is not None else "")}
    clean = read_photo(reference).rgb if reference is not None else None
    if clean is not None:
        psnr_in, ssim_in = psnr_ssim(photo.rgb, clean)
        psnr_out, ssim_out = psnr_ssim(written, clean)
        record["reference"] = {"file": reference.name, "psnr_input": psnr_in, "ssim_input": ssim_in,
                               "psnr": psnr_out, "ssim": ssim_out, "measured_on": "RGB as written (8 bits)"}
    if args.side_by_side:
        panels = [photo.rgb, written] + ([clean] if clean is not None else [])
        write_png(paths["side_by_side"], Image.fromarray(side_by_side(panels)))
        record["side_by_side"] = paths["side_by_side"].name
    record["wall_seconds"] = time.perf_counter() - start
    write_json_atomic(paths["record"], record)
    return record


def _summary(source: Path, record: dict[str, Any]) -> str:
    mode = record["mode"]
    how = (record["vote"]["chain_names"] if mode == "vote"
           else f"{record['tiles']['patches']} patches, {record['tiles']['tools_per_patch']:.2f} tools each")
    text = f"{source} -> {record['output']} ({mode}: {how}; {record['seconds']:.1f} s)"
    if "reference" in record:
        ref = record["reference"]
        text += (f"; PSNR {ref['psnr_input']:.2f} -> {ref['psnr']:.2f} dB, "
                 f"SSIM {ref['ssim_input']:.4f} -> {ref['ssim']:.4f}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``restore-gym restore``."""
    parser = argparse.ArgumentParser(prog="restore-gym restore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files to restore")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--mode", default="vote", choices=MODES, help="vote: the authors' patch vote, one chain for "
                        "the whole image (default); tiles: a toolchain per region (3 to 8 times slower)")
    parser.add_argument("--agent", default="shipped", help="shipped, an agent file, or the authors' model folder")
    parser.add_argument("--toolbox", default="shipped", help="a shipped variant, a toolbox file, or the authors' "
                        "toolbox folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--reference", action="append", metavar="CLEAN", help="the clean image of an input (once "
                        "per input, in order): PSNR and SSIM are reported")
    parser.add_argument("--side-by-side", action="store_true", help="also write input | restored (| clean)")
    parser.add_argument("--stride", type=int, default=TILE_STRIDE, help="tiles mode: pixels between patches (1..63)")
    parser.add_argument("--batch", type=int, default=PATCH_BATCH, help="tiles mode: patches restored at once "
                        "(bounds memory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns 0 when every input was restored, 1 when some were skipped."""
    parser = build_parser()
    args = parser.parse_args(argv)
    inputs = [Path(p) for p in args.inputs]
    references = [Path(p) for p in args.reference] if args.reference else None
    out_dir = Path(args.out)
    try:
        check_plan(inputs, references, out_dir)
        if not 1 <= args.stride <= PATCH_SIZE or args.batch < 1:
            raise ValueError(f"--stride must be in 1..{PATCH_SIZE} and --batch at least 1, got {args.stride} and "
                             f"{args.batch}")
        args.device = resolve_device(args.device)
        network, agent_record = resolve_agent(args.agent, args.device)
        toolbox = resolve_toolbox(args.toolbox, args.device)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    retain_freed_memory(HEAP_BLOCKS[args.mode])
    skipped = []
    for index, source in enumerate(inputs):
        try:
            record = restore_file(source, out_dir, args, network, toolbox, agent_record,
                                  references[index] if references else None)
        except (ImageReadError, ValueError) as error:
            skipped.append(source)
            print(f"skipped {source}: {error}", file=sys.stderr)
            continue
        print(_summary(source, record))
    if skipped:
        print(f"{len(skipped)} of {len(inputs)} input(s) skipped: {', '.join(map(str, skipped))}", file=sys.stderr)
        return 1
    return 0
