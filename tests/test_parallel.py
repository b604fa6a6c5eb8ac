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
