"""Independent jobs in worker processes, each process with an equal share of torch's CPU threads.

Training runs of separate tools, seeds or networks share nothing but the cores; on a CPU, two processes of
one thread each train two models faster than one process of two threads trains them in turn.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import partial
from typing import Any

import torch

from restore_gym.allocator import retain_freed_memory

PROGRESS_POLL_SECONDS = 0.5  # how often this process passes the jobs' progress reports on

_progress_queue: Any = None  # in a worker: where its jobs' progress reports go (None: no reports wanted)


def _init_worker(threads: int, progress_queue: Any) -> None:
    global _progress_queue
    torch.set_num_threads(threads)
    retain_freed_memory()
    _progress_queue = progress_queue


def _report(index: int, amount: float) -> None:
    _progress_queue.put((index, amount))


def _call(function: Callable[..., Any], index: int, args: tuple) -> Any:
    if _progress_queue is None:
        return function(*args)
    return function(*args, progress=partial(_report, index))


def _pass_on(progress_queue: Any, on_progress: Callable[[int, float], None]) -> None:
    while True:
        try:
            index, amount = progress_queue.get_nowait()
        except queue.Empty:
            return
        on_progress(index, amount)


def run_in_processes(
    function: Callable[..., Any],
    arguments: Sequence[tuple],
    jobs: int,
    on_done: Callable[[int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> list[Any]:
    """``[function(*args) for args in arguments]``, computed in ``jobs`` spawned worker processes.

    ``function`` and the arguments must be picklable (``function`` defined at a module's top level). Each
    worker gets ``torch.get_num_threads() // jobs`` threads (at least one) and keeps its freed memory
    (:func:`~restore_gym.allocator.retain_freed_memory`). ``on_done(i)`` is called in this
    process as job ``i`` finishes. With ``on_progress``, ``function`` is also given the keyword ``progress``,
    a function of one number that the job calls as it goes; each call becomes ``on_progress(i, amount)`` in
    this process while the jobs run, every one before this function returns (not always before job ``i``'s
    ``on_done``). The first job to fail cancels those not started and its error is raised once the running
    ones have finished.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")  # a forked torch process may deadlock in its thread pools
    progress_queue = context.Queue() if on_progress is not None else None
    results: list[Any] = [None] * len(arguments)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads, progress_queue)) as pool:
        futures = {pool.submit(_call, function, index, args): index for index, args in enumerate(arguments)}
        pending = set(futures)
        poll_seconds = PROGRESS_POLL_SECONDS if progress_queue is not None else None
        try:
            while pending:
                done, pending = wait(pending, poll_seconds, FIRST_COMPLETED)
                if progress_queue is not None:
                    _pass_on(progress_queue, on_progress)
                for future in done:
                    results[futures[future]] = future.result()
                    if on_done is not None:
                        on_done(futures[future])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if progress_queue is not None:  # the workers have exited, so every report is in the queue
        _pass_on(progress_queue, on_progress)
    return results
