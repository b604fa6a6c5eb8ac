import numpy as np
import pytest
from scipy.stats import trim_mean

from benchmarks.stats import (
    compare,
    interval_estimate,
    iqm,
    mean,
    probability_of_improvement,
    stratified_bootstrap,
    summarize,
)


def test_iqm_of_known_arrays():
    # 8 scores: int(0.25 * 8) = 2 cut from each end, the mean of 3, 4, 5, 6 remains.
    assert iqm(np.array([[8.0, 1.0, 7.0, 2.0], [3.0, 6.0, 4.0, 5.0]])) == pytest.approx(4.5)
    # 10 scores: 2 cut from each end (an outlier does not move it).
    assert iqm(np.array([[1.0, 2, 3, 4, 5, 6, 7, 8, 9, 1000]])) == pytest.approx(5.5)
    assert iqm(np.array([[3.0]])) == 3.0
    rng = np.random.default_rng(0)
    for shape in [(3, 164), (1, 7), (5, 5), (2, 3)]:
        scores = rng.normal(size=shape)
        assert iqm(scores) == pytest.approx(trim_mean(scores, 0.25, axis=None), abs=1e-12)
    assert mean(np.array([[1.0, 2.0], [3.0, 6.0]])) == 3.0


def test_statistics_keep_leading_replicate_axes():
    replicates = np.arange(2 * 2 * 4, dtype=float).reshape(2, 2, 4)
    assert mean(replicates).tolist() == [3.5, 11.5]
    assert iqm(replicates).tolist() == [3.5, 11.5]


def test_the_interval_contains_the_point_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    scores = rng.normal(25.0, 1.0, size=(3, 50)) + rng.normal(0.0, 0.5, size=(3, 1))
    for statistic in (mean, iqm):
        point, low, high = interval_estimate(scores, statistic, reps=500, seed=7)
        assert low < point < high
        assert point == pytest.approx(float(statistic(scores)))
        assert interval_estimate(scores, statistic, reps=500, seed=7) == (point, low, high)
        assert interval_estimate(scores, statistic, reps=500, seed=8) != (point, low, high)
    narrow = interval_estimate(scores, mean, reps=500, confidence=0.5, seed=7)
    wide = interval_estimate(scores, mean, reps=500, confidence=0.99, seed=7)
    assert wide[1] < narrow[1] <= narrow[2] < wide[2]


def test_a_single_run_gives_a_point_interval():
    scores = np.random.default_rng(2).normal(size=(1, 40))
    point, low, high = interval_estimate(scores, mean, reps=200)
    assert low == point == high
    summary = summarize(scores, reps=200)
    assert summary["runs"] == 1 and summary["tasks"] == 40
    assert summary["mean_ci"] == [summary["mean"], summary["mean"]]
    assert summary["iqm_ci"] == [summary["iqm"], summary["iqm"]]


