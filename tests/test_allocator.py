import inspect
import platform
import resource
import subprocess
import sys

import numpy as np
import pytest

from restore_gym.allocator import retain_freed_memory
from restore_gym.parallel import run_in_processes

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")


def page_faults_of_reallocation() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        block = np.ones(50 * 2**20 // 8)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def faults_in_fresh_process(retain: bool) -> int:
    lines = ["import resource", "import numpy as np", inspect.getsource(page_faults_of_reallocation)]
    if retain:
        lines.insert(0, "from restore_gym.allocator import retain_freed_memory; assert retain_freed_memory()")
    code = "\n".join([*lines, "print(page_faults_of_reallocation())"])
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def test_freed_blocks_are_reused_without_new_page_faults():
    assert faults_in_fresh_process(True) * 3 < faults_in_fresh_process(False)


def test_worker_processes_retain_freed_memory():
    assert run_in_processes(page_faults_of_reallocation, [()], jobs=1)[0] * 3 < faults_in_fresh_process(False)


@pytest.mark.parametrize("threshold", [0, -1, 2**31])
def test_threshold_out_of_mallopt_range_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold must be between"):
        retain_freed_memory(threshold)
