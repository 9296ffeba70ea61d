"""Statistics for comparing training runs: pure functions on per-image correctness.

Every comparison is paired: a variant and its baseline are evaluated on the same
validation images and trained with the same seeds. What a difference in
accuracy must be told apart from has two sources: which images happened to be
in the validation set, and the training run itself (initial weights, data
order, dropout). docs/study.md ("How verdicts are made") argues the choices
below; benchmarks/verdicts.py measures their false-positive rates.

Several seeds: the seeds-and-images t-test
    x[k, i] = variant correct - baseline correct on image i with seed k (-1, 0, 1),
    K seeds by N images, a two-way layout. The estimate is D = mean of x. Its
    variance has a training part, s^2 / K with s^2 the variance of the per-seed
    differences d[k] = mean_i x[k, i], and an image part: the spread of the
    per-image differences averaged over seeds, var_i(mean_k x) / N, less the
    seed-by-image noise it shares with the training part (the residual mean
    square of the two-way layout over N K; the part is never taken below 0).
    This is the usual random-effects estimate of the variance of a grand mean.
    D / sqrt(V) is referred to a t distribution with K - 1 degrees of freedom,
    those of the training part: the image part is estimated far more precisely,
    so giving it no degrees of freedom of its own errs on the safe side, where
    Welch-Satterthwaite degrees of freedom let 7.7% of null comparisons through
    at 3 seeds (benchmarks/verdicts.py). Interval: D +- t * sqrt(V).

    The floor: every d[k] averages N images, so its variance holds at least the
    seed-by-image noise over N, and the residual mean square estimates that
    noise with (N - 1)(K - 1) degrees of freedom. s^2 is therefore never taken
    below residual mean square / N. Without the floor, two seeds whose
    differences happen to be equal gave s^2 = 0, a zero variance and p = 0.
    With the floor the variance is zero only when x is the same number on every
    image of every seed; nothing then measures the noise, and p is 1 (no
    verdict of a difference).

The family's training noise: the moderated t (the default, `verdict_test`)
    in salclass.study.moderation.

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
from scipy import special
from scipy import stats as sps

BETTER = "better"
WORSE = "worse"
NOISE = "not distinguishable from noise"
NO_VERDICT = "no verdict (one seed)"

SEEDS_T = "seeds+images t"
MODERATED = "moderated seeds+images t"

# The study setting `verdict_test` picks one of these.
TEST_MODERATED = "moderated"
TEST_SEEDS_IMAGES = "seeds-images"
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
class Noise:
    """The parts of a seeds+images variance, kept so that the family step can re-weigh the training part."""

    seeds: int  # K
    seed_var: float  # variance of the per-seed differences, before the floor
    floor: float  # residual mean square / N: the least seed_var can be
    image_var: float  # the image part of the variance of the mean difference

    @property
    def df(self) -> int:
        return self.seeds - 1

    @property
    def training_var(self) -> float:
        """s^2 of the module doc: the per-seed variance, floored."""
        return max(self.seed_var, self.floor)


@dataclass(frozen=True)
class Prior:
    """The family's fitted prior of the training variance (the moderated t)."""

    df: float  # d0: math.inf when the spread of log s^2 is all sampling noise, 0.0 when the fit says nothing
    var: float | None  # s0^2; None with d0 = 0
    comparisons: int  # how many comparisons the fit used


@dataclass(frozen=True)
class Interval:
    diff: float  # observed difference, variant minus baseline (fraction, not %)
    low: float
    high: float
    level: float
    over: str  # "images" (one seed) or "seeds+images"
    se: float | None = None  # standard error of diff (seeds+images only)
    df: float | None = None  # its degrees of freedom (seeds - 1; more with the moderated t, inf for a normal)
    noise: Noise | None = None  # the variance's parts (seeds+images only)


