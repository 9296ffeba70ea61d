"""The study's statistics on constructed cases whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salclass.study import stats


def _outcomes(n: int, acc: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(n) < acc


def test_identical_predictions_give_zero_difference_and_p_one():
    base = _outcomes(400, 0.6, 1)
    cmp_ = stats.compare(base, base.copy(), base, base.copy(), resamples=500)
    assert cmp_.top1.diff == 0.0
    assert cmp_.top1.low <= 0.0 <= cmp_.top1.high
    assert cmp_.top5.low <= 0.0 <= cmp_.top5.high
    assert cmp_.mcnemar.p == 1.0
    assert (cmp_.mcnemar.b, cmp_.mcnemar.c) == (0, 0)
    assert cmp_.verdict == stats.NOISE


def test_clearly_better_predictions_are_detected():
    base = _outcomes(1000, 0.5, 2)
    better = base.copy()
    wrong = np.flatnonzero(~base)
    better[wrong[: len(wrong) // 2]] = True  # fix half of the baseline's mistakes, break nothing
    cmp_ = stats.compare(better, base, resamples=1000)
    expected = (len(wrong) // 2) / 1000
    assert cmp_.top1.diff == pytest.approx(expected)
    assert cmp_.top1.low > 0.0
    assert cmp_.mcnemar.p < 1e-6
    assert cmp_.verdict == stats.BETTER
    # And the same pair the other way round is worse.
    assert stats.compare(base, better, resamples=300).verdict == stats.WORSE


def test_small_random_difference_is_noise():
    base = _outcomes(200, 0.5, 3)
    flipped = base.copy()
    flipped[:3] = ~flipped[:3]
    cmp_ = stats.compare(flipped, base, resamples=1000)
    assert cmp_.top1.low < 0.0 < cmp_.top1.high
    assert cmp_.verdict == stats.NOISE


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


def test_several_seeds_resample_seeds_too():
    rng = np.random.default_rng(0)
    base = rng.random((3, 500)) < 0.5
    # Same images, but the variant's gain differs a lot from seed to seed.
    var = base.copy()
    for s, k in enumerate((0, 60, 120)):
        idx = np.flatnonzero(~base[s])[:k]
        var[s, idx] = True
    one_level = stats.paired_bootstrap(var[1], base[1], resamples=800)
    multi = stats.paired_bootstrap(var, base, resamples=800)
    assert multi.over == "images+seeds" and one_level.over == "images"
    assert multi.diff == pytest.approx(np.mean([0, 60, 120]) / 500)
    # Seed-to-seed spread makes the interval much wider than image noise of one seed alone.
    assert (multi.high - multi.low) > 2 * (one_level.high - one_level.low)


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
