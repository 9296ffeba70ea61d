"""The study's statistics on constructed cases whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salclass.study import stats


def _outcomes(n: int, acc: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(n) < acc


def _decided(*comparisons, alpha=0.05):
    return stats.decide(list(comparisons), alpha)


def test_identical_predictions_give_zero_difference_and_p_one():
    base = _outcomes(400, 0.6, 1)
    cmp_ = stats.compare(base, base.copy(), base, base.copy(), resamples=500)
    assert cmp_.top1.diff == 0.0
    assert cmp_.top1.low <= 0.0 <= cmp_.top1.high
    assert cmp_.top5.low <= 0.0 <= cmp_.top5.high
    assert cmp_.mcnemar.p == 1.0 and cmp_.p == 1.0
    assert (cmp_.mcnemar.b, cmp_.mcnemar.c) == (0, 0)
    # one seed: never a verdict, however clear the images make it
    assert _decided(cmp_)[0].verdict == stats.NO_VERDICT


def _better(base: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Fix `fraction` of the baseline's mistakes in every seed, break nothing."""
    better = base.copy()
    for row in np.atleast_2d(better):
        wrong = np.flatnonzero(~row)
        row[wrong[: int(len(wrong) * fraction)]] = True
    return better


def test_one_seed_is_never_a_verdict_however_large_the_difference():
    base = _outcomes(1000, 0.5, 2)
    cmp_ = _decided(stats.compare(_better(base), base, resamples=1000))[0]
    assert cmp_.top1.low > 0.0 and cmp_.top1.over == "images"
    assert cmp_.method == stats.MCNEMAR and cmp_.p < 1e-6  # the image-only test is still shown
    assert cmp_.verdict == stats.NO_VERDICT and not cmp_.can_decide


def test_clearly_better_over_seeds_is_detected_and_reversed_is_worse():
    rng = np.random.default_rng(2)
    base = rng.random((3, 1000)) < 0.5
    better = _better(base)
    cmp_ = _decided(stats.compare(better, base))[0]
    assert cmp_.method == stats.SEEDS_T and cmp_.top1.over == "seeds+images"
    assert cmp_.top1.low > 0.0 and cmp_.p < 0.01
    assert cmp_.verdict == stats.BETTER
    assert _decided(stats.compare(base, better))[0].verdict == stats.WORSE


def test_seed_to_seed_spread_widens_the_interval_and_blocks_the_verdict():
    rng = np.random.default_rng(0)
    base = rng.random((3, 500)) < 0.5
    # the same mean gain, once steady and once coming from a single lucky seed
    steady = _better(base, 0.1)
    lucky = base.copy()
    lucky[2] = _better(base[2], 0.3)
    a, b = stats.compare(steady, base), stats.compare(lucky, base)
    assert a.top1.diff == pytest.approx(b.top1.diff, abs=0.002)
    assert (b.top1.high - b.top1.low) > 3 * (a.top1.high - a.top1.low)
    assert _decided(a)[0].verdict == stats.BETTER
    assert _decided(b)[0].verdict == stats.NOISE


def test_seeds_images_t_by_hand():
    # 2 seeds x 4 images; x = variant - baseline
    v = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], bool)
    b = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], bool)
    x = v.astype(float) - b
    d, xbar = x.mean(1), x.mean(0)  # per seed [0.5, 0.25]; per image [0.5, 0, 0, 1]
    # residuals of the two-way layout: x - d[k] - xbar[i] + mean, mean square over (4-1)(2-1) = 3
    res = x - d[:, None] - xbar[None, :] + x.mean()
    ms_e = (res ** 2).sum() / 3
    v1, v2 = d.var(ddof=1) / 2, xbar.var(ddof=1) / 4 - ms_e / 8
    assert v2 > 0  # this case has a real image part
    df = 1  # seeds - 1
    iv, p = stats.seeds_images_t(v, b)
    assert iv.diff == pytest.approx(0.375) and iv.se == pytest.approx(math.sqrt(v1 + v2))
    assert iv.df == pytest.approx(df)
    from scipy import stats as sps
    assert p == pytest.approx(2 * sps.t.sf(0.375 / math.sqrt(v1 + v2), df))
    assert iv.high - iv.diff == pytest.approx(sps.t.ppf(0.975, df) * math.sqrt(v1 + v2))
    with pytest.raises(ValueError):
        stats.seeds_images_t(v[:1], b[:1])


