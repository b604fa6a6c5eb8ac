import numpy as np
import pytest
from scipy.stats import trim_mean

from benchmarks.stats import (
    compare,
    interval_estimate,
    interval_estimates,
    iqm,
    mean,
    performance_profile,
    probability_of_improvement,
    run_means,
    score_distribution,
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


def test_the_performance_profile_is_the_share_of_scores_above_each_threshold():
    scores = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert score_distribution([0.0, 2.0, 4.0])(scores).tolist() == [1.0, 0.5, 0.0]  # strictly above
    replicates = np.stack([scores, scores + 10.0])
    assert score_distribution([2.5])(replicates).tolist() == [[0.5], [1.0]]  # leading axes kept, thresholds last
    profile = performance_profile(np.random.default_rng(6).normal(size=(1, 30)), [-1.0, 0.0, 1.0], reps=100)
    assert profile["profile_ci"] == [profile["profile"], profile["profile"]]  # one run: nothing to resample
    spread = performance_profile(np.random.default_rng(6).normal(size=(3, 30)), [-1.0, 0.0, 1.0], reps=300)
    (low, high), point = np.array(spread["profile_ci"]), np.array(spread["profile"])
    assert (low <= point).all() and (point <= high).all() and (low < high).any()
    assert spread["thresholds"] == [-1.0, 0.0, 1.0]


def test_a_curve_over_seeds_gets_an_interval_at_every_step():
    curves = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0], [0.0, 2.0, 2.0]])  # 3 seeds x 3 steps
    point, low, high = interval_estimates(curves, run_means, reps=500)
    assert point.tolist() == [0.0, 2.0, 2.0] == run_means(curves).tolist()
    assert low[0] == high[0] == 0.0 and low[2] == high[2] == 2.0  # the seeds agree there
    assert 1.0 <= low[1] < 2.0 < high[1] <= 3.0


# ---- Cross-check against rliable (Agarwal et al.'s reference implementation, a dev dependency) -------------
#
# Point estimates must agree to float rounding. Bootstrap intervals cannot agree exactly: rliable draws from
# numpy's global RandomState, we from a seeded Generator. A percentile endpoint of R replicates has a Monte-Carlo
# standard deviation of about 2.7 s / sqrt(R) (s: the spread of the bootstrap distribution, for a near-normal one;
# the 95% interval is about 3.9 s wide), so at R = 10,000 each endpoint is off by ~0.7% of the interval's width
# and the difference of two independent runs by ~1%. The tolerance, 4% of the width, is 4 of those standard
# deviations; a real difference of procedure moves an endpoint further: a 90% interval instead of a 95% one by 8%
# of the width, resampling all scores instead of runs within tasks by tens of percent.
RELIABLE_REPS = 10_000
ENDPOINT_TOLERANCE = 0.04  # of the interval's width


@pytest.fixture(scope="module")
def rliable():
    library = pytest.importorskip("rliable.library")
    metrics = pytest.importorskip("rliable.metrics")
    return library, metrics


def _scores(seed: int, runs: int, tasks: int) -> np.ndarray:
    """Per-task difficulty, a per-run offset (a seed's luck) and noise: the structure of the leaderboard's scores."""
    rng = np.random.default_rng(seed)
    return rng.normal(25.0, 2.0, size=(1, tasks)) + rng.normal(0.0, 0.5, size=(runs, 1)) + rng.normal(
        0.0, 0.3, size=(runs, tasks))


