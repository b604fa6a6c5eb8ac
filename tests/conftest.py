import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restore_gym import records
from restore_gym.toolbox import Toolbox

# Keep the suite away from the user's cache: frozen test sets are rebuilt in a private folder.
os.environ["RESTORE_GYM_CACHE"] = tempfile.mkdtemp(prefix="restore-gym-test-cache-")
atexit.register(shutil.rmtree, os.environ["RESTORE_GYM_CACHE"], ignore_errors=True)

# The suite's tensors are small: a second torch thread mostly waits, and on a busy machine it is several
# times slower than one.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The authors' released weights and samples: reference data beside the project, never inside it.
OFFICIAL_DIR = REPO_ROOT.parent / "shared" / "reference" / "rl-restore-official"


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder`` as TensorBoard reads them (the steps a resumed
    run purged are gone): tag -> [(step, value), ...] in the order written. Skips the test without tensorboard."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every value
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def write_decompression_bomb(path: Path, side: int = 20_000) -> None:
    """A tiny PNG whose header claims ``side`` x ``side`` RGB pixels (Pillow refuses it as a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def leave_a_killed_run_then_fill_the_disk(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put in ``folder`` what a killed run leaves (a temp file of ``records.write_atomic``, older than this process)
    and an earlier ``config.json`` holding ``{"earlier": true}``, then make every fsync fail as on a full disk.
    Returns the temp file."""
    stale = folder / ".checkpoint.pt.abcdefgh.tmp"
    stale.write_bytes(b"left by a killed run")
    os.utime(stale, (records._started - 60, records._started - 60))
    (folder / "config.json").write_text('{"earlier": true}')

    def disk_full(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "fsync", disk_full)
    return stale


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    """A seeded, untrained toolbox: the environment's mechanics do not depend on what the tools learned."""
    torch.manual_seed(0)
    return Toolbox()


# Source: ../shared/docs/rl-restore-reference.md (relative to the repository root), section "Reference numbers
# of the released system on its four sample patches per difficulty". (folder, input file, gt file) ->
# (input PSNR, chain taken by the official agent, its final PSNR, single-tool PSNRs of tools 1..12).
REFERENCE = {
    ("mild", "1_in.png", "1_gt.png"): (
        19.564, [7, 2, 12], 24.571,
        [20.71, 22.59, 22.62, 21.37, 21.12, 22.35, 23.29, 23.49, 21.10, 21.21, 21.66, 22.13],
    ),
    ("mild", "2_in.png", "2_gt.png"): (
        20.201, [7, 1, 7], 25.780,
        [22.08, 22.60, 20.81, 18.98, 21.75, 23.41, 25.10, 24.88, 21.73, 22.37, 23.03, 23.54],
    ),
    ("mild", "3_in.png", "3_gt.png"): (
        22.455, [5, 12], 24.280,
        [23.31, 22.66, 20.70, 18.79, 23.15, 23.33, 24.00, 23.70, 23.25, 23.52, 23.88, 23.97],
    ),
    ("mild", "4_in.png", "4_gt.png"): (
        17.883, [8, 1], 24.210,
        [19.25, 20.95, 19.13, 17.42, 19.15, 20.51, 22.92, 23.14, 19.13, 19.50, 19.91, 20.35],
    ),
    ("moderate", "1_in.png", "1_gt.png"): (
        18.512, [8, 1, 7], 24.520,
        [19.48, 21.54, 20.18, 17.94, 19.76, 20.73, 22.49, 22.75, 19.89, 20.07, 20.48, 20.98],
    ),
    ("moderate", "2_in.png", "2_gt.png"): (
        17.400, [8, 1], 20.989,
        [18.09, 19.81, 19.11, 17.22, 18.38, 19.05, 20.12, 20.16, 18.43, 18.54, 18.89, 19.14],
    ),
    ("moderate", "3_in.png", "3_gt.png"): (
        21.244, [7, 7], 28.476,
        [21.98, 22.63, 22.90, 21.76, 22.65, 24.37, 27.27, 28.00, 22.70, 23.13, 23.79, 24.54],
    ),
    ("moderate", "4_in.png", "4_gt.png"): (
        23.245, [10, 7], 25.046,
        [22.82, 21.25, 20.21, 18.54, 23.77, 24.37, 25.03, 25.30, 23.63, 23.83, 24.02, 24.51],
    ),
    ("severe", "1.png", "1_gt.png"): (
        18.262, [7, 2, 7], 20.797,
        [18.58, 19.35, 19.99, 18.90, 18.60, 18.76, 19.09, 19.16, 18.66, 18.69, 18.73, 18.86],
    ),
    ("severe", "2.png", "2_gt.png"): (
        22.748, [7, 7, 7], 26.214,
        [22.71, 22.77, 23.51, 22.02, 23.49, 24.34, 25.20, 25.85, 23.35, 23.43, 23.64, 24.28],
    ),
    ("severe", "3_in.png", "3_gt.png"): (
        17.644, [7, 2, 7], 20.033,
        [18.05, 18.70, 19.55, 18.04, 17.97, 17.99, 18.29, 18.31, 18.07, 18.06, 18.07, 18.17],
    ),
    ("severe", "4_in.png", "4_gt.png"): (
        21.012, [8, 10, 12], 26.624,
        [21.49, 22.22, 23.08, 23.26, 21.94, 22.93, 24.35, 25.59, 21.70, 22.11, 22.51, 23.08],
    ),
}


@pytest.fixture(scope="module")
def official() -> Path:
    if not OFFICIAL_DIR.is_dir():
        pytest.skip(f"the authors' released weights are not at {OFFICIAL_DIR}")
    return OFFICIAL_DIR


def read_png(path: Path) -> torch.Tensor:
    """A PNG as a 3 x H x W float32 tensor in [0, 1], RGB, in on-disk orientation."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def sample_batches(official: Path) -> tuple[torch.Tensor, torch.Tensor]:
    folder = official / "test-samples"
    inputs = [read_png(folder / f"{level}_in" / name) for level, name, _ in REFERENCE]
    targets = [read_png(folder / f"{level}_gt" / gt) for level, _, gt in REFERENCE]
    return torch.stack(inputs), torch.stack(targets)