def test_needed_difference_is_holms_first_step_at_the_standard_error():
    from dataclasses import replace
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    c = stats.compare(rng.random((5, 300)) < 0.5, rng.random((5, 300)) < 0.5)
    c = replace(c, family=29)
    assert stats.needed_difference(c, 0.05) == pytest.approx(sps.t.ppf(1 - 0.05 / 58, 4) * c.top1.se)
    # a difference of exactly that size (and a hair more) at that standard error passes Holm's first step
    p_at = 2 * sps.t.sf(stats.needed_difference(c, 0.05) * 1.0001 / c.top1.se, 4)
    assert p_at * 29 < 0.05
    assert stats.needed_difference(stats.compare(rng.random(300) < 0.5, rng.random(300) < 0.5), 0.05) is None


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # 2 * 0.6 is capped at 1
    assert stats.holm([]) == []


def test_the_family_adjustment_decides_the_verdict():
    from dataclasses import replace

    rng = np.random.default_rng(5)
    base = rng.random((3, 2000)) < 0.5
    gain = replace(stats.compare(_better(base, 0.1), base), p=0.01)  # significant alone, not among 30
    null = replace(stats.compare(base, base), p=0.5)
    alone = _decided(gain)[0]
    in_family = _decided(gain, *[null] * 29)[0]
    assert alone.family == 1 and in_family.family == 30
    assert alone.p_adjusted == pytest.approx(0.01) and in_family.p_adjusted == pytest.approx(0.3)
    assert alone.verdict == stats.BETTER and in_family.verdict == stats.NOISE


def test_equivalence_needs_a_narrow_interval_inside_the_margin():
    rng = np.random.default_rng(6)
    base = rng.random((5, 3000)) < 0.5
    same = stats.compare(base, base)
    assert stats.equivalent(same.top1, 0.01, 0.05) is True
    wide = stats.compare(rng.random((3, 60)) < 0.5, rng.random((3, 60)) < 0.5)
    assert stats.equivalent(wide.top1, 0.01, 0.05) is False
    one_seed = stats.compare(base[0], base[0])
    assert stats.equivalent(one_seed.top1, 0.01, 0.05) is None


def test_mcnemar_exact_matches_hand_computation():
    # b=3, c=10: p = 2 * sum_{i<=3} C(13, i) / 2^13 = 2 * (1 + 13 + 78 + 286) / 8192
    res = stats.mcnemar_from_counts(3, 10)
    assert res.method == "exact"
    assert res.p == pytest.approx(2 * 378 / 8192)
    # Built from per-image outcomes rather than counts.
    v = np.array([1, 1, 1] + [0] * 10 + [1] * 5 + [0] * 7, dtype=bool)
    b = np.array([0, 0, 0] + [1] * 10 + [1] * 5 + [0] * 7, dtype=bool)
    assert stats.mcnemar(v, b).p == pytest.approx(2 * 378 / 8192)


def test_mcnemar_chi_square_matches_hand_computation():
    # b=30, c=10: (|30-10|-1)^2 / 40 = 9.025; the chi-square(1) tail is erfc(sqrt(x/2)).
    res = stats.mcnemar_from_counts(30, 10)
    assert res.method == "chi2"
    assert res.statistic == pytest.approx(9.025)
    assert res.p == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))


