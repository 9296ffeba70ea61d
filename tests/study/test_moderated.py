"""The moderated t and the variance floor, against formulas written out here (Smyth 2004; docs/study.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special
from scipy import stats as sps

from salclass.settings import SettingsError
from salclass.study import moderation, stats
from salclass.study.config import load_study


def _runs(rng, seeds: int, images: int, acc: float, swing: float) -> np.ndarray:
    """Per-image correctness of one network over seeds; each seed moves its accuracy by N(0, swing)."""
    shift = rng.normal(0.0, swing, (seeds, 1))
    return rng.random((seeds, images)) < np.clip(acc + shift, 0.01, 0.99)


def _family(seed: int, swings, seeds: int = 3, images: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(_runs(rng, seeds, images, 0.6, s), _runs(rng, seeds, images, 0.6, s)) for s in swings]


def _by_hand(v, b) -> dict:
    """The seeds+images layout's parts, written out: mean, floored per-seed variance, floor, image part."""
    x = v.astype(float) - b.astype(float)
    k, n = x.shape
    d = x.mean(axis=1)
    xbar = x.mean(axis=0)
    resid = x - d[:, None] - xbar[None, :] + x.mean()
    ms_e = (resid ** 2).sum() / ((n - 1) * (k - 1))
    return {"diff": x.mean(), "k": k, "d": k - 1, "s2": max(d.var(ddof=1), ms_e / n), "floor": ms_e / n,
            "image": max(0.0, xbar.var(ddof=1) / n - ms_e / (n * k))}


def _prior_by_hand(parts: list[dict]) -> tuple[float, float]:
    """(d0, s0^2) by the moments of log s^2; d0 = inf when the spread is all sampling noise."""
    d = np.array([p["d"] for p in parts], float)
    e = np.log([p["s2"] for p in parts]) - special.digamma(d / 2) + np.log(d / 2)
    excess = np.var(e, ddof=1) - np.mean(special.polygamma(1, d / 2))
    if excess <= 0:
        return math.inf, math.exp(e.mean())
    half = optimize.brentq(lambda a: special.polygamma(1, a) - excess, 1e-8, 1e8)
    d0 = 2 * half
    return d0, math.exp(e.mean() + special.digamma(d0 / 2) - math.log(d0 / 2))


def _p_by_hand(part: dict, d0: float, s0: float, weight: float | None) -> tuple[float, float, float]:
    """(p, se, df) of the moderated test for one comparison."""
    d = part["d"]
    if weight is not None:
        d0 = min(d0, weight * d)
    if math.isinf(d0):
        s2, df = s0, math.inf
    else:
        s2, df = (d0 * s0 + d * part["s2"]) / (d0 + d), d0 + d
    se = math.sqrt(max(s2, part["floor"]) / part["k"] + part["image"])
    return 2 * sps.t.sf(abs(part["diff"]) / se, df), se, df


def _check(family, weight, expect_finite: bool):
    comps = [stats.compare(v, b) for v, b in family]
    parts = [_by_hand(v, b) for v, b in family]
    d0, s0 = _prior_by_hand(parts)
    assert math.isfinite(d0) == expect_finite
    out = moderation.moderate(comps, weight=weight)
    for c, part in zip(out, parts):
        p, se, df = _p_by_hand(part, d0, s0, weight)
        assert c.method == stats.MODERATED and c.prior.comparisons == len(family)
        assert c.prior.df == pytest.approx(d0) and c.prior.var == pytest.approx(s0)
        assert c.top1.se == pytest.approx(se) and c.top1.df == pytest.approx(df)
        assert c.p == pytest.approx(p)
        assert c.top1.high - c.top1.diff == pytest.approx(sps.t.ppf(0.975, df) * se)
    return d0, out


@pytest.mark.parametrize("y", [1e-5, 0.02, 0.6, 5.0, 3e4, 2e6, 1e9])
def test_the_inverse_of_trigamma_over_every_scale(y):
    # from a prior weight of 2e5 (a spread of log s^2 barely above its sampling noise) down to 6e-5
    x = moderation._trigamma_inverse(y)
    root = math.exp(optimize.brentq(lambda u: math.log(special.polygamma(1, math.exp(u)) / y), -40.0, 40.0,
                                    xtol=1e-14))
    assert x == pytest.approx(root, rel=1e-9)


