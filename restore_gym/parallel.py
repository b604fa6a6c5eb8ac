"""Independent jobs in worker processes, each process with an equal share of torch's CPU threads.

Training runs of separate tools, seeds or networks share nothing but the cores; on a CPU, two processes of
one thread each train two models faster than one process of two threads trains them in turn.

Workers never outlive the process that started them: each exits at once when that process is gone (killed,
even with SIGKILL) or is interrupted (Ctrl-C, SIGTERM), so no orphan goes on writing checkpoints.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch

from restore_gym.allocator import retain_freed_memory

PROGRESS_POLL_SECONDS = 0.5  # how often this process passes the jobs' progress reports on
PARENT_POLL_SECONDS = 0.5  # how often a worker checks that its parent is alive and has not told it to stop

_progress_queue: Any = None  # in a worker: where its jobs' progress reports go (None: no reports wanted)


def _watch_parent(parent: int, stop: Any) -> None:
    """Exit this worker at once when its parent process ``parent`` is gone (the worker has been re-parented)
    or has set ``stop``."""
    while os.getppid() == parent and not stop.wait(PARENT_POLL_SECONDS):
        pass
    os._exit(1)


def _init_worker(threads: int, progress_queue: Any, parent: int, stop: Any) -> None:
    global _progress_queue
    threading.Thread(target=_watch_parent, args=(parent, stop), name="watch-parent", daemon=True).start()
    torch.set_num_threads(threads)
    retain_freed_memory()
    _progress_queue = progress_queue


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the block, SIGTERM raises ``SystemExit(128 + SIGTERM)`` (the status a shell reports for it) where it
    would end the process at once, so that the workers are stopped on the way out; a handler of the caller's
    own, or a thread other than the main one, leaves SIGTERM as it is."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    ones have finished. An interruption of this process (KeyboardInterrupt; SIGTERM, which raises
    ``SystemExit(143)`` here unless the caller handles it) stops the running jobs at once, and so does the end
    of this process, however it ends (see the module docstring).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")  # a forked torch process may deadlock in its thread pools
    progress_queue = context.Queue() if on_progress is not None else None
    stop = context.Event()
    results: list[Any] = [None] * len(arguments)
    with _sigterm_raises(), ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(threads, progress_queue, os.getpid(), stop)) as pool:
        try:
            futures = {pool.submit(_call, function, index, args): index for index, args in enumerate(arguments)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, PROGRESS_POLL_SECONDS, FIRST_COMPLETED)
                if progress_queue is not None:
                    _pass_on(progress_queue, on_progress)
                for future in done:
                    results[futures[future]] = future.result()
                    if on_done is not None:
                        on_done(futures[future])
        except BaseException as error:
            if not isinstance(error, Exception):  # interrupted: the running jobs stop too
                stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if progress_queue is not None:  # the workers have exited, so every report is in the queue
        _pass_on(progress_queue, on_progress)
    return results
