"""Statistics for comparing training runs: pure functions on per-image correctness.

Every comparison is paired: a variant and its baseline are evaluated on the same
validation images and trained with the same seeds. What a difference in
accuracy must be told apart from has two sources: which images happened to be
in the validation set, and the training run itself (initial weights, data
order, dropout). docs/study.md ("How verdicts are made") argues the choices
below; benchmarks/verdicts.py measures their false-positive rates.

Several seeds: the seeds-and-images t-test
    x[k, i] = variant correct - baseline correct on image i with seed k (-1, 0, 1).
    The estimate is D = mean of x. Its variance has a training part, estimated
    by the spread of the per-seed differences d[k] = mean_i x[k, i]
    (V_seeds = var(d) / K), and an image part, estimated by the spread of the
    per-image differences averaged over seeds (V_images = var_i(mean_k x) / N).
    Each estimate also contains the seed-by-image interaction once, so their sum
    errs on the side of too wide. D / sqrt(V_seeds + V_images) is referred to a
    t distribution with Welch-Satterthwaite degrees of freedom; with 3 seeds the
    training part has 2 degrees of freedom and the test is as strict as that
    deserves. Interval: D +- t * sqrt(V).

One seed: no verdict
    The training noise cannot be measured from one run per network, so no
    "better" or "worse" is given. The difference is shown with an image-only
    interval (paired bootstrap over images) and McNemar's test (exact below 25
    discordant images, chi-square with continuity correction above), both
    labelled as covering the choice of images only.

The family of comparisons: Holm
    A study makes many comparisons. Their raw p-values are adjusted with Holm's
    step-down method over the whole family, and a verdict needs the adjusted p
    below alpha. Holm bounds the chance of even one false verdict in the study
    by alpha whatever the dependence between comparisons (many share a
    baseline), which Benjamini-Hochberg's false-discovery control does not
    promise for two-sided tests under arbitrary dependence.

Equivalence ("no difference" claims): two one-sided tests against a margin
    A claim of no difference is supported only when the difference is shown to
    lie within +-margin: both one-sided t-tests reject at alpha divided by the
    number of comparisons (Bonferroni, as strict as Holm's first step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

BETTER = "better"
WORSE = "worse"
NOISE = "not distinguishable from noise"
NO_VERDICT = "no verdict (one seed)"

SEEDS_T = "seeds+images t"
MCNEMAR = "McNemar, images only"

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
    over: str  # "images" (one seed) or "seeds+images"
    se: float | None = None  # standard error of diff (seeds+images only)
    df: float | None = None  # its degrees of freedom


@dataclass(frozen=True)
class Comparison:
    top1: Interval
    top5: Interval | None
    mcnemar: McNemar  # discordant images pooled over seeds (shown; the test only with one seed)
    seeds: int
    p: float  # raw two-sided p of the top-1 difference: seeds+images t, or McNemar with one seed
    method: str  # SEEDS_T or MCNEMAR
    p_adjusted: float | None = None  # Holm over the study's family, set by `decide`
    family: int | None = None  # how many comparisons the family had
    verdict: str = NO_VERDICT

    @property
    def can_decide(self) -> bool:
        return self.seeds >= 2


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
    """Percentile CI of accuracy(variant) - accuracy(baseline) over resampled
    validation images (the same images for both runs). With (S, N) input the
    per-image differences are averaged over seeds first: the interval covers the
    choice of images only, never training noise."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    v, b = _pair(variant_correct, baseline_correct)
    d = (v - b).mean(axis=0)  # (N,)
    n_images = d.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    uniform = np.full(n_images, 1.0 / n_images)
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        # Multinomial image weights are the same as drawing N images with replacement.
        w = rng.multinomial(n_images, uniform, size=k).astype(np.float64)  # (k, N)
        out[start:start + k] = w @ d / n_images
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(out, [tail, 1.0 - tail])
    return Interval(diff=float(d.mean()), low=float(low), high=float(high), level=level, over="images")


