import atexit
import os
import shutil
import tempfile
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


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    """A seeded, untrained toolbox: the environment's mechanics do not depend on what the tools learned."""
    torch.manual_seed(0)
    return Toolbox()
