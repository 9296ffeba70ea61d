"""The saliency benchmark's metrics, as pure numpy functions.

The definitions follow the MIT/Tuebingen saliency benchmark as its reference
implementation, pysaliency, computes them (tests/saliency/test_metrics.py checks
every function against pysaliency's own values on real OSIE maps).

Conventions shared by every function:

* ``saliency_map`` is a 2-D float array (H, W): higher means more salient.
  Only its ordering matters to the AUCs; NSS and CC are invariant to an affine
  change; KL, SIM and information gain first turn it into a density (see
  `to_density`).
* ``fixations`` is an integer array (n, 2) of 0-based pixel coordinates
  ``(x, y)`` = (column, row). A point fixated twice counts twice, as in
  pysaliency (the MATLAB benchmark code collapses repeats into one pixel of a
  binary fixation map; the two agree whenever no two fixations share a pixel).
* ``density`` is a ground-truth map (H, W), non-negative (e.g. blurred
  fixations); its scale does not matter.

Bad input raises ValueError with one line: maps that are not 2-D or hold NaN
or infinity, shapes that differ, fixations outside the map, no fixations at
all, or a constant ground-truth map where a correlation is asked for. A
constant *prediction* is a legitimate (if useless) model and gets the chance
score: AUC 0.5, NSS 0, CC 0.
"""

from __future__ import annotations

import numpy as np

KL_EPS = 2.2204e-16
"""The benchmark's regulariser in KL divergence: MATLAB's double-precision eps."""


def _map(m: np.ndarray, what: str = "saliency map") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return m


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")


def _points(fixations: np.ndarray, shape: tuple[int, int], what: str = "fixations") -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the (x, y) points, checked against the map's shape."""
    f = np.asarray(fixations)
    if f.ndim != 2 or f.shape[1] != 2:
        raise ValueError(f"{what} must be an (n, 2) array of (x, y) points, got shape {f.shape}")
    if f.shape[0] == 0:
        raise ValueError(f"no {what}: the metric is undefined without any")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
            raise ValueError(f"{what} must be integer pixel coordinates")
        f = f.astype(np.int64)
    x, y = f[:, 0], f[:, 1]
    h, w = shape
    if x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h:
        raise ValueError(f"{what} fall outside the {w}x{h} map")
    return y, x


def to_density(m: np.ndarray) -> np.ndarray:
    """The map as a probability distribution over pixels (sums to 1).

    A map with negative values is first shifted so that its minimum is 0; a map
    that is all zeros becomes the uniform distribution. This is how the
    benchmark turns any saliency map into a density for KL, SIM and
    information gain.
    """
    m = _map(m)
    low = m.min()
    if low < 0:
        m = m - low
    total = m.sum()
    if total > 0:
        return m / total
    return np.full(m.shape, 1.0 / m.size)


def _roc_area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))


def auc_judd(saliency_map: np.ndarray, fixations: np.ndarray) -> float:
    """AUC-Judd: the map as a classifier of fixated versus unfixated pixels.

    Positives are the map's values at the fixations; negatives are its values
    at every pixel that no fixation falls on. The ROC curve is traced with one
    threshold per fixated value (Judd's choice, rather than every value in the
    map): at threshold t, the hit rate is the share of positives >= t and the
    false-alarm rate the share of negatives >= t. The curve is closed at (0, 0)
    and (1, 1) and its area taken with the trapezoid rule.

    Tied values are not broken: pysaliency's `AUC_Judd` adds noise of 1e-7 by
    default to break them (set `jitter=False` there to get this function's
    value exactly). The two differ only where fixated and unfixated pixels
    share a value, e.g. in flat regions of a quantised map.
    """
    s = _map(saliency_map)
    rows, cols = _points(fixations, s.shape)
    pos = s[rows, cols]
    fixated = np.zeros(s.shape, dtype=bool)
    fixated[rows, cols] = True
    neg = s[~fixated]
    if neg.size == 0:
        raise ValueError("every pixel is fixated: AUC-Judd has no negatives")
    thresholds = np.unique(pos)
    tpr = _share_at_or_above(pos, thresholds)[::-1]
    fpr = _share_at_or_above(neg, thresholds)[::-1]
    return _roc_area(np.concatenate(([0.0], fpr, [1.0])), np.concatenate(([0.0], tpr, [1.0])))