def seeds_images_t(variant_correct, baseline_correct, *, level: float = 0.95) -> tuple[Interval, float]:
    """(interval, two-sided p) of the seeds-and-images t-test; needs at least 2 seeds (module doc)."""
    v, b = _pair(variant_correct, baseline_correct)
    x = v - b
    k, n = x.shape
    if k < 2:
        raise ValueError("the seeds+images test needs at least 2 seeds; with one seed give no verdict")
    diff = float(x.mean())
    v_seeds = float(x.mean(axis=1).var(ddof=1)) / k
    v_images = float(x.mean(axis=0).var(ddof=1)) / n if n > 1 else 0.0
    var = v_seeds + v_images
    if var <= 0.0:
        # Every seed and image differs by exactly the same amount: nothing to be uncertain about.
        return Interval(diff, diff, diff, level, "seeds+images", 0.0, float("inf")), (1.0 if diff == 0 else 0.0)
    df = var ** 2 / (v_seeds ** 2 / (k - 1) + (v_images ** 2 / (n - 1) if n > 1 else 0.0))
    se = var ** 0.5
    half = float(sps.t.ppf(0.5 + level / 2.0, df)) * se
    p = float(2.0 * sps.t.sf(abs(diff) / se, df))
    return Interval(diff, diff - half, diff + half, level, "seeds+images", se, float(df)), p


def interval(variant_correct, baseline_correct, *, resamples: int = 2000, level: float = 0.95,
             seed: int = 0) -> Interval:
    """The interval a study reports: seeds+images with several seeds, images only with one."""
    if _as_runs(variant_correct).shape[0] >= 2:
        return seeds_images_t(variant_correct, baseline_correct, level=level)[0]
    return paired_bootstrap(variant_correct, baseline_correct, resamples=resamples, level=level, seed=seed)


def compare(variant_top1, baseline_top1, variant_top5=None, baseline_top5=None, *, resamples: int = 2000,
            level: float = 0.95, seed: int = 0) -> Comparison:
    """Paired comparison of a variant with its baseline (per-image correctness,
    (N,) or (seeds, N)); its verdict is set by `decide` over the study's family."""
    seeds = _as_runs(variant_top1).shape[0]
    top1 = interval(variant_top1, baseline_top1, resamples=resamples, level=level, seed=seed)
    top5 = None
    if variant_top5 is not None and baseline_top5 is not None:
        top5 = interval(variant_top5, baseline_top5, resamples=resamples, level=level, seed=seed + 1)
    pooled = mcnemar(variant_top1, baseline_top1)
    if seeds >= 2:
        p, method = seeds_images_t(variant_top1, baseline_top1, level=level)[1], SEEDS_T
    else:
        p, method = pooled.p, MCNEMAR
    return Comparison(top1=top1, top5=top5, mcnemar=pooled, seeds=seeds, p=p, method=method)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def verdict(c: Comparison, alpha: float) -> str:
    if not c.can_decide:
        return NO_VERDICT
    if c.p_adjusted is not None and c.p_adjusted < alpha and c.top1.diff != 0.0:
        return BETTER if c.top1.diff > 0 else WORSE
    return NOISE


def decide(comparisons: list[Comparison], alpha: float) -> list[Comparison]:
    """Adjust the raw p of every comparison of the family (Holm) and give each its verdict."""
    adjusted = holm([c.p for c in comparisons])
    out = []
    for c, p_adj in zip(comparisons, adjusted):
        c = replace(c, p_adjusted=p_adj, family=len(comparisons))
        out.append(replace(c, verdict=verdict(c, alpha)))
    return out


def equivalent(iv: Interval, margin: float, alpha: float, family: int = 1) -> bool | None:
    """Two one-sided tests: is the difference within +-margin (fractions)? None
    when the interval has no standard error (one seed: training noise unmeasured)."""
    if iv.se is None or iv.df is None:
        return None
    if iv.se == 0.0:
        return abs(iv.diff) < margin
    a = alpha / max(1, family)
    p_low = sps.t.sf((iv.diff + margin) / iv.se, iv.df)  # H0: diff <= -margin
    p_high = sps.t.cdf((iv.diff - margin) / iv.se, iv.df)  # H0: diff >= +margin
    return bool(max(p_low, p_high) < a)


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