def test_mcnemar_symmetric_counts_give_p_one():
    assert stats.mcnemar_from_counts(5, 5).p == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_level_widens_interval():
    base = _outcomes(300, 0.5, 4)
    var = _outcomes(300, 0.55, 5)
    a = stats.paired_bootstrap(var, base, resamples=400, seed=7)
    b = stats.paired_bootstrap(var, base, resamples=400, seed=7)
    assert a == b
    wide = stats.paired_bootstrap(var, base, resamples=400, seed=7, level=0.99)
    assert wide.low <= a.low and wide.high >= a.high
    assert a.low <= a.diff <= a.high


def test_mean_spread():
    s = stats.mean_spread([0.5, 0.6, 0.7])
    assert s.mean == pytest.approx(0.6)
    assert s.std == pytest.approx(0.1)
    assert stats.mean_spread([0.3]).std == 0.0


def test_per_class_counts():
    labels = np.array([0, 0, 1, 1, 1, 2])
    correct = np.array([[1, 0, 1, 1, 0, 1], [1, 1, 0, 0, 0, 1]], dtype=bool)
    right, total = stats.per_class_counts(labels, correct, 3)
    assert right.tolist() == [3, 2, 2]
    assert total.tolist() == [4, 6, 2]


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError):
        stats.paired_bootstrap(np.ones(5, bool), np.ones(6, bool))


def test_verdict_needs_the_adjusted_p_strictly_below_alpha_and_reads_the_sign():
    from dataclasses import replace

    rng = np.random.default_rng(7)
    base = rng.random((3, 200)) < 0.5
    c = stats.compare(_better(base, 0.3), base)
    assert stats.verdict(replace(c, p_adjusted=0.05), 0.05) == stats.NOISE
    assert stats.verdict(replace(c, p_adjusted=0.0499), 0.05) == stats.BETTER
    # any non-zero difference has its direction, a whole point included
    for diff, word in ((1.0, stats.BETTER), (-1.0, stats.WORSE)):
        assert stats.verdict(replace(c, top1=replace(c.top1, diff=diff), p_adjusted=0.001), 0.05) == word


def test_equivalence_at_its_edges():
    from dataclasses import replace

    from scipy import stats as sps

    df = 2.0
    crit = sps.t.ppf(1 - 0.05, df)
    # both one-sided t statistics 0.2% past the critical value at a margin of 0.01
    iv = stats.Interval(diff=0.0, low=-0.1, high=0.1, level=0.95, over="seeds+images", se=0.01 / (crit * 1.002),
                        df=df)
    assert stats.equivalent(iv, 0.01, 0.05) is True  # the default family is one comparison
    assert stats.equivalent(iv, 0.01, 0.05, family=2) is False
    assert stats.equivalent(iv, 0.0099, 0.05) is False
    # no variance: strictly inside the margin
    flat = stats.Interval(diff=0.01, low=0.01, high=0.01, level=0.95, over="seeds+images", se=0.0, df=df)
    assert stats.equivalent(flat, 0.01, 0.05) is False
    assert stats.equivalent(replace(flat, diff=0.0099, low=0.0099, high=0.0099), 0.01, 0.05) is True


def test_seeds_images_t_with_one_or_two_images():
    # one image: no image part, only the spread of the per-seed differences
    v, b = np.array([[1], [0], [1]], bool), np.zeros((3, 1), bool)
    iv, _ = stats.seeds_images_t(v, b)
    assert iv.diff == pytest.approx(2 / 3) and iv.se == pytest.approx(math.sqrt(np.var([1, 0, 1], ddof=1) / 3))
    # two images, the same difference in every seed: all of the variance is the images'
    v, b = np.array([[1, 0]] * 3, bool), np.zeros((3, 2), bool)
    iv, _ = stats.seeds_images_t(v, b)
    assert iv.se == pytest.approx(math.sqrt(np.var([1, 0], ddof=1) / 2)) and iv.level == 0.95


def test_seeds_images_t_of_identical_runs():
    base = _outcomes(300, 0.6, 8)
    runs = np.stack([base, ~base, base])
    iv, p = stats.seeds_images_t(runs, runs.copy())
    assert p == 1.0 and iv.low == iv.diff == iv.high == 0.0
    assert (iv.level, iv.over) == (0.95, "seeds+images")
