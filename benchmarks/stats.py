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

Two entries scored on the same tasks are compared (:func:`compare`) by the difference of their means and
rliable's probability of improvement: per task, the Mann-Whitney statistic P(X > Y) + P(X = Y) / 2 over all
pairs of a run of X and a run of Y, averaged over tasks. Their bootstrap resamples the runs of each entry
independently within every task and, with ``task_bootstrap``, the same tasks for both entries (paired).

:func:`performance_profile` is rliable's score distribution: the share of all scores above each threshold, with
its interval from the same stratified bootstrap. ``tests/test_stats.py`` checks every estimate against rliable's.
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
    task_index = _task_index(scores.shape[1], reps, rng, task_bootstrap)
    return statistic(_resample_runs(scores, task_index, reps, rng))


def _task_index(tasks: int, reps: int, rng: np.random.Generator, task_bootstrap: bool) -> np.ndarray:
    """Task columns of ``reps`` replicates, shape (reps, 1, tasks): drawn with replacement or all in order."""
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    return rng.integers(0, tasks, size=(reps, 1, tasks)) if task_bootstrap else np.arange(tasks)[None, None, :]


def _resample_runs(scores: np.ndarray, task_index: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` replicates (reps x runs x tasks) of a runs x tasks matrix: in each replicate's task column, the
    runs of that task drawn with replacement."""
    runs = scores.shape[0]
    run_index = rng.integers(0, runs, size=(reps, runs, task_index.shape[-1]))
    return scores[run_index, task_index]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentile_bounds(replicates: np.ndarray, confidence: float) -> np.ndarray:
    """The lower and upper percentile bounds at ``confidence`` of ``replicates`` over their first axis, shape
    (2, ...)."""
    alpha = 100.0 * (1.0 - confidence) / 2.0
    return np.percentile(replicates, [alpha, 100.0 - alpha], axis=0)


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = _percentile_bounds(replicates, confidence)
    return float(low), float(high)


def interval_estimates(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], reps: int = 2000,
                       confidence: float = 0.95, seed: int = 0, task_bootstrap: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point estimates, lower bounds, upper bounds), arrays of the shape of ``statistic(scores)``: the statistic
    and its percentile confidence interval at ``confidence`` from :func:`stratified_bootstrap` with
    ``numpy.random.default_rng(seed)``. The statistic may give one value or several (a profile, a curve)."""
    _check_confidence(confidence)
    scores = _check_scores(scores)
    replicates = stratified_bootstrap(scores, statistic, reps, np.random.default_rng(seed), task_bootstrap)
    low, high = _percentile_bounds(replicates, confidence)
    return np.asarray(statistic(scores), dtype=np.float64), low, high


def interval_estimate(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], reps: int = 2000,
                      confidence: float = 0.95, seed: int = 0, task_bootstrap: bool = False
                      ) -> tuple[float, float, float]:
    """(point estimate, lower, upper) of a statistic with one value, as :func:`interval_estimates`."""
    point, low, high = interval_estimates(scores, statistic, reps, confidence, seed, task_bootstrap)
    return float(point), float(low), float(high)


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


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability that a run of X beats a run of Y on a random task (ties count half): over the last
    two axes (runs and tasks) of ``x`` and ``y``, which share their task axis; leading axes are kept."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    left, right = x[..., :, None, :], y[..., None, :, :]  # every (run of X, run of Y) pair on each task
    per_task = (left > right).mean(axis=(-3, -2)) + 0.5 * (left == right).mean(axis=(-3, -2))
    return per_task.mean(axis=-1)


def compare(x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
            task_bootstrap: bool = True) -> dict[str, Any]:
    """X against Y, two runs x tasks matrices on the same tasks (their run counts may differ): the difference of
    means X - Y and the probability of improvement P(X > Y), each with its percentile interval (JSON-ready).

    Each replicate resamples the runs of X and of Y independently within every task; with ``task_bootstrap``
    (the default, so that entries with one run each still get an interval) it first draws the tasks, the same
    for both, which keeps every patch paired with itself.
    """
    _check_confidence(confidence)
    x, y = _check_scores(x), _check_scores(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must be scored on the same tasks, got {x.shape[1]} and {y.shape[1]} tasks")
    rng = np.random.default_rng(seed)
    task_index = _task_index(x.shape[1], reps, rng, task_bootstrap)
    xs, ys = _resample_runs(x, task_index, reps, rng), _resample_runs(y, task_index, reps, rng)
    difference = mean(xs) - mean(ys)
    improvement = probability_of_improvement(xs, ys)
    return {
        "difference": float(mean(x) - mean(y)), "difference_ci": list(_percentile_interval(difference, confidence)),
        "probability_of_improvement": float(probability_of_improvement(x, y)),
        "probability_of_improvement_ci": list(_percentile_interval(improvement, confidence)),
        "runs": [x.shape[0], y.shape[0]], "tasks": x.shape[1], "task_bootstrap": task_bootstrap,
    }


def score_distribution(thresholds: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic of rliable's performance profile: for each of ``thresholds``, the share of all scores (runs
    and tasks, the last two axes) strictly above it; leading axes are kept and the thresholds come last."""
    taus = np.asarray(thresholds, dtype=np.float64).reshape(-1)

    def share_above(scores: np.ndarray) -> np.ndarray:
        array = np.asarray(scores, dtype=np.float64)
        flat = array.reshape(*array.shape[:-2], -1)
        return np.stack([(flat > tau).mean(axis=-1) for tau in taus], axis=-1)

    return share_above


def performance_profile(scores: np.ndarray, thresholds: Any, reps: int = 2000, confidence: float = 0.95,
                        seed: int = 0, task_bootstrap: bool = False) -> dict[str, Any]:
    """rliable's performance profile of a runs x tasks matrix (JSON-ready): ``{"thresholds": [...], "profile":
    [share of scores above each], "profile_ci": [[lower, ...], [upper, ...]]}``, with the intervals of
    :func:`interval_estimates`."""
    point, low, high = interval_estimates(scores, score_distribution(thresholds), reps, confidence, seed,
                                          task_bootstrap)
    return {"thresholds": np.asarray(thresholds, dtype=np.float64).reshape(-1).tolist(), "profile": point.tolist(),
            "profile_ci": [low.tolist(), high.tolist()]}


def run_means(scores: np.ndarray) -> np.ndarray:
    """The mean over runs of every task (the second-to-last axis averaged; leading axes are kept): with tasks the
    points of a training curve, the mean curve over seeds."""
    return np.asarray(scores, dtype=np.float64).mean(axis=-2)
