import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    """A seeded, untrained toolbox: the environment's mechanics do not depend on what the tools learned."""
    torch.manual_seed(0)
    return Toolbox()
