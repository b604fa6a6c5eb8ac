"""The sweep's jobs as Ray tasks (``python -m benchmarks.leaderboard --ray [ADDRESS]``; needs the ``ray`` extra).

Every training and every evaluation is one task that declares its CPUs (its torch threads) and, when the
sweep's device is CUDA, its GPUs; an evaluation of a seed trained in the same sweep waits for that training
(Ray hands the training's output to it). This process, the driver, plans as the serial sweep does, shows the one
progress bar (the trainings report to a small actor that the driver reads) and alone writes the results, each
atomically as its task ends, so an interrupted sweep resumes as the serial one does. The trained models reach the
driver's runs folder through the filesystem when it is shared (``RayOptions.shared_runs``: the tasks train in
place, checkpoints included, as the serial sweep does), or else as the files of their run folder, which a task
gets from the driver (a resumed training its checkpoint too) and a training returns, and which the driver writes.
A task computes exactly what the serial job computes, so the numbers are the serial sweep's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from tqdm import tqdm

from benchmarks.leaderboard.context import Context, build_context
from benchmarks.leaderboard.kinds import Entry, LearnedEntry
from benchmarks.leaderboard.store import ResultStore, StoredResult
from benchmarks.leaderboard.sweep import Advance, Job, RayOptions, Sweep, entry_named
from restore_gym.allocator import retain_freed_memory
from restore_gym.records import write_atomic

POLL_SECONDS = 0.5  # how often the driver collects finished tasks and progress reports
REPORTS_PER_TRAINING = 50  # about how many progress messages one training sends the driver
REPOSITORY = Path(__file__).resolve().parents[2]
# What a cluster's workers are not sent of the repository (the job's working_dir): environments, outputs, tests.
NOT_SHIPPED = [".git", ".venv", "runs", "demo", "tests", "benchmarks/results"]

RunFiles = dict[str, bytes]  # files of run folders, by their path relative to the runs folder


@dataclass(frozen=True)
class TaskSetup:
    """What every task of one sweep gets: the config as tasks run it (absolute runs folder, the driver's resolved
    training source), the authors' release, the torch threads and whether the runs folder is shared."""

    config: dict[str, Any]
    official_dir: Path | None
    threads: int
    shared_runs: bool


def run_on_ray(sweep: Sweep, jobs: list[Job], bar: tqdm, options: RayOptions) -> None:
    """Run ``jobs`` (planned by ``sweep``, in its order) as Ray tasks, advancing ``bar``; each result, and each
    run folder a training returns, is written here as its task ends. The first task to fail (or an interruption)
    cancels the others, and its error is raised with the task's traceback."""
    gpus = options.task_gpus(sweep.config["device"])
    started = _connect(options)
    try:
        _check_resources(options.threads, gpus)
        bar.set_postfix_str(f"{len(jobs)} Ray tasks of {options.threads} CPU(s){f' and {gpus} GPU' if gpus else ''}")
        _Driver(sweep, options, gpus).run(jobs, bar)
    finally:
        if started:
            ray.shutdown()


def _connect(options: RayOptions) -> bool:
    """Connect to Ray as ``options`` say; whether this call did (and must disconnect, or stop the instance)."""
    if ray.is_initialized():
        return False
    if options.address is None:
        ray.init(address="local", num_cpus=options.cpus, include_dashboard=False)
    else:  # a cluster's workers get this checkout's code
        ray.init(address=options.address, runtime_env={"working_dir": str(REPOSITORY), "excludes": NOT_SHIPPED})
    return True


