"""Properties of the interval helpers: coverage, pairing, grouping, seeds, trends, and
the AUROC statistics (rank identity, ties, bootstrap, TPR at an FPR, paired differences)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from mcutils.core import stats
from mcutils.core.checks import ParameterError


def test_interval_shape_is_plain():
    iv = stats.interval(np.float32(1.5), np.float64(1.0), 2, np.int64(7))
    assert iv == {"estimate": 1.5, "ci": [1.0, 2.0], "n": 7}
    assert all(type(v) in (float, int, list) for v in iv.values())


def test_bootstrap_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for rep in range(150):
        x = rng.normal(3.0, 1.0, size=60)
        iv = stats.bootstrap_ci(x, n_boot=400, seed=rep)
        hits += iv["ci"][0] <= 3.0 <= iv["ci"][1]
        assert iv["n"] == 60 and iv["estimate"] == pytest.approx(x.mean())
    assert 0.88 <= hits / 150 <= 0.99


def test_bootstrap_is_seeded_and_drops_nonfinite_resamples():
    x = np.arange(20.0)
    assert stats.bootstrap_ci(x, seed=3) == stats.bootstrap_ci(x, seed=3)
    iv = stats.bootstrap_ci(x, lambda v: np.nan if v[0] == 0 else v.mean(), n_boot=200)
    assert np.isfinite(iv["ci"]).all()
    with pytest.raises(ValueError, match="empty"):
        stats.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="one length"):
        stats.bootstrap_ci((np.arange(3), np.arange(4)), lambda a, b: 0.0)


def test_vectorized_bootstrap_gives_the_loop_s_interval():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))

    def loop_stat(u, v):
        return float((u - v).mean())

    def batched_stat(u, v):  # u, v: [resamples, units, 3]
        return (u - v).mean(axis=(-2, -1))

    for n_boot in (10, 300, 1000):  # fewer and more resamples than one chunk
        want = stats.bootstrap_ci((a, b), loop_stat, n_boot=n_boot, seed=2)
        got = stats.bootstrap_ci((a, b), batched_stat, n_boot=n_boot, seed=2, vectorized=True)
        assert got["estimate"] == pytest.approx(want["estimate"])
        assert got["ci"] == pytest.approx(want["ci"]) and got["n"] == want["n"]
    # a statistic that ignores the resample axis is caught
    with pytest.raises(ValueError, match="one value per resample"):
        stats.bootstrap_ci(a[:, 0], lambda v: float(v.mean()), n_boot=50, vectorized=True)
    # non-finite resamples are dropped as in the loop
    iv = stats.bootstrap_ci(a[:, 0], lambda v: np.where(v[..., 0] > 1, np.nan, v.mean(-1)),
                            n_boot=200, vectorized=True)
    assert np.isfinite(iv["ci"]).all()


def test_paired_bootstrap_is_narrower_when_units_are_shared():
    rng = np.random.default_rng(0)
    unit = rng.normal(0, 5, size=80)           # large shared unit effect
    a = unit + 0.3 + rng.normal(0, 0.2, 80)
    b = unit + rng.normal(0, 0.2, 80)
    paired = stats.paired_difference_ci(a, b)
    # unpaired: resample a and b independently
    rng2 = np.random.default_rng(0)
    diffs = [a[rng2.integers(0, 80, 80)].mean() - b[rng2.integers(0, 80, 80)].mean()
             for _ in range(2000)]
    unpaired_width = np.subtract(*np.quantile(diffs, [0.975, 0.025]))
    width = paired["ci"][1] - paired["ci"][0]
    assert width < unpaired_width / 5
    assert paired["ci"][0] > 0.2 and paired["ci"][1] < 0.4


def test_strata_keep_their_sizes():
    labels = np.array([0] * 5 + [1] * 45)
    values = labels.astype(float)
    iv = stats.bootstrap_ci(values, np.mean, strata=labels, n_boot=200)
    assert iv["ci"] == [0.9, 0.9]          # every resample keeps 45 of 50 ones
    free = stats.bootstrap_ci(values, np.mean, n_boot=200)
    assert free["ci"][0] < 0.9 < free["ci"][1]


def test_grouped_bootstrap_counts_groups_and_widens_for_clusters():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(10), 20)
    values = rng.normal(0, 1, 10)[groups] + rng.normal(0, 0.1, 200)
    g = stats.grouped_bootstrap_ci(values, groups)
    plain = stats.bootstrap_ci(values)
    assert g["n"] == 10 and plain["n"] == 200
    assert (g["ci"][1] - g["ci"][0]) > 2.5 * (plain["ci"][1] - plain["ci"][0])


def test_seed_interval_is_student_t():
    x = [0.80, 0.84, 0.83]
    iv = stats.seed_interval(x)
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(x), scale=sps.sem(x))
    assert iv["ci"] == pytest.approx([lo, hi]) and iv["n"] == 3
    one = stats.seed_interval([0.8])
    assert np.isnan(one["ci"]).all() and one["n"] == 1


def test_wilcoxon_detects_a_shift_and_not_its_absence():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 40)
    shifted = stats.wilcoxon_paired(a + 0.8 + rng.normal(0, 0.3, 40), a, alternative="greater")
    same = stats.wilcoxon_paired(a + rng.normal(0, 0.3, 40), a)
    assert shifted["pvalue"] < 1e-6 and shifted["median_difference"] > 0.5
    assert same["pvalue"] > 0.01
    assert stats.wilcoxon_paired(a, a)["pvalue"] == 1.0


def test_trend_robust_correlation_removes_a_shared_trend():
    rng = np.random.default_rng(4)
    t = np.linspace(0, 1, 60)
    trend = np.sin(np.pi * t) * 5
    x = trend + rng.normal(0, 0.3, 60)
    y = trend + rng.normal(0, 0.3, 60)       # linked only through the trend
    assert np.corrcoef(x, y)[0, 1] > 0.9
    diff = stats.trend_robust_correlation(x, y, method="diff")
    assert diff["ci"][0] < 0 < diff["ci"][1] and diff["n"] == 59
    # a real step-to-step link survives
    walk = np.cumsum(rng.normal(0, 1, 60))
    linked = stats.trend_robust_correlation(walk, walk + rng.normal(0, 0.2, 60))
    assert linked["ci"][0] > 0.8
    det = stats.trend_robust_correlation(t * 3 + rng.normal(0, 1, 60),
                                         t * 3 + rng.normal(0, 1, 60), t=t, method="detrend")
    assert det["ci"][0] < 0 < det["ci"][1]
    with pytest.raises(ValueError, match="method"):
        stats.trend_robust_correlation(x, y, method="wiggle")


# ----------------------------------------------------------------------------- AUROC
def _separable(n=60, shift=3.0, seed=0):
    """``(scores [2n, 3], labels, groups)``: n negatives and n positives shifted along the
    first feature, row i paired with row n + i."""
    rng = np.random.default_rng(seed)
    neg = rng.normal(size=(n, 3))
    pos = rng.normal(size=(n, 3)) + np.array([shift, 0, 0])
    return (np.concatenate([neg, pos]), np.r_[np.zeros(n, int), np.ones(n, int)],
            np.r_[np.arange(n), np.arange(n)])


def test_auroc_of_known_separations():
    assert stats.auroc_of([0, 1, 2], [3, 4]) == 1.0
    assert stats.auroc_of([3, 4], [0, 1, 2]) == 0.0
    assert stats.auroc_of([1, 1], [1, 1]) == 0.5
    assert math.isnan(stats.auroc_of([], [1.0]))


def test_tpr_at_fpr_reads_the_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    for trial in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = [0, 1]
        s = np.round(rng.normal(size=60) + y, 1)  # many ties
        f, t, _ = roc_curve(y, s)
        for fpr in (0.0, 0.05, 0.1, 0.3, 1.0):
            assert stats.tpr_at_fpr(y, s, fpr) == pytest.approx(t[f <= fpr + 1e-12].max())


def test_tpr_metric_intervals_and_paired_differences():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    assert stats.tpr_at_fpr(y, perfect, 0.05) == 1.0
    # one negative scores above every positive: at FPR <= 5% nothing is detected yet
    bad = np.array([0.1, 0.2, 0.3, 0.95, 0.6, 0.7, 0.8, 0.9])
    assert stats.tpr_at_fpr(y, bad, 0.05) == 0.0
    assert stats.tpr_at_fpr(y, bad, 0.25) == 1.0
    iv = stats.metric_interval(y, perfect, n_boot=200)
    assert iv["estimate"] == 1.0 and iv["ci"] == [1.0, 1.0] and iv["n"] == 8
    # groups: paired rows are resampled together (n counts groups)
    g = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert stats.metric_interval(y, perfect, g, n_boot=200)["n"] == 4
    # a detector against itself differs by exactly 0; a better one by a positive interval
    rng = np.random.default_rng(0)
    yy = np.r_[np.zeros(100, int), np.ones(100, int)]
    good = yy * 2.0 + rng.normal(size=200)
    weak = yy * 0.3 + rng.normal(size=200)
    zero = stats.auroc_difference(yy, good, good, n_boot=200)
    assert zero["ci"] == [0.0, 0.0]
    diff = stats.auroc_difference(yy, good, weak, np.r_[np.arange(100), np.arange(100)],
                                      n_boot=300)
    assert diff["ci"][0] > 0 and diff["n"] == 100
    tdiff = stats.auroc_difference(yy, good, weak, metric="tpr", n_boot=200)
    assert tdiff["estimate"] > 0


def test_auroc_and_bootstrap():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert stats.auroc(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), num_boot=0).auc == 1.0
    assert stats.auroc(y, np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), num_boot=0).auc == 0.0
    x, yy, g = _separable(n=80, shift=1.0)
    r = stats.auroc(yy, x[:, 0], num_boot=300, seed=0)
    assert r.low < r.auc < r.high and r.high - r.low < 0.3
    rg = stats.auroc(yy, x[:, 0], num_boot=300, seed=0, groups=g)
    assert rg.low < rg.auc < rg.high
    fpr, tpr = stats.roc_curve(yy, x[:, 0])
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    with pytest.raises(ParameterError):
        stats.auroc(np.zeros(4), np.ones(4))


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # many ties
    assert abs(stats.auroc(y, s, num_boot=0).auc - roc_auc_score(y, s)) < 1e-12


def test_format_interval_and_interval_word():
    iv = {"estimate": 0.5, "ci": [0.2, 0.8], "n": 3}
    assert stats.format_interval(iv) == "0.50 [0.20, 0.80]"
    assert stats.format_interval({"estimate": 1.0, "ci": [float("nan")] * 2, "n": 1},
                                 1) == "1.0 [n/a, n/a]"
    assert stats.interval_word(iv, "up", "down", "flat") == "up"
    assert stats.interval_word(iv, "up", "down", "flat", threshold=0.5) == "flat"
    assert stats.interval_word(iv, "up", "down", "flat", threshold=0.9) == "down"
    assert stats.interval_word({"estimate": 1.0, "ci": [float("nan")] * 2, "n": 1},
                               "up", "down", "flat") == "flat"
