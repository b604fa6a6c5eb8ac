"""Aggregate scores over runs as rliable does (Agarwal et al., NeurIPS 2021), with numpy only.

Scores form a ``runs x tasks`` matrix; in the leaderboard the runs are training seeds and the tasks are test
patches. The point estimates are the mean and the interquartile mean (IQM: the mean of the middle 50% of
all scores, as ``scipy.stats.trim_mean(scores, 0.25, axis=None)``). Their confidence intervals come from
rliable's stratified bootstrap: each replicate resamples, independently for every task, the runs of that
task with replacement (with ``task_bootstrap`` the tasks are resampled first, rliable's option of the same
name), and the interval is the percentile interval of the statistic over the replicates. With a single run
(a deterministic entry) every replicate equals the data, so the interval is the point itself: the interval
measures the spread over training seeds, not over test patches. All randomness comes from a
``numpy.random.Generator`` seeded with ``seed``: the same call gives the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

TRIM = 0.25  # IQM: a quarter of the scores cut from each end


def _check_scores(scores: Any) -> np.ndarray:
    """``scores`` as a float64 runs x tasks matrix; ValueError unless it is 2-D, non-empty and finite."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"scores must be a non-empty runs x tasks matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite (a NaN or infinite score would poison every aggregate)")
    return array


def mean(scores: np.ndarray) -> np.ndarray:
    """Mean over the last two axes (runs and tasks); leading axes (bootstrap replicates) are kept."""
    return np.asarray(scores, dtype=np.float64).mean(axis=(-2, -1))


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last two axes: the mean of the sorted scores after cutting
    ``int(0.25 * n)`` from each end (``scipy.stats.trim_mean(x, 0.25, axis=None)``); leading axes are kept."""
    array = np.asarray(scores, dtype=np.float64)
    flat = np.sort(array.reshape(*array.shape[:-2], -1), axis=-1)
    cut = int(TRIM * flat.shape[-1])
    return flat[..., cut:flat.shape[-1] - cut].mean(axis=-1)


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mean": mean, "iqm": iqm}


def stratified_bootstrap(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], reps: int,
                         rng: np.random.Generator, task_bootstrap: bool = False) -> np.ndarray:
    """``statistic`` of ``reps`` stratified bootstrap replicates of a runs x tasks matrix, shape (reps,).

    Each replicate draws, for every task, ``runs`` runs with replacement from that task's column; with
    ``task_bootstrap`` it first draws ``tasks`` tasks with replacement.
    """
    scores = _check_scores(scores)
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    runs, tasks = scores.shape
    task_index = (rng.integers(0, tasks, size=(reps, 1, tasks)) if task_bootstrap
                  else np.arange(tasks)[None, None, :])
    run_index = rng.integers(0, runs, size=(reps, runs, tasks))
    return statistic(scores[run_index, task_index])


def interval_estimate(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], reps: int = 2000,
                      confidence: float = 0.95, seed: int = 0, task_bootstrap: bool = False
                      ) -> tuple[float, float, float]:
    """(point estimate, lower, upper): ``statistic`` of ``scores`` and its percentile confidence interval at
    ``confidence`` from :func:`stratified_bootstrap` with ``numpy.random.default_rng(seed)``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = _check_scores(scores)
    replicates = stratified_bootstrap(scores, statistic, reps, np.random.default_rng(seed), task_bootstrap)
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(replicates, [alpha, 100.0 - alpha])
    return float(statistic(scores)), float(low), float(high)


def summarize(scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
              task_bootstrap: bool = False) -> dict[str, Any]:
    """Every aggregate of :data:`AGGREGATES` with its interval: ``{"mean": m, "mean_ci": [lo, hi], "iqm": ...,
    "iqm_ci": [...], "runs": R, "tasks": T}`` (JSON-ready)."""
    scores = _check_scores(scores)
    summary: dict[str, Any] = {"runs": scores.shape[0], "tasks": scores.shape[1]}
    for name, statistic in AGGREGATES.items():
        point, low, high = interval_estimate(scores, statistic, reps, confidence, seed, task_bootstrap)
        summary[name], summary[f"{name}_ci"] = point, [low, high]
    return summary