def test_moderated_variance_and_degrees_of_freedom_by_formula():
    # Comparisons whose training noise differs widely: a finite prior df (about 3.9), used as fitted ...
    family = _family(1, [0.0, 0.1, 0.0, 0.15, 0.02, 0.05])
    d0, _ = _check(family, weight=None, expect_finite=True)
    assert 2 < d0 < 10
    # ... or, by default, counted as the comparisons' own 2 degrees of freedom
    _, out = _check(family, weight=moderation.PRIOR_WEIGHT, expect_finite=True)
    assert all(c.top1.df == pytest.approx(4) for c in out)


def test_two_comparisons_are_enough_to_fit():
    _check(_family(1, [0.0, 0.1]), weight=None, expect_finite=True)


def test_top5_and_the_level_are_moderated_like_top1():
    # top-5 given as the top-1 outcomes: its fit and test must be top-1's, at the weight asked for
    family = _family(1, [0.0, 0.1, 0.0, 0.15, 0.02, 0.05])
    for weight in (None, moderation.PRIOR_WEIGHT):
        out = moderation.moderate([stats.compare(v, b, v, b, level=0.9) for v, b in family], weight=weight)
        for c in out:
            assert c.top5.df == c.top1.df and c.top5.se == pytest.approx(c.top1.se)
            assert (c.top1.level, c.top5.level) == (0.9, 0.9)
            assert c.top1.high - c.top1.diff == pytest.approx(sps.t.ppf(0.95, c.top1.df) * c.top1.se)
    assert out[0].top1.df == 4 and math.isfinite(out[0].prior.df) and out[0].prior.df > 2


def test_the_prior_counts_as_at_most_the_comparisons_own_seeds():
    # Similar noise everywhere: the fit puts a large (here infinite) weight on the prior; the default caps it.
    family = _family(11, [0.02] * 8)
    d0, out = _check(family, weight=moderation.PRIOR_WEIGHT, expect_finite=False)
    assert all(c.top1.df == pytest.approx(2 * 2) for c in out)  # d0 = d = 2 at 3 seeds


def test_infinite_prior_df_gives_the_pooled_variance_and_a_normal_reference():
    family = _family(11, [0.02] * 8)
    _, out = _check(family, weight=None, expect_finite=False)
    parts = [_by_hand(v, b) for v, b in family]
    pooled = math.exp(np.mean(np.log([p["s2"] for p in parts])) - special.digamma(1.0))  # d = 2: log(d/2) = 0
    for c, part in zip(out, parts):
        assert c.top1.se ** 2 == pytest.approx(max(pooled, part["floor"]) / 3 + part["image"])
        assert math.isinf(c.top1.df)
        assert c.p == pytest.approx(2 * sps.norm.sf(abs(part["diff"]) / c.top1.se))


def test_no_information_leaves_the_comparisons_own_test():
    (v, b), = _family(2, [0.03])
    alone = moderation.moderate([stats.compare(v, b)])[0]
    iv, p = stats.seeds_images_t(v, b)
    part = _by_hand(v, b)
    assert alone.prior.df == 0.0 and alone.prior.var is None
    assert alone.p == pytest.approx(p) and alone.top1.se == pytest.approx(iv.se) and alone.top1.df == 2
    assert alone.p == pytest.approx(2 * sps.t.sf(abs(part["diff"]) / math.sqrt(part["s2"] / 3 + part["image"]), 2))
    # one-seed comparisons measure no noise: they neither feed the fit nor change
    one = stats.compare(v[0], b[0])
    mixed = moderation.moderate([stats.compare(v, b), one])
    assert mixed[0].prior.comparisons == 1 and mixed[1] == one and mixed[1].method == stats.MCNEMAR


def test_equal_per_seed_differences_use_the_floor_not_a_zero_variance():
    # Two seeds, the same difference (1/3) in both, on different images: s^2 = 0, and the image part is clipped
    # to 0 (its residual share is larger). Without the floor this gave p = 0 and a verdict.
    v = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], bool)
    b = np.zeros((2, 6), bool)
    x = v.astype(float) - b
    assert x.mean(axis=1).var(ddof=1) == 0.0
    resid = x - x.mean(axis=1)[:, None] - x.mean(axis=0)[None, :] + x.mean()
    ms_e = (resid ** 2).sum() / (5 * 1)  # 2 / 5
    assert x.mean(axis=0).var(ddof=1) / 6 - ms_e / 12 < 0  # the image part is clipped
    se = math.sqrt(ms_e / 6 / 2)  # floor / K
    iv, p = stats.seeds_images_t(v, b)
    assert iv.se == pytest.approx(se) and p == pytest.approx(2 * sps.t.sf((1 / 3) / se, 1))
    assert p > 0.2
    for decided in (stats.decide([stats.compare(v, b)], 0.05)[0],
                    stats.decide(moderation.moderate([stats.compare(v, b)]), 0.05)[0]):
        assert decided.verdict == stats.NOISE


