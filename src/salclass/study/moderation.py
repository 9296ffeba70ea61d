"""The family's training noise: the moderated t (the default `verdict_test`),
the step between salclass.study.stats.compare and .decide.

The seeds-and-images t-test (salclass.study.stats) has K - 1 degrees of freedom make a very heavy-tailed t at 3 seeds. The
comparisons of one study measure training noise of the same kind of runs,
so each comparison's s^2 borrows strength from the others (Smyth 2004, the
moderated t of limma): the s^2 of the family are taken as draws of
s0^2 * F(d, d0), their prior (d0, s0^2) is fitted by matching the mean and
variance of log s^2 (digamma, trigamma), and each comparison uses
    s~^2 = (d0 s0^2 + d s^2) / (d0 + d),  degrees of freedom d0 + d,
still no lower than its own floor; the image part is unchanged. When the
spread of log s^2 is no larger than sampling noise, d0 is infinite (the
pooled s0^2, a normal reference); with fewer than two comparisons that
measure noise the fit says nothing, d0 = 0, and the test is the comparison's own.
The prior counts as at most PRIOR_WEIGHT times the comparison's own d: a
study's few comparisons, which share networks and so move together, do not
show when networks' noise differs 3x, the fit then says d0 = infinite, and
the uncapped test gave false verdicts in 7-22% of such simulated studies
(benchmarks/verdicts.py, scenarios unequal-noise and headline-unequal).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import special

from salclass.study.stats import (MODERATED, TEST_MODERATED, TEST_SEEDS_IMAGES, Comparison, Interval, Noise, Prior,
                                  t_test)

# The family's prior counts as at most this many times a comparison's own degrees of freedom (module doc).
PRIOR_WEIGHT = 1.0


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y > 0, by Newton's method on 1 / trigamma, which is nearly linear in x."""
    x = 0.5 + 1.0 / y if y < 1e6 else 1.0 / y ** 0.5
    for _ in range(100):
        tri = float(special.polygamma(1, x))
        step = tri * (1.0 - tri / y) / float(special.polygamma(2, x))
        x += step
        if -step / x < 1e-10:
            break
    return x



def fit_prior(noises: list[Noise]) -> Prior:
    """The prior (d0, s0^2) of the family's training variances, by moments of log s^2 (Smyth 2004)."""
    used = [n for n in noises if n.training_var > 0.0]
    if len(used) < 2:
        return Prior(df=0.0, var=None, comparisons=len(used))
    d = np.array([n.df for n in used], dtype=np.float64)
    # log s^2 - E[log chi2_d / d]: what is left estimates log s0^2 plus the prior's own log-F part.
    e = np.log([n.training_var for n in used]) - special.digamma(d / 2) + np.log(d / 2)
    g = e.size
    spread = float(np.sum((e - e.mean()) ** 2)) / (g - 1) - float(np.mean(special.polygamma(1, d / 2)))
    if spread <= 0.0:
        return Prior(df=float("inf"), var=float(np.exp(e.mean())), comparisons=g)
    d0 = 2.0 * _trigamma_inverse(spread)
    s0 = float(np.exp(e.mean() + special.digamma(d0 / 2) - np.log(d0 / 2)))
    return Prior(df=d0, var=s0, comparisons=g)



def moderated(iv: Interval, prior: Prior, weight: float | None = PRIOR_WEIGHT) -> tuple[Interval, float]:
    """(interval, p) with the training variance moderated by the family's prior, never below the comparison's
    floor; the prior counts as at most `weight` times the comparison's degrees of freedom (None: as fitted)."""
    noise = iv.noise
    d = float(noise.df)
    d0 = prior.df if weight is None else min(prior.df, weight * d)
    if d0 == 0.0:
        s2, df = noise.training_var, d
    elif np.isinf(d0):
        s2, df = prior.var, float("inf")
    else:
        s2, df = (d0 * prior.var + d * noise.training_var) / (d0 + d), d0 + d
    return t_test(iv.diff, noise, max(s2, noise.floor), df, level=iv.level)



def moderate(comparisons: list[Comparison], weight: float | None = PRIOR_WEIGHT) -> list[Comparison]:
    """The family step of the moderated t: refit every several-seed comparison's top-1 (and top-5) test
    with the training variance it borrows from the whole family. Comes between `compare` and `decide`."""
    fits = {}
    for name in ("top1", "top5"):
        noises = [getattr(c, name).noise for c in comparisons
                  if getattr(c, name) is not None and getattr(c, name).noise is not None]
        fits[name] = fit_prior(noises)
    out = []
    for c in comparisons:
        if c.top1.noise is None:
            out.append(c)
            continue
        top1, p = moderated(c.top1, fits["top1"], weight)
        top5 = c.top5
        if top5 is not None and top5.noise is not None:
            top5 = moderated(top5, fits["top5"], weight)[0]
        out.append(replace(c, top1=top1, top5=top5, p=p, method=MODERATED, prior=fits["top1"]))
    return out



def family_test(comparisons: list[Comparison], test: str) -> list[Comparison]:
    """The study's verdict test over its family: `moderate` for TEST_MODERATED, as computed for TEST_SEEDS_IMAGES."""
    if test == TEST_MODERATED:
        return moderate(comparisons)
    if test == TEST_SEEDS_IMAGES:
        return list(comparisons)
    raise ValueError(f"unknown verdict test {test!r}: use {TEST_MODERATED!r} or {TEST_SEEDS_IMAGES!r}")
