import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from restore_gym.parallel import run_in_processes


def test_results_come_back_in_order_and_errors_are_raised():
    done = []
    assert run_in_processes(math.pow, [(2, 3), (3, 2), (5, 0)], jobs=2, on_done=done.append) == [8.0, 9.0, 1.0]
    assert sorted(done) == [0, 1, 2]
    with pytest.raises(ValueError, match="math domain error"):
        run_in_processes(math.sqrt, [(4,), (-1,)], jobs=2)
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_in_processes(math.sqrt, [(4,)], jobs=0)


def count_up_to(steps: int, progress) -> int:
    for step in range(steps):
        progress(step + 1)
    return steps


def test_the_jobs_progress_reaches_this_process():
    reports = []
    assert run_in_processes(count_up_to, [(3,), (5,)], jobs=2, on_progress=lambda i, a: reports.append((i, a))) \
        == [3, 5]
    assert [a for i, a in reports if i == 0] == [1, 2, 3] and [a for i, a in reports if i == 1] == [1, 2, 3, 4, 5]


PARENT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    from restore_gym.parallel import run_in_processes


    def sleep_long(folder):
        Path(folder, f"{os.getpid()}.pid").write_text("")
        time.sleep(300)


    if __name__ == "__main__":
        run_in_processes(sleep_long, [(sys.argv[1],)] * 3, jobs=2)
""")


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_workers_do_not_outlive_their_parent(tmp_path, signum):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})  # this checkout's restore_gym
    workers: list[int] = []
    try:
        assert wait_until(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 120), "the workers never started"
        workers = [int(path.stem) for path in tmp_path.glob("*.pid")]
        parent.send_signal(signum)
        assert parent.wait(timeout=10) == (128 + signum if signum == signal.SIGTERM else -signum)
        assert wait_until(lambda: not any(running(pid) for pid in workers), 5), "a worker outlived its parent"
    finally:
        for pid in [parent.pid, *workers]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10)