def test_the_same_difference_on_the_same_images_in_every_seed_has_no_training_variance_and_feeds_no_fit():
    # One image of ten fixed in each of three seeds, the same image: per-seed differences 0.1 (whose mean in
    # floating point is not 0.1) and no seed-by-image noise. Both are exactly zero, not rounding dust, which
    # the fit of log s^2 would read as a variance of 1e-34 and let drag the family's prior to nothing.
    v, b = np.zeros((3, 10), bool), np.zeros((3, 10), bool)
    v[:, 4] = True
    diff, noise = stats.noise_parts(v, b)
    assert diff == pytest.approx(0.1) and noise.seed_var == 0.0 and noise.floor == 0.0 and noise.training_var == 0.0
    assert noise.image_var == pytest.approx(np.var(v[0].astype(float), ddof=1) / 10)
    others = [stats.compare(v_, b_) for v_, b_ in _family(1, [0.0, 0.1, 0.0, 0.15, 0.02, 0.05])]
    alone = moderation.moderate(others)[0].prior
    joined = moderation.moderate(others + [stats.compare(v, b)])
    assert joined[0].prior == alone and alone.comparisons == len(others)
    # it is moderated like the others: the prior's variance, with d0 + d degrees of freedom
    d0 = min(alone.df, moderation.PRIOR_WEIGHT * 2)
    assert joined[-1].top1.se ** 2 == pytest.approx(d0 * alone.var / (d0 + 2) / 3 + noise.image_var)


def test_a_comparison_with_no_spread_at_all_borrows_the_familys_training_variance():
    v, b = np.ones((3, 200), bool), np.zeros((3, 200), bool)
    alone = stats.compare(v, b)
    assert (alone.top1.se, alone.top1.df, alone.p, alone.top1.noise.training_var) == (0.0, 2, 1.0, 0.0)
    out = moderation.moderate([stats.compare(v_, b_) for v_, b_ in _family(1, [0.0, 0.1, 0.0, 0.15, 0.02, 0.05])]
                         + [alone])
    prior, last = out[0].prior, out[-1]
    d0 = min(prior.df, moderation.PRIOR_WEIGHT * 2)
    assert prior.comparisons == 6 and last.method == stats.MODERATED and last.top1.df == d0 + 2
    assert last.top1.se == pytest.approx(math.sqrt(d0 * prior.var / (d0 + 2) / 3))


def test_one_difference_on_every_image_and_seed_measures_nothing_and_gives_no_verdict():
    v, b = np.ones((3, 50), bool), np.zeros((3, 50), bool)
    iv, p = stats.seeds_images_t(v, b)
    assert iv.diff == 1.0 and iv.se == 0.0 and p == 1.0
    assert stats.decide([stats.compare(v, b)], 0.05)[0].verdict == stats.NOISE


def test_the_seeds_images_setting_keeps_the_comparisons_own_test():
    family = _family(4, [0.002, 0.03, 0.002, 0.06])
    comps = [stats.compare(v, b) for v, b in family]
    kept = moderation.family_test(comps, stats.TEST_SEEDS_IMAGES)
    for c, (v, b) in zip(kept, family):
        part = _by_hand(v, b)
        assert c.method == stats.SEEDS_T and c.prior is None and c.top1.df == 2
        assert c.p == pytest.approx(2 * sps.t.sf(abs(part["diff"]) / math.sqrt(part["s2"] / 3 + part["image"]), 2))
    moderated = moderation.family_test(comps, stats.TEST_MODERATED)
    assert all(c.method == stats.MODERATED for c in moderated)
    with pytest.raises(ValueError):
        moderation.family_test(comps, "pooled")


def test_verdict_test_setting(tmp_path):
    cfg = tmp_path / "s.yaml"
    body = "experiments:\n  - {name: A, model: RGB, stage: baselines}\n"
    cfg.write_text(body)
    assert load_study(cfg).verdict_test == stats.TEST_MODERATED
    cfg.write_text(body + "verdict_test: seeds-images\n")
    assert load_study(cfg).verdict_test == stats.TEST_SEEDS_IMAGES
    cfg.write_text(body + "verdict_test: pooled\n")
    with pytest.raises(SettingsError):
        load_study(cfg)