def _assert_interval_matches(ours, theirs, step: float = 0.0) -> None:
    """Each endpoint within ENDPOINT_TOLERANCE of the width, or within ``step`` for a statistic whose values are
    multiples of ``step`` (the percentile of such replicates lands on a multiple or between two neighbours)."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    width = theirs[1] - theirs[0]
    assert (width > 0).all()
    assert np.all(np.abs(ours - theirs) <= np.maximum(ENDPOINT_TOLERANCE * width, step)), (ours, theirs)


@pytest.mark.parametrize(("name", "task_bootstrap"), [("mean", False), ("mean", True), ("iqm", False)])
def test_mean_and_iqm_match_rliable(rliable, name, task_bootstrap):
    library, metrics = rliable
    ours, theirs = {"mean": (mean, metrics.aggregate_mean), "iqm": (iqm, metrics.aggregate_iqm)}[name]
    scores = _scores(7, runs=5, tasks=30)
    np.random.seed(11)  # rliable's bootstrap draws from numpy's global generator
    points, intervals = library.get_interval_estimates({"x": scores}, lambda x: np.array([theirs(x)]),
                                                        task_bootstrap=task_bootstrap, reps=RELIABLE_REPS)
    point, low, high = interval_estimate(scores, ours, reps=RELIABLE_REPS, seed=3, task_bootstrap=task_bootstrap)
    assert point == pytest.approx(points["x"][0], abs=1e-12)
    _assert_interval_matches([low, high], intervals["x"][:, 0])
    for shape in [(1, 9), (3, 164), (4, 7)]:  # more point estimates, rliable's functions on the same matrices
        other = np.random.default_rng(sum(shape)).normal(size=shape)
        assert float(ours(other)) == pytest.approx(float(theirs(other)), abs=1e-12)


def test_probability_of_improvement_and_difference_match_rliable(rliable):
    library, metrics = rliable
    rng = np.random.default_rng(8)
    # The statistic itself, exactly: scores on a coarse grid, so that ties within tasks are common.
    for runs_x, runs_y, tasks in [(3, 3, 10), (1, 4, 6), (5, 2, 8), (2, 2, 1)]:
        x, y = (np.round(rng.normal(size=(n, tasks)), 1) for n in (runs_x, runs_y))
        assert float(probability_of_improvement(x, y)) == pytest.approx(metrics.probability_of_improvement(x, y),
                                                                         abs=1e-12)
    x, y = _scores(9, runs=5, tasks=12) + 0.2, _scores(10, runs=4, tasks=12)
    ours = compare(x, y, reps=RELIABLE_REPS, seed=4, task_bootstrap=False)  # rliable resamples runs only here
    # rliable's independent stratified bootstrap of the two matrices with our statistic (equal to rliable's, as
    # shown above; rliable's own runs a Mann-Whitney test per task and replicate: minutes for 10,000 replicates).
    np.random.seed(12)
    _, intervals = library.get_interval_estimates(
        {"poi": [x, y]}, lambda a, b: np.atleast_1d(probability_of_improvement(a, b)), reps=RELIABLE_REPS)
    ties = 1.0 / (2 * len(x) * len(y) * x.shape[1])  # its values: multiples of half a pair, over the tasks
    _assert_interval_matches(ours["probability_of_improvement_ci"], intervals["poi"][:, 0], step=ties)
    np.random.seed(13)
    points, intervals = library.get_interval_estimates(
        {"difference": [x, y]}, lambda a, b: np.array([metrics.aggregate_mean(a) - metrics.aggregate_mean(b)]),
        reps=RELIABLE_REPS)
    assert ours["difference"] == pytest.approx(points["difference"][0], abs=1e-12)
    _assert_interval_matches(ours["difference_ci"], intervals["difference"][:, 0])


def test_performance_profile_matches_rliable(rliable):
    library, _ = rliable
    scores = _scores(14, runs=5, tasks=30)
    thresholds = np.quantile(scores, [0.1, 0.3, 0.5, 0.7, 0.9])  # where the profile has spread across seeds
    np.random.seed(15)
    profiles, intervals = library.create_performance_profile({"x": scores}, thresholds, reps=RELIABLE_REPS)
    ours = performance_profile(scores, thresholds, reps=RELIABLE_REPS, seed=5)
    assert ours["profile"] == pytest.approx(profiles["x"].tolist(), abs=1e-12)
    _assert_interval_matches(ours["profile_ci"], intervals["x"], step=1.0 / scores.size)
