"""Independent jobs in worker processes, each process with an equal share of torch's CPU threads.

Training runs of separate tools, seeds or networks share nothing but the cores; on a CPU, two processes of
one thread each train two models faster than one process of two threads trains them in turn.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from restore_gym.allocator import retain_freed_memory


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    retain_freed_memory()


def run_in_processes(
    function: Callable[..., Any],
    arguments: Sequence[tuple],
    jobs: int,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[function(*args) for args in arguments]``, computed in ``jobs`` spawned worker processes.

    ``function`` and the arguments must be picklable (``function`` defined at a module's top level). Each
    worker gets ``torch.get_num_threads() // jobs`` threads (at least one) and keeps its freed memory
    (:func:`~restore_gym.allocator.retain_freed_memory`). ``on_done(i)`` is called in this
    process as job ``i`` finishes. The first job to fail cancels those not started and its error is raised
    once the running ones have finished.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")  # a forked torch process may deadlock in its thread pools
    results: list[Any] = [None] * len(arguments)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(function, *args): index for index, args in enumerate(arguments)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(futures[future])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results