def _share_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each of the ascending `thresholds`, the share of `values` >= it.
    Binning the values among the few thresholds avoids sorting all pixels."""
    below_or_at = np.searchsorted(thresholds, values, side="right")   # thresholds <= value
    hist = np.bincount(below_or_at, minlength=thresholds.size + 1)
    at_or_above = np.cumsum(hist[::-1])[::-1][1:]
    return at_or_above / values.size


def auc_from_values(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve traced with every value as a threshold: the
    probability that a random positive scores above a random negative, ties
    counting one half (the Mann-Whitney statistic)."""
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.sort(np.asarray(negatives, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise ValueError("an AUC needs at least one positive and one negative")
    below = np.searchsorted(neg, pos, side="left")
    at_or_below = np.searchsorted(neg, pos, side="right")
    return float(np.mean(below + 0.5 * (at_or_below - below)) / neg.size)


def auc_shuffled(saliency_map: np.ndarray, fixations: np.ndarray, other_fixations: np.ndarray) -> float:
    """Shuffled AUC: fixations of this image versus fixations of other images.

    Positives are the map's values at this image's fixations; negatives are its
    values at the fixation points of the *other* images of the data set
    (`other_fixations`, already scaled to this map's size). Because those
    points share the observers' centre bias, a map scores above 0.5 only by
    predicting what is specific to this image. The area uses every value as a
    threshold (`auc_from_values`).

    pysaliency takes all fixations of all other images as negatives, and so do
    we; the MATLAB benchmark code instead averages 100 random draws of as many
    other-image fixations as the image has, which estimates the same quantity
    with sampling noise.
    """
    s = _map(saliency_map)
    rows, cols = _points(fixations, s.shape)
    orows, ocols = _points(other_fixations, s.shape, "other-image fixations")
    return auc_from_values(s[rows, cols], s[orows, ocols])


def nss(saliency_map: np.ndarray, fixations: np.ndarray) -> float:
    """Normalized scanpath saliency: the map standardised to mean 0 and
    standard deviation 1 over all pixels (population std), averaged over the
    fixations. A constant map scores 0."""
    s = _map(saliency_map)
    rows, cols = _points(fixations, s.shape)
    # Tested on the range, not the std: rounding gives a constant map a std of ~1e-17.
    if s.max() == s.min():
        return 0.0
    return float(np.mean((s[rows, cols] - s.mean()) / s.std()))


def cc(saliency_map: np.ndarray, density: np.ndarray) -> float:
    """Linear correlation coefficient (Pearson's r) between the map and the
    ground-truth density, over all pixels. A constant map scores 0; a constant
    ground truth is an error (there is nothing to correlate with)."""
    s = _map(saliency_map)
    g = _map(density, "ground-truth map")
    _same_shape(s, g)
    a = s - s.mean()
    b = g - g.mean()
    if g.max() == g.min():
        raise ValueError("ground-truth map is constant: CC is undefined")
    if s.max() == s.min():
        return 0.0
    r = np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.clip(r, -1.0, 1.0))


def kl_divergence(saliency_map: np.ndarray, density: np.ndarray) -> float:
    """KL divergence of the prediction from the ground truth, in nats, as the
    benchmark computes it: with P the map and Q the ground truth, both made
    densities (`to_density`), ``sum(Q * log(eps + Q / (P + eps)))`` with
    eps = 2.2204e-16. Lower is better; 0 for a perfect prediction. The eps keeps
    pixels where the prediction vanishes finite but heavily penalised."""
    s = _map(saliency_map)
    g = _map(density, "ground-truth map")
    _same_shape(s, g)
    p = to_density(s)
    q = to_density(g)
    return float(np.sum(q * np.log(KL_EPS + q / (p + KL_EPS))))


def sim(saliency_map: np.ndarray, density: np.ndarray) -> float:
    """Similarity (histogram intersection): both maps made densities
    (`to_density`), the sum over pixels of the smaller of the two. 1 for
    identical distributions, 0 for disjoint ones."""
    s = _map(saliency_map)
    g = _map(density, "ground-truth map")
    _same_shape(s, g)
    return float(np.minimum(to_density(s), to_density(g)).sum())


def information_gain(saliency_map: np.ndarray, baseline_map: np.ndarray, fixations: np.ndarray) -> float:
    """Information gain over a baseline, in bits per fixation.

    Both maps are read as probability distributions over pixels
    (`to_density`); the score is the mean over fixations of
    ``log2 p_model(fixation) - log2 p_baseline(fixation)``: how much better
    (in bits) the model predicts where people looked than the baseline, e.g.
    the centre bias. It is meaningful only for a map that *is* the model's
    predicted fixation density: a map that is 0 where someone looked gets
    -inf (and a baseline that is 0 there, +inf; both 0 there: NaN), as the
    log-likelihood says.
    """
    s = _map(saliency_map)
    b = _map(baseline_map, "baseline map")
    _same_shape(s, b)
    rows, cols = _points(fixations, s.shape)
    p = to_density(s)[rows, cols]
    q = to_density(b)[rows, cols]
    with np.errstate(divide="ignore"):
        return float(np.mean(np.log2(p) - np.log2(q)))