def test_the_bootstrap_resamples_runs_within_each_task():
    runs, tasks = 4, 6
    scores = 1000.0 * np.arange(tasks)[None, :] + np.arange(runs)[:, None]  # task j holds 1000 j + run

    def columns_stay(replicates):  # every resampled value of column j comes from task j
        return (replicates // 1000 == np.arange(tasks)).all(axis=(-2, -1))

    rng = np.random.default_rng(0)
    assert stratified_bootstrap(scores, columns_stay, 300, rng).all()
    # with task_bootstrap the tasks themselves are drawn with replacement, so columns move
    assert not stratified_bootstrap(scores, columns_stay, 300, rng, task_bootstrap=True).all()


def test_stratification_ignores_the_spread_across_tasks():
    # Every run scores the same on a task: resampling runs inside tasks changes nothing; resampling tasks does.
    scores = np.tile(np.linspace(20.0, 30.0, 10), (3, 1))
    point, low, high = interval_estimate(scores, mean, reps=300)
    assert low == pytest.approx(point) and high == pytest.approx(point)
    point, low, high = interval_estimate(scores, mean, reps=300, task_bootstrap=True)
    assert low < point - 0.5 and high > point + 0.5


@pytest.mark.parametrize(("scores", "kwargs", "message"), [
    (np.ones(5), {}, "runs x tasks matrix"),
    (np.ones((0, 3)), {}, "runs x tasks matrix"),
    (np.array([[1.0, np.nan]]), {}, "finite"),
    (np.ones((2, 2)), {"reps": 0}, "reps must be at least 1"),
    (np.ones((2, 2)), {"confidence": 1.0}, "confidence must be in"),
])
def test_bad_input_is_refused(scores, kwargs, message):
    with pytest.raises(ValueError, match=message):
        interval_estimate(scores, mean, **kwargs)


def test_probability_of_improvement_counts_pairs_of_runs_per_task():
    assert probability_of_improvement(np.array([[1.0, 2.0]]), np.array([[0.0, 3.0]])) == 0.5  # one task each way
    assert probability_of_improvement(np.array([[5.0, 5.0]]), np.array([[5.0, 5.0]])) == 0.5  # ties count half
    # 2 runs of X against 1 of Y on one task: pairs (1, 2) lose, (2, 2) tie
    assert probability_of_improvement(np.array([[1.0], [2.0]]), np.array([[2.0]])) == 0.25
    assert probability_of_improvement(np.array([[3.0], [4.0]]), np.array([[1.0], [2.0], [0.0]])) == 1.0
    replicates = np.stack([np.array([[1.0, 2.0]]), np.array([[9.0, 9.0]])])  # leading replicate axis kept
    assert probability_of_improvement(replicates, np.zeros((2, 1, 2)) + 5.0).tolist() == [0.0, 1.0]


def test_compare_pairs_the_tasks_of_both_entries():
    rng = np.random.default_rng(4)
    y = np.tile(rng.normal(25.0, 3.0, size=80), (3, 1))  # three seeds that agree on every patch
    shifted = compare(y + 0.5, y, reps=400, seed=1)
    # the spread over patches is large, but every patch gains exactly 0.5: a paired bootstrap sees no uncertainty
    assert shifted["difference"] == pytest.approx(0.5)
    assert shifted["difference_ci"] == pytest.approx([0.5, 0.5])
    assert shifted["probability_of_improvement"] == 1.0 and shifted["probability_of_improvement_ci"] == [1.0, 1.0]
    assert shifted["runs"] == [3, 3] and shifted["tasks"] == 80 and shifted["task_bootstrap"] is True


def test_compare_gives_intervals_to_single_runs_and_is_reproducible():
    rng = np.random.default_rng(5)
    x, y = rng.normal(26.0, 2.0, size=(1, 60)), rng.normal(25.0, 2.0, size=(3, 60))
    result = compare(x, y, reps=400, seed=2)
    low, high = result["difference_ci"]
    assert low < result["difference"] < high and high - low > 0.2
    assert result["difference"] == pytest.approx(x.mean() - y.mean())
    p_low, p_high = result["probability_of_improvement_ci"]
    assert 0.0 <= p_low < result["probability_of_improvement"] < p_high <= 1.0
    assert compare(x, y, reps=400, seed=2) == result and compare(x, y, reps=400, seed=3) != result
    # resampling seeds only, one run against one run leaves nothing to resample
    seeds_only = compare(x, y[:1], reps=100, seed=2, task_bootstrap=False)
    assert seeds_only["difference_ci"] == pytest.approx([seeds_only["difference"]] * 2)


@pytest.mark.parametrize(("x", "y", "kwargs", "message"), [
    (np.ones((2, 3)), np.ones((2, 4)), {}, "same tasks, got 3 and 4"),
    (np.ones((2, 3)), np.ones(3), {}, "runs x tasks matrix"),
    (np.ones((2, 3)), np.ones((2, 3)), {"confidence": 0.0}, "confidence must be in"),
    (np.ones((2, 3)), np.ones((2, 3)), {"reps": 0}, "reps must be at least 1"),
])
def test_compare_refuses_bad_input(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare(x, y, **kwargs)
