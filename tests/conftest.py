import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import torch

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
