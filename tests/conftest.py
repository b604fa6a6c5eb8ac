import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Keep the suite away from the user's cache: frozen test sets are rebuilt in a private folder.
os.environ["RESTORE_GYM_CACHE"] = tempfile.mkdtemp(prefix="restore-gym-test-cache-")
atexit.register(shutil.rmtree, os.environ["RESTORE_GYM_CACHE"], ignore_errors=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_DIR = REPO_ROOT.parent / "shared" / "reference" / "rl-restore-official"
