import math

import pytest

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
