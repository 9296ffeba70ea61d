"""Statistics for comparing training runs: pure functions on per-image correctness.

Every comparison is paired: a variant and its baseline are evaluated on the same
validation images and trained with the same seeds, so the per-image outcomes of
the two can be compared one to one.

Confidence interval of a difference in accuracy (paired bootstrap)
    With one seed, validation images are resampled with replacement and the
    difference in accuracy is recomputed on each resample (the same images for
    both runs: that is what makes it paired). With several seeds, each resample
    draws the images AND the seeds with replacement (a two-level bootstrap), so the
    interval also contains the run-to-run training noise; the point estimate is the
    mean over seeds. The interval is the percentile interval of the resamples.

McNemar's test
    On the discordant pairs: b = images the variant gets right and the baseline
    wrong, c = the reverse. Exact two-sided binomial test when b + c < 25,
    chi-square with continuity correction otherwise. With several seeds the pairs
    of all seeds are pooled (each seed's pair of runs counts as its own
    observation of each image), which treats seeds as independent repetitions.

Verdict
    "better" / "worse" only when the confidence interval excludes zero AND McNemar's
    p is below alpha; anything else is "not distinguishable from noise".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

BETTER = "better"
WORSE = "worse"
NOISE = "not distinguishable from noise"

# Below this many discordant pairs the chi-square approximation is poor.
EXACT_BELOW = 25


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation over seeds; 0.0 with one seed
    n: int


@dataclass(frozen=True)
class McNemar:
    b: int  # variant right, baseline wrong
    c: int  # variant wrong, baseline right
    statistic: float | None  # chi-square statistic; None for the exact test
    p: float
    method: str  # "exact", "chi2" or "none" (no discordant pairs)


@dataclass(frozen=True)
class Interval:
    diff: float  # observed difference, variant minus baseline (fraction, not %)
    low: float
    high: float
    level: float
    resamples: int
    over: str  # "images" or "images+seeds"


@dataclass(frozen=True)
class Comparison:
    top1: Interval
    top5: Interval | None
    mcnemar: McNemar
    verdict: str


def mean_spread(values) -> Spread:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_spread needs at least one value")
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Spread(mean=float(v.mean()), std=std, n=int(v.size))


def _as_runs(x) -> np.ndarray:
    """(N,) or (S, N) booleans -> (S, N) float64 of 0/1."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"expected per-image correctness of shape (N,) or (seeds, N), got {a.shape}")
    return a.astype(np.float64)


def _pair(variant, baseline) -> tuple[np.ndarray, np.ndarray]:
    v, b = _as_runs(variant), _as_runs(baseline)
    if v.shape != b.shape:
        raise ValueError(f"paired outcomes must have the same shape, got {v.shape} and {b.shape}")
    if v.shape[1] == 0:
        raise ValueError("no images to compare")
    return v, b


def mcnemar_from_counts(b: int, c: int) -> McNemar:
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return McNemar(b=b, c=c, statistic=None, p=1.0, method="none")
    if n < EXACT_BELOW:
        p = 2.0 * sps.binom.cdf(min(b, c), n, 0.5)
        return McNemar(b=b, c=c, statistic=None, p=float(min(1.0, p)), method="exact")
    stat = (abs(b - c) - 1.0) ** 2 / n
    return McNemar(b=b, c=c, statistic=float(stat), p=float(sps.chi2.sf(stat, 1)), method="chi2")


def mcnemar(variant_correct, baseline_correct) -> McNemar:
    """McNemar's test on paired per-image correctness, (N,) or (seeds, N), pooled over seeds."""
    v, b = _pair(variant_correct, baseline_correct)
    v, b = v.astype(bool), b.astype(bool)
    return mcnemar_from_counts(int(np.sum(v & ~b)), int(np.sum(~v & b)))


def paired_bootstrap(variant_correct, baseline_correct, *, resamples: int = 2000, level: float = 0.95,
                     seed: int = 0, chunk: int = 250) -> Interval:
    """Percentile CI of mean accuracy(variant) - accuracy(baseline); see the module doc."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    v, b = _pair(variant_correct, baseline_correct)
    d = v - b  # (S, N) in {-1, 0, 1}
    n_seeds, n_images = d.shape
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    uniform = np.full(n_images, 1.0 / n_images)
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        # Multinomial image weights are the same as drawing N images with replacement.
        w = rng.multinomial(n_images, uniform, size=k).astype(np.float64)  # (k, N)
        per_seed = d @ w.T / n_images  # (S, k): each seed's difference on the resampled images
        if n_seeds > 1:
            pick = rng.integers(0, n_seeds, size=(n_seeds, k))
            out[start:start + k] = per_seed[pick, np.arange(k)[None, :]].mean(axis=0)
        else:
            out[start:start + k] = per_seed[0]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(out, [tail, 1.0 - tail])
    return Interval(diff=observed, low=float(low), high=float(high), level=level, resamples=resamples,
                    over="images+seeds" if n_seeds > 1 else "images")


def verdict(interval: Interval, p: float, alpha: float = 0.05) -> str:
    if interval.low > 0.0 and p < alpha:
        return BETTER
    if interval.high < 0.0 and p < alpha:
        return WORSE
    return NOISE


def compare(variant_top1, baseline_top1, variant_top5=None, baseline_top5=None, *, resamples: int = 2000,
            level: float = 0.95, seed: int = 0, alpha: float = 0.05) -> Comparison:
    """Paired comparison of a variant with its baseline (per-image correctness, (N,) or (seeds, N))."""
    top1 = paired_bootstrap(variant_top1, baseline_top1, resamples=resamples, level=level, seed=seed)
    top5 = None
    if variant_top5 is not None and baseline_top5 is not None:
        top5 = paired_bootstrap(variant_top5, baseline_top5, resamples=resamples, level=level, seed=seed + 1)
    test = mcnemar(variant_top1, baseline_top1)
    return Comparison(top1=top1, top5=top5, mcnemar=test, verdict=verdict(top1, test.p, alpha))


def per_class_counts(labels, correct, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(correct per class, images per class), summed over seeds when `correct` is (seeds, N)."""
    c = _as_runs(correct)
    lab = np.asarray(labels, dtype=np.int64).ravel()
    if lab.shape[0] != c.shape[1]:
        raise ValueError(f"{lab.shape[0]} labels for {c.shape[1]} predictions")
    right = np.zeros(num_classes, dtype=np.int64)
    total = np.zeros(num_classes, dtype=np.int64)
    for row in c:
        right += np.bincount(lab, weights=row, minlength=num_classes).astype(np.int64)
        total += np.bincount(lab, minlength=num_classes)
    return right, total
