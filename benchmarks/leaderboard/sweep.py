"""The sweep of one leaderboard config: planning its jobs, running them under one progress bar, resuming.

A learned entry's seed whose model is missing or unfinished is trained first (resuming its checkpoint), then
every (entry, difficulty, seed) without a valid stored result (:mod:`benchmarks.leaderboard.store`) is
evaluated. With ``train_missing`` False untrained seeds are left out, with ``evaluate_missing`` False nothing
runs; both are recorded (``untrained``, ``unevaluated``) for the outputs' notes. With ``jobs`` > 1 the
trainings run in that many worker processes, the evaluations after them. The progress bar counts estimated
seconds (each kind's cost estimate) and each job advances it by at most its estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.leaderboard.context import Context, build_context
from benchmarks.leaderboard.kinds import Entry, LearnedEntry, build_entries
from benchmarks.leaderboard.store import ResultStore
from restore_gym.parallel import run_in_processes


@dataclass
class Job:
    """A unit of the sweep (``kind`` "train" or "evaluate") with its estimated cost in seconds."""

    kind: str
    label: str
    cost: float
    run: Callable[[Callable[[float], None]], None]  # called with a function that advances the progress bar
    entry: str = ""  # the entry and seed the job trains or evaluates, and the test set it evaluates on
    seed: int = 0
    difficulty: str = ""


@dataclass(frozen=True)
class RayOptions:
    """How the sweep runs on Ray.

    ``address``: a running cluster's (``ray start --head`` prints it; "auto": the one started on this machine);
    None: a Ray instance of ``cpus`` CPUs (None: every core) started on this machine for the sweep, unless this
    process is connected to Ray already (then that one serves, and stays). ``threads``: the torch threads, and
    CPUs, of each task; ``gpus``: the GPUs of each task when the sweep's device is CUDA (a fraction packs several
    tasks on one GPU). ``shared_runs``: the runs folder is at the same path on every node (always so on this
    machine; on a cluster, a shared filesystem): tasks train into it and read the models there; False: the run
    folders travel from the driver to the tasks and the trained ones back, and the driver writes them.
    """

    address: str | None = None
    shared_runs: bool = True
    threads: int = 1
    cpus: int | None = None
    gpus: float = 1.0

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads per Ray task must be at least 1, got {self.threads}")
        if self.cpus is not None and (self.address is not None or self.cpus < 1):
            raise ValueError(f"the CPUs of a local Ray instance must be at least 1, and a cluster's are its own; "
                             f"got cpus={self.cpus} with address={self.address!r}")
        if not self.gpus > 0:
            raise ValueError(f"GPUs per Ray task must be more than 0, got {self.gpus}")

    def task_gpus(self, device: str) -> float:
        """The GPUs each task asks for when the sweep runs on ``device``: none on the CPU; a ValueError for
        ``cuda:N`` (Ray gives each task its GPU)."""
        if device.startswith("cuda:"):
            raise ValueError(f"on Ray, name the device cuda, not {device}: Ray gives each task its GPU")
        return self.gpus if device == "cuda" else 0.0


class Sweep:
    """Plans and runs the jobs of one validated leaderboard config."""

    def __init__(self, config: dict[str, Any], out: Path, ctx: Context, official_note: str | None,
                 official_dir: Path | None, train_missing: bool = True, evaluate_missing: bool = True,
                 jobs: int = 1, ray: RayOptions | None = None) -> None:
        self.config, self.out, self.ctx = config, out, ctx
        self.train_missing, self.evaluate_missing = train_missing and evaluate_missing, evaluate_missing
        self.jobs, self.ray, self.official_dir = jobs, ray, official_dir
        self.untrained: set[tuple[str, int]] = set()  # (entry, seed) left out because they are not trained
        # (entry, difficulty, seed) left out because no valid result is stored (evaluate_missing False)
        self.unevaluated: set[tuple[str, str, int]] = set()
        self.entries = build_entries(config, official_dir, ctx.tracks)
        self.notes = [*([official_note] if official_note else []), *ctx.skipped_tracks.values()]
        self.store = ResultStore(out, ctx, config["gallery"])

    def published(self, entry: str, difficulty: str, seed: int) -> bool:
        """Whether the outputs hold the result of (``entry``, ``difficulty``, ``seed``) (after :meth:`plan`)."""
        return (entry, seed) not in self.untrained and (entry, difficulty, seed) not in self.unevaluated

    def plan(self) -> tuple[list[Job], int]:
        """The jobs still to run, in order, and how many finished results are skipped."""
        jobs, skipped = [], 0
        for entry in self.entries:
            for seed in entry.seeds:
                must_train = isinstance(entry, LearnedEntry) and not entry.trained(self.ctx, seed)
                if must_train and not self.train_missing:
                    self.untrained.add((entry.name, seed))
                    continue
                if must_train:
                    jobs.append(Job("train", f"train {entry.name} seed {seed}", entry.train_cost(self.ctx, seed),
                                    lambda advance, e=entry, s=seed: e.train(self.ctx, s, advance), entry.name, seed))
                for difficulty in self.config["difficulties"]:
                    if not must_train and self.store.finished(entry, difficulty, seed):
                        skipped += 1
                        continue
                    if not self.evaluate_missing:
                        self.unevaluated.add((entry.name, difficulty, seed))
                        continue
                    jobs.append(Job("evaluate", f"evaluate {entry.name} seed {seed} on {difficulty}",
                                    entry.eval_cost(self.ctx.patches(difficulty)),
                                    lambda advance, e=entry, d=difficulty, s=seed: self.store.evaluate(e, d, s),
                                    entry.name, seed, difficulty))
        return jobs, skipped

    def run(self, progress: bool = True) -> dict[str, int]:
        """Run every pending job under one progress bar; returns the counts of jobs run and results skipped."""
        jobs, skipped = self.plan()
        bar = tqdm(total=round(sum(job.cost for job in jobs), 3), disable=not progress, desc="leaderboard",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
        trainings = [job for job in jobs if job.kind == "train"]
        evaluations = [job for job in jobs if job.kind == "evaluate"]
        if self.ray is not None and jobs:  # (with nothing to run, no Ray instance is started)
            from benchmarks.leaderboard.ray_sweep import run_on_ray  # Ray is an optional extra

            run_on_ray(self, jobs, bar, self.ray)
        else:
            if self.jobs > 1 and len(trainings) > 1:
                self._train_in_parallel(trainings, bar)
                jobs = evaluations
            for job in jobs:
                bar.set_postfix_str(job.label)
                advance = Advance(bar, job.cost)
                job.run(advance)
                advance(job.cost)
        bar.close()
        return {"trained": len(trainings), "evaluated": len(evaluations), "skipped": skipped}

    def _train_in_parallel(self, trainings: list[Job], bar: tqdm) -> None:
        """Run the training jobs in ``self.jobs`` worker processes, advancing ``bar`` as they go."""
        bar.set_postfix_str(f"training {len(trainings)} models, {self.jobs} at a time")
        advances = [Advance(bar, job.cost) for job in trainings]
        run_in_processes(_train_worker, [(self.config, self.official_dir, job.entry, job.seed) for job in trainings],
                         self.jobs, on_done=lambda index: advances[index](trainings[index].cost),
                         on_progress=lambda index, seconds: advances[index](seconds))


def entry_named(config: dict[str, Any], official_dir: Path | None, name: str, tracks: Iterable[str]) -> Entry:
    """The entry ``name`` of a validated config with the tracks that run here, built afresh (as a worker process
    builds it)."""
    return next(entry for entry in build_entries(config, official_dir, tracks) if entry.name == name)


def _train_worker(config: dict[str, Any], official_dir: Path | None, entry_name: str, seed: int,
                  progress: Callable[[float], None]) -> None:
    """Train (or resume) one seed of one entry of ``config`` in a worker process of :meth:`Sweep.run`."""
    ctx = build_context(config)
    entry = entry_named(config, official_dir, entry_name, ctx.tracks)
    assert isinstance(entry, LearnedEntry)
    entry.train(ctx, seed, progress)


class Advance:
    """Advances a progress bar by at most ``budget`` in all (a job's estimate), whatever the job reports."""

    def __init__(self, bar: tqdm, budget: float) -> None:
        self.bar, self.left = bar, budget

    def __call__(self, amount: float) -> None:
        amount = min(amount, self.left)
        self.left -= amount
        self.bar.update(amount)