@dataclass(frozen=True)
class Comparison:
    top1: Interval
    top5: Interval | None
    mcnemar: McNemar  # discordant images pooled over seeds (shown; the test only with one seed)
    seeds: int
    p: float  # raw two-sided p of the top-1 difference: seeds+images t, or McNemar with one seed
    method: str  # SEEDS_T, MODERATED (set by `moderate`) or MCNEMAR
    p_adjusted: float | None = None  # Holm over the study's family, set by `decide`
    family: int | None = None  # how many comparisons the family had
    verdict: str = NO_VERDICT
    prior: Prior | None = None  # the family's prior, when `moderate` set the test

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


def noise_parts(variant_correct, baseline_correct) -> tuple[float, Noise]:
    """(mean difference, its variance's parts) of the seeds-and-images layout; needs at least 2 seeds."""
    v, b = _pair(variant_correct, baseline_correct)
    x = v - b
    k, n = x.shape
    if k < 2:
        raise ValueError("the seeds+images test needs at least 2 seeds; with one seed give no verdict")
    # From sums of x (-1, 0, 1), which are exact integers: a spread that is zero comes out exactly zero.
    # From means it could come out as rounding dust (1e-39), which the family's fit of log s^2 reads as
    # a real, tiny variance that drags the whole family's prior to nothing.
    per_seed, per_image, total = x.sum(axis=1), x.sum(axis=0), float(x.sum())
    diff = total / (n * k)
    seed_var = float(k * (per_seed ** 2).sum() - total ** 2) / (k * (k - 1) * n * n)
    ms_error, v_images = 0.0, 0.0
    if n > 1:
        residual = (n * k) * x - k * per_seed[:, None] - n * per_image[None, :] + total  # n k times the residual
        ms_error = float((residual ** 2).sum()) / ((n * k) ** 2 * (n - 1) * (k - 1))
        image_var = float(n * (per_image ** 2).sum() - total ** 2) / (n * (n - 1) * k * k)
        v_images = max(0.0, image_var / n - ms_error / (n * k))
    return diff, Noise(seeds=k, seed_var=seed_var, floor=ms_error / n, image_var=v_images)


def t_test(diff: float, noise: Noise, training_var: float, df: float, *, level: float = 0.95
           ) -> tuple[Interval, float]:
    """(interval, two-sided p) of a mean difference whose variance is training_var / K + the image part."""
    var = training_var / noise.seeds + noise.image_var
    if var <= 0.0:
        # x is one number on every image of every seed: nothing measures the noise, so no verdict.
        return Interval(diff, diff, diff, level, "seeds+images", 0.0, df, noise), 1.0
    se = var ** 0.5
    # scipy.special's t distribution: the same numbers as scipy.stats.t, without its per-call overhead, which
    # dominates the simulations of benchmarks/verdicts.py.
    half = float(special.stdtrit(df, 0.5 + level / 2.0)) * se
    p = float(2.0 * special.stdtr(df, -abs(diff) / se))
    return Interval(diff, diff - half, diff + half, level, "seeds+images", se, float(df), noise), p


def seeds_images_t(variant_correct, baseline_correct, *, level: float = 0.95) -> tuple[Interval, float]:
    """(interval, two-sided p) of the seeds-and-images t-test, the comparison's own noise alone (module doc)."""
    diff, noise = noise_parts(variant_correct, baseline_correct)
    return t_test(diff, noise, noise.training_var, float(noise.df), level=level)


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
    pooled = mcnemar(variant_top1, baseline_top1)
    if seeds >= 2:
        top1, p = seeds_images_t(variant_top1, baseline_top1, level=level)
        method = SEEDS_T
    else:
        top1 = paired_bootstrap(variant_top1, baseline_top1, resamples=resamples, level=level, seed=seed)
        p, method = pooled.p, MCNEMAR
    top5 = None
    if variant_top5 is not None and baseline_top5 is not None:
        top5 = interval(variant_top5, baseline_top5, resamples=resamples, level=level, seed=seed + 1)
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


def needed_difference(c: Comparison, alpha: float) -> float | None:
    """The smallest |difference| that would pass the first step of Holm's method in
    this comparison's family, at its standard error (None without one)."""
    iv = c.top1
    if iv.se is None or iv.df is None:
        return None
    m = c.family or 1
    return float(sps.t.ppf(1.0 - alpha / (2.0 * m), iv.df)) * iv.se


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
