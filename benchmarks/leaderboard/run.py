"""One leaderboard run of a validated config: plan the sweep, run it (or only plan it) and publish its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.leaderboard.context import build_context
from benchmarks.leaderboard.kinds import official_folder
from benchmarks.leaderboard.publish import write_outputs
from benchmarks.leaderboard.sweep import RayOptions, Sweep


def run_leaderboard(config: dict[str, Any], progress: bool = True, dry_run: bool = False,
                    train: bool = True, jobs: int = 1, evaluate: bool = True,
                    ray: RayOptions | None = None) -> dict[str, Any]:
    """Train what is missing, evaluate what is not stored yet and write the outputs of a validated config.

    Returns the ``leaderboard.json`` contents, or with ``dry_run`` only the plan (jobs and their estimated
    seconds) without running anything. With ``train`` False, seeds not trained yet are left out (and named in
    the notes) instead of trained; with ``evaluate`` False nothing runs at all (no training either): the
    outputs aggregate the results stored with today's fingerprints and the notes name what is left out.
    ``jobs`` > 1 trains that many models at once, each in its own process with an equal share of torch's CPU
    threads; evaluations then run once every training has finished. With ``ray`` every training and evaluation
    is a Ray task instead (:mod:`benchmarks.leaderboard.ray_sweep`; ``jobs`` is then unused): this process only
    plans, on the CPU, and writes, and the tasks run on the config's device.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    official_dir, note = official_folder(config["official"])
    ctx = build_context(config if ray is None else {**config, "device": "cpu"})
    sweep = Sweep(config, Path(config["out"]), ctx, note, official_dir, train_missing=train,
                  evaluate_missing=evaluate, jobs=jobs, ray=ray)
    if dry_run:
        planned, skipped = sweep.plan()
        return {"jobs": [{"label": job.label, "estimated_seconds": job.cost} for job in planned],
                "skipped": skipped, "estimated_seconds": sum(job.cost for job in planned)}
    counts = sweep.run(progress)
    return write_outputs(sweep, counts)