def _check_resources(threads: int, gpus: float) -> None:
    """RuntimeError unless some live node of the cluster has what each task asks for (Ray would wait forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(node.get("CPU", 0) >= threads and node.get("GPU", 0) >= gpus for node in nodes):
        have = ", ".join(f"{node.get('CPU', 0):g} CPU and {node.get('GPU', 0):g} GPU" for node in nodes) or "none"
        raise RuntimeError(f"each Ray task asks for {threads} CPU(s) and {gpus:g} GPU(s), which no node of the Ray "
                           f"cluster has (its nodes: {have}); ask for fewer threads, or use device cpu")


class _Driver:
    """Submits the tasks of one sweep and writes what they return."""

    def __init__(self, sweep: Sweep, options: RayOptions, gpus: float) -> None:
        self.sweep, self.shared = sweep, options.shared_runs
        self.entries = {entry.name: entry for entry in sweep.entries}
        self.resources = {"num_cpus": options.threads, "num_gpus": gpus}
        config = {**sweep.config, "runs": str(sweep.ctx.runs.resolve()), "source": sweep.ctx.source}
        self.setup = TaskSetup(config, sweep.official_dir, options.threads, options.shared_runs)
        self.models: dict[tuple[str, int], Any] = {}  # (entry, seed) -> the run files its evaluations get
        self.checkpoints: dict[int, Any] = {}  # training job -> its returned checkpoint

    def run(self, jobs: list[Job], bar: tqdm) -> None:
        sink = _ProgressSink.remote()
        advances = [Advance(bar, job.cost) for job in jobs]
        done_by = {self._submit(index, job, sink): index for index, job in enumerate(jobs)}
        pending = list(done_by)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
                for index, amount in ray.get(sink.drain.remote()):
                    advances[index](amount)
                for ref in sorted(done, key=done_by.__getitem__):  # a training's files before its results
                    index = done_by[ref]
                    self._finish(index, jobs[index], ref)
                    advances[index](jobs[index].cost)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
        finally:
            ray.kill(sink)

    def _submit(self, index: int, job: Job, sink: Any) -> Any:
        """Start the task of ``job``; the reference that is ready when it has ended."""
        entry, ctx = self.entries[job.entry], self.sweep.ctx
        if job.kind == "train":
            assert isinstance(entry, LearnedEntry)
            files = {} if self.shared else _read_run(entry, ctx, job.seed, checkpoint=True)
            model, checkpoint = _train.options(**self.resources).remote(self.setup, job.entry, job.seed, files, sink,
                                                                        index, job.cost)
            self.models[job.entry, job.seed], self.checkpoints[index] = model, checkpoint
            return model
        if (job.entry, job.seed) not in self.models:  # trained before this sweep: its model goes with the task
            shipped = not self.shared and isinstance(entry, LearnedEntry)
            self.models[job.entry, job.seed] = ray.put(_read_run(entry, ctx, job.seed, checkpoint=False)) \
                if shipped else {}
        return _evaluate.options(**self.resources).remote(self.setup, job.entry, job.difficulty, job.seed,
                                                          self.models[job.entry, job.seed])

    def _finish(self, index: int, job: Job, ref: Any) -> None:
        """Write what the task of ``job`` returned (raising its error if it failed)."""
        entry = self.entries[job.entry]
        if job.kind == "evaluate":
            result: StoredResult = ray.get(ref)
            self.sweep.store.write(entry, job.difficulty, job.seed, result)
            return
        files = {**ray.get(ref), **ray.get(self.checkpoints.pop(index))}
        assert isinstance(entry, LearnedEntry)
        model = str(entry.model_file(self.sweep.ctx, job.seed).relative_to(self.sweep.ctx.runs))
        for name in sorted(files, key=lambda name: name == model):  # the model last: it says the run is trained
            write_atomic(self.sweep.ctx.runs / name, lambda handle, data=files[name]: handle.write(data))


def _read_run(entry: LearnedEntry, ctx: Context, seed: int, checkpoint: bool) -> RunFiles:
    """The files of the run folder of ``seed`` (none if it does not exist), the training checkpoint only when
    ``checkpoint``."""
    folder, skipped = entry.run_dir(ctx, seed), entry.checkpoint_file(ctx, seed)
    if not folder.is_dir():
        return {}
    return {str(path.relative_to(ctx.runs)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and (checkpoint or path != skipped)}


@contextmanager
def _in_task(setup: TaskSetup, name: str, files: RunFiles) -> Iterator[tuple[Entry, Context]]:
    """In a task: the entry ``name`` and the sweep's context, over the shared runs folder or a temporary one
    holding ``files``."""
    torch.set_num_threads(setup.threads)
    retain_freed_memory()
    folder = nullcontext(setup.config["runs"]) if setup.shared_runs else tempfile.TemporaryDirectory(prefix="runs-")
    with folder as path:
        runs = Path(path)
        for relative, data in files.items():
            (runs / relative).parent.mkdir(parents=True, exist_ok=True)
            (runs / relative).write_bytes(data)
        config = {**setup.config, "runs": str(runs)}
        ctx = build_context(config)
        yield entry_named(config, setup.official_dir, name, ctx.tracks), ctx


@ray.remote(num_returns=2)
def _train(setup: TaskSetup, name: str, seed: int, files: RunFiles, sink: Any, index: int,
           cost: float) -> tuple[RunFiles, RunFiles]:
    """Train (or resume) ``seed`` of entry ``name``: its run folder's files but the checkpoint, and the checkpoint
    (both empty when the runs folder is shared: the training wrote there)."""
    with _in_task(setup, name, files) as (entry, ctx):
        assert isinstance(entry, LearnedEntry)
        entry.train(ctx, seed, _Reporter(sink, index, cost))
        if setup.shared_runs:
            return {}, {}
        everything, model = _read_run(entry, ctx, seed, checkpoint=True), _read_run(entry, ctx, seed, checkpoint=False)
        return model, {path: data for path, data in everything.items() if path not in model}


@ray.remote
def _evaluate(setup: TaskSetup, name: str, difficulty: str, seed: int, files: RunFiles) -> StoredResult:
    """Evaluate ``seed`` of entry ``name`` on the test set of ``difficulty``: its result, unwritten."""
    with _in_task(setup, name, files) as (entry, ctx):
        return ResultStore(Path(setup.config["out"]), ctx, setup.config["gallery"]).compute(entry, difficulty, seed)


@ray.remote(num_cpus=0)
class _ProgressSink:
    """Holds the trainings' progress reports (job index, estimated seconds done) until the driver takes them."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []

    def report(self, index: int, amount: float) -> None:
        self.reports.append((index, amount))

    def drain(self) -> list[tuple[int, float]]:
        reports, self.reports = self.reports, []
        return reports


class _Reporter:
    """A training task's progress function: passes the amounts on to the sink in about
    :data:`REPORTS_PER_TRAINING` messages of the training's ``cost``."""

    def __init__(self, sink: Any, index: int, cost: float) -> None:
        self.sink, self.index, self.step, self.held = sink, index, max(cost, 1.0) / REPORTS_PER_TRAINING, 0.0

    def __call__(self, amount: float) -> None:
        self.held += amount
        if self.held >= self.step:
            self.sink.report.remote(self.index, self.held)
            self.held = 0.0

