"""The planted study (tests/study/planted.py) through `salclass report`: every
number and sentence of report.md that comes from a comparison is checked against
what the planted runs must give, computed here with numpy and scipy from the
planted arrays, never with salclass's own statistics or rules.

Every check runs once per verdict test (the study setting `verdict_test`): the
seeds-and-images t-test, where each comparison's training variance is its own,
and the moderated t (the default), where it borrows from the whole family
(`family_variances`). The rest (Holm over the family, equivalence, claims, the
conclusion's sentences and counts) does not depend on which test gives the
p-values."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, special
from scipy import stats as sps

from planted import COMPARISONS, IMAGES, SEEDS, Planted, plant, study_settings

ALPHA = 0.05
MARGIN = 1.0  # equivalence margin, top-1 points
LEVEL = 0.95
SEEDS_IMAGES, MODERATED = "seeds-images", "moderated"
VERDICT_TESTS = (SEEDS_IMAGES, MODERATED)
# The moderated test's prior counts as at most this many times a comparison's own degrees of freedom.
PRIOR_CAP = 1.0

BETTER, WORSE, NOISE = "better", "worse", "not distinguishable from noise"


# --- the statistics, written out ----------------------------------------------------------------------------------

@dataclass
class Parts:
    """The variance of the mean of x[k, i] = variant - baseline correct on image i with seed k, in parts."""

    seeds: int  # K
    s2: float  # the per-seed differences' variance, never below `floor`
    floor: float  # the two-way layout's residual mean square over N
    images: float  # var_i(mean_k x) / N less the residual mean square over N K, never below zero


def variance_parts(x: np.ndarray) -> Parts:
    """The two-way layout's sums of squares from integer sums, exactly (x is -1, 0 or 1): a spread that
    is zero is zero here, not rounding dust, which a fit of log s^2 would read as a tiny variance."""
    k, n = x.shape
    x = x.astype(np.int64)
    total = int(x.sum())
    squares, rows, columns = int((x * x).sum()), int((x.sum(axis=1) ** 2).sum()), int((x.sum(axis=0) ** 2).sum())
    correction = Fraction(total * total, n * k)
    ss_residual = squares - Fraction(rows, n) - Fraction(columns, k) + correction
    ms_residual = ss_residual / ((n - 1) * (k - 1))
    seed_var = (Fraction(rows, n) - correction) / (k - 1) / n  # of the per-seed means: sums over N, squared
    image_var = (Fraction(columns, k) - correction) / (n - 1) / k  # of the per-image means over seeds
    floor = ms_residual / n
    images = max(Fraction(0), image_var / n - ms_residual / (n * k))
    return Parts(k, float(max(seed_var, floor)), float(floor), float(images))


@dataclass
class Prior:
    d0: float  # inf: the spread of log s^2 is no more than its sampling noise
    s0_2: float | None  # None when fewer than two comparisons measure any noise
    comparisons: int


def fit_prior(parts: list[Parts]) -> Prior:
    """Smyth's (2004) moments of log s^2: s^2 ~ s0^2 F(d, d0), so log s^2 has mean
    log s0^2 + digamma(d/2) - log(d/2) - digamma(d0/2) + log(d0/2) and variance
    trigamma(d/2) + trigamma(d0/2). Comparisons whose s^2 is zero say nothing of its log."""
    used = [q for q in parts if q.s2 > 0]
    if len(used) < 2:
        return Prior(0.0, None, len(used))
    d = np.array([q.seeds - 1 for q in used], float)
    z = np.log([q.s2 for q in used])
    e = z - special.digamma(d / 2) + np.log(d / 2)
    excess = np.var(e, ddof=1) - np.mean(special.polygamma(1, d / 2))
    if excess <= 0:
        return Prior(math.inf, float(np.exp(e.mean())), len(used))
    # trigamma falls from infinity to 0: one root, searched for on a log scale
    half = math.exp(optimize.brentq(lambda u: math.log(special.polygamma(1, math.exp(u))) - math.log(excess),
                                    -40.0, 40.0, xtol=1e-14))
    d0 = 2 * half
    return Prior(d0, float(np.exp(e.mean() + special.digamma(half) - np.log(half))), len(used))


def family_variances(xs: list[np.ndarray], test: str) -> list[tuple[float, float]]:
    """Every comparison's (variance of its mean difference, degrees of freedom): the training part is s^2 / K,
    with s^2 the comparison's own (K - 1 degrees of freedom), or with the moderated test
    (d0 s0^2 + d s^2) / (d0 + d), never below the floor, with d0 + d, the fitted d0 capped at PRIOR_CAP d."""
    parts = [variance_parts(x) for x in xs]
    if test == SEEDS_IMAGES:
        return [(q.s2 / q.seeds + q.images, q.seeds - 1.0) for q in parts]
    prior = fit_prior(parts)
    out = []
    for q in parts:
        d = q.seeds - 1.0
        d0 = min(prior.d0, PRIOR_CAP * d)
        s2 = q.s2 if d0 == 0 else (d0 * prior.s0_2 + d * q.s2) / (d0 + d)
        out.append((max(s2, q.floor) / q.seeds + q.images, d0 + d))
    return out


@dataclass
class TTest:
    diff: float  # fraction
    low: float
    high: float
    se: float
    df: float
    p: float


def t_test(x: np.ndarray, var: float, df: float) -> TTest:
    diff = float(x.mean())
    if var == 0.0:
        # x is one number everywhere: nothing measures the noise, no verdict
        return TTest(diff, diff, diff, 0.0, df, 1.0)
    se = var ** 0.5
    half = sps.t.ppf(0.5 + LEVEL / 2, df) * se
    return TTest(diff, diff - half, diff + half, se, df, float(2 * sps.t.sf(abs(diff) / se, df)))


def holm_adjusted(p: list[float]) -> list[float]:
    """Holm's step-down: the i-th smallest p times (m - i + 1), made non-decreasing, at most 1."""
    m = len(p)
    out = [0.0] * m
    highest = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        highest = max(highest, min(1.0, (m - rank) * p[i]))
        out[i] = highest
    return out


def one_sided_p(t: TTest, margin: float) -> tuple[float, float]:
    """(p against diff <= -margin, p against diff >= +margin)."""
    return (float(sps.t.sf((t.diff + margin) / t.se, t.df)), float(sps.t.cdf((t.diff - margin) / t.se, t.df)))


def equivalent(t: TTest, margin: float, family: int) -> bool:
    """Both one-sided tests at alpha / family (zero variance: inside the margin)."""
    if t.se == 0.0:
        return abs(t.diff) < margin
    return max(one_sided_p(t, margin)) < ALPHA / family


# --- how the report prints them -----------------------------------------------------------------------------------

def points(x: float) -> str:
    return f"{100 * x:+.2f}"


def p_text(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def ci_text(t: TTest) -> str:
    return f"{points(t.diff)} [{points(t.low)}, {points(t.high)}]"


def mean_sd(values: np.ndarray) -> str:
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


# --- what the planted study must give ------------------------------------------------------------------------------

EXPERIMENTS = {e["name"]: e for e in study_settings(Path("."))["experiments"]}


@dataclass
class Pair:
    variant: str
    against: str
    question: str
    claim: str | None
    thesis_delta: float | None
    seeds: list[int]  # positions in SEEDS of the seeds both experiments finished
    top1: TTest | None  # None when the two have no finished seed in common
    top5: TTest | None
    b: int  # images only the variant gets right, over seeds
    c: int
    p_holm: float = 1.0
    verdict: str = ""
    status: str | None = None  # what the report says of the claim


def family_pairs() -> list[dict]:
    """Every experiment against its declared baseline, then the further comparisons; a
    comparison of a pair already made replaces it where it stands."""
    pairs: dict[tuple[str, str], dict] = {}
    for name, e in EXPERIMENTS.items():
        if e.get("baseline"):
            pairs[(name, e["baseline"])] = {"variant": name, "against": e["baseline"]}
    for c in COMPARISONS:
        pairs[(c["variant"], c["against"])] = c
    return list(pairs.values())


def thesis_top1(name: str) -> float | None:
    return (EXPERIMENTS[name].get("thesis") or {}).get("top1")


def expected_pairs(planted: Planted) -> list[Pair]:
    settings = family_pairs()
    common = [[k for k in planted.seeds(s["variant"]) if k in planted.seeds(s["against"])] for s in settings]
    x1 = [planted.correct1(s["variant"], k).astype(float) - planted.correct1(s["against"], k) if k
          else np.zeros((0, IMAGES)) for s, k in zip(settings, common)]
    x5 = [planted.correct5(s["variant"], k).astype(float) - planted.correct5(s["against"], k) if k
          else np.zeros((0, IMAGES)) for s, k in zip(settings, common)]
    compared = [x.shape[0] > 0 for x in x1]
    test = planted.cfg.verdict_test
    v1 = iter(family_variances([x for x, c in zip(x1, compared) if c], test))
    v5 = iter(family_variances([y for y, c in zip(x5, compared) if c], test))
    out = []
    for s, k, x, y, c in zip(settings, common, x1, x5, compared):
        tv, ta = thesis_top1(s["variant"]), thesis_top1(s["against"])
        delta = None if tv is None or ta is None else tv - ta
        out.append(Pair(s["variant"], s["against"], s.get("question", ""), s.get("claim"), delta, k,
                        t_test(x, *next(v1)) if c else None, t_test(y, *next(v5)) if c else None,
                        int((x == 1).sum()), int((x == -1).sum())))
    done = [p for p in out if p.top1 is not None]
    for pair, adjusted in zip(done, holm_adjusted([p.top1.p for p in done])):
        pair.p_holm = adjusted
        pair.verdict = NOISE
        if adjusted < ALPHA and pair.top1.diff != 0:
            pair.verdict = BETTER if pair.top1.diff > 0 else WORSE
        claim = pair.claim
        if pair.thesis_delta is not None:
            claim = "better" if pair.thesis_delta > 0 else ("worse" if pair.thesis_delta < 0 else "same")
        pair.claim = claim
        pair.status = None if claim is None else claim_status(claim, pair, len(done))
    return out


def claim_status(claim: str, pair: Pair, family: int) -> str:
    if claim == "same":
        if pair.verdict != NOISE:
            return "contradicted: there is a difference here"
        if equivalent(pair.top1, MARGIN / 100, family):
            return f"consistent: equivalent within ±{MARGIN:g} points here"
        return f"not testable at this resolution: neither a difference nor equivalence within ±{MARGIN:g} points"
    if pair.verdict == claim:
        return "holds"
    if pair.verdict == NOISE:
        return "not confirmed: the difference here is within noise"
    return "contradicted: the difference here goes the other way"


def is_saliency_experiment(pair: Pair) -> bool:
    e = EXPERIMENTS[pair.variant]
    return e["stage"] not in ("controls", "baselines") and e.get("baseline") == pair.against


# --- the report ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=VERDICT_TESTS)
def study(request, tmp_path_factory) -> tuple[Planted, list[Pair]]:
    """The planted folder and what its report must say (nothing of the product's statistics runs here)."""
    planted = plant(tmp_path_factory.mktemp("planted") / "study", request.param)
    return planted, expected_pairs(planted)


def tables(md: str, first_header: str) -> list[list[list[str]]]:
    """The body rows of every Markdown table whose first header cell is `first_header`."""
    found, rows = [], None
    for line in md.splitlines():
        if line.startswith("| "):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if rows is None and cells[0] == first_header:
                rows = []
                found.append(rows)
            elif rows is not None:
                rows.append(cells)
        elif not line.startswith("|---"):
            rows = None
    return found


def section(md: str, heading: str) -> str:
    start = md.index(f"\n## {heading}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end >= 0 else None]


def by_name(pairs: list[Pair]) -> dict[tuple[str, str], Pair]:
    return {(p.variant, p.against): p for p in pairs}


def test_the_plant_is_what_it_says(study):
    """The planted truth, by construction, under either verdict test: if the generator drifts, the checks
    below lose their point."""
    planted, pairs = study
    got = by_name(pairs)
    verdicts = {("RGB*-ft", "RGB*"): BETTER, ("FanIn1", "RGB*"): BETTER, ("FanIn1-const", "RGB*"): BETTER,
                ("RGBxS-ft", "RGB*-ft"): WORSE, ("RGB_1S2S", "RGB"): WORSE, ("FanIn2", "RGB*"): WORSE,
                ("RGB*+AT", "RGB*"): WORSE, ("RGBS", "RGB"): NOISE, ("FanIn3", "RGB*"): NOISE,
                ("RGBS-ft", "RGB*-ft"): NOISE, ("FanIn3_noS", "RGB*"): NOISE, ("FanIn2-const", "RGB*"): NOISE,
                ("FanIn1", "FanIn1-const"): BETTER, ("RGBxS-ft", "RGBS-ft"): WORSE, ("RGB", "RGB*"): BETTER,
                ("FanIn3", "FanIn3_noS"): NOISE}
    assert {k: p.verdict for k, p in got.items()} == verdicts
    # seeds differ in accuracy by ten points, so pairing seed k with seed k matters
    assert np.ptp(planted.correct1("RGB*").mean(axis=1)) == pytest.approx(0.2)
    x = {k: planted.correct1(k[0]).astype(float) - planted.correct1(k[1]) for k in got}
    parts = {k: variance_parts(v) for k, v in x.items()}
    # per-seed differences all equal on the same images in every seed: no training variance at all (the
    # moderated fit leaves it out), a variance from the images alone, and no verdict
    same = ("RGBS-ft", "RGB*-ft")
    assert np.ptp(x[same].sum(axis=1)) == 0 and parts[same].s2 == 0 and parts[same].images > 0
    assert got[same].top1.se > 0 and got[same].top1.p < ALPHA
    # per-seed differences all equal on different images: the image part is clipped at zero and the
    # training part is the floor; without the floor the variance would be zero (once, p = 0: a verdict)
    floored = ("FanIn2-const", "RGB*")
    assert np.ptp(x[floored].sum(axis=1)) == 0 and parts[floored].images == 0
    assert parts[floored].s2 == parts[floored].floor > 0
    assert got[floored].top1.diff > 0
    # other comparisons whose floor lifts their own per-seed variance
    assert sum(np.var(v.mean(axis=1), ddof=1) < parts[k].floor for k, v in x.items()) >= 3
    # the moderated test's prior: fitted on all but the zero variance, finite, and more than the cap allows
    prior = fit_prior(list(parts.values()))
    assert prior.comparisons == len(pairs) - 1 and PRIOR_CAP * (len(SEEDS) - 1) < prior.d0 < math.inf
    # the fine-tunes start from RGB*, eight points below the baseline they are compared with
    start = planted.correct1("RGB*-ft").mean() - planted.correct1("RGB*").mean()
    assert start == pytest.approx(0.08)
    # every kind of claim and of claim status
    statuses = {k: p.status for k, p in got.items() if p.status}
    assert statuses[("FanIn1", "RGB*")] == "holds" and got[("FanIn1", "RGB*")].claim == "better"
    assert statuses[("RGBxS-ft", "RGBS-ft")] == "holds" and got[("RGBxS-ft", "RGBS-ft")].claim == "worse"
    assert statuses[("FanIn2", "RGB*")].startswith("contradicted: the difference")
    assert statuses[("FanIn3", "RGB*")].startswith("not confirmed") and got[("FanIn3", "RGB*")].claim == "worse"
    assert statuses[("RGBS", "RGB")].startswith("consistent")
    assert statuses[("RGB_1S2S", "RGB")].startswith("contradicted: there is")
    assert statuses[("FanIn3_noS", "RGB*")].startswith("not testable")
    # that last one is close: one of its one-sided tests passes, the other fails at alpha but not at twice it
    near = got[("FanIn3_noS", "RGB*")].top1
    low, high = one_sided_p(near, MARGIN / 100)
    a = ALPHA / len(pairs)
    assert low < a <= high < 2 * a
    # a p that passes alone but not in the family
    assert any(p.top1.p < ALPHA <= p.p_holm for p in pairs)
    # the records are written as the product writes them: checksummed, so the report reads them verified
    assert planted.root.joinpath("study.yaml").read_text(encoding="utf-8").startswith("# content_sha256: ")


def check_results_table(planted: Planted, md: str, pairs: list[Pair]) -> None:
    got = by_name(pairs)
    rows = {r[0]: r for t in tables(md, "Experiment") for r in t if len(r) == 14}
    stages = ("baselines", "stage1", "stage2", "stage3", "controls", "future")
    assert list(rows) == [n for stage in stages for n, e in EXPERIMENTS.items() if e["stage"] == stage]
    for name, e in EXPERIMENTS.items():
        r = rows[name]
        assert r[2] == (f"from {e['init_from']}" if e.get("init_from") else "scratch"), name
        assert r[4] == mean_sd(100 * planted.correct1(name).mean(axis=1)) if planted.seeds(name) else "missing", name
        assert r[5] == mean_sd(100 * planted.correct5(name).mean(axis=1)) if planted.seeds(name) else "missing", name
        assert r[6] == e.get("baseline", ""), name
        assert r[12] == ("" if thesis_top1(name) is None else f"{thesis_top1(name):.2f}"), name
        if not e.get("baseline"):
            assert r[7:12] == [""] * 5, name
            continue
        p = got[(name, e["baseline"])]
        if p.top1 is None:
            assert r[7:12] == [""] * 5, name
            continue
        assert r[7:12] == [ci_text(p.top1), ci_text(p.top5), p_text(p.top1.p), p_text(p.p_holm), p.verdict], name


def check_further_comparisons_table(planted: Planted, md: str, pairs: list[Pair]) -> None:
    [rows] = tables(md, "Question")
    extra = [p for p in pairs if p.question or EXPERIMENTS[p.variant].get("baseline") != p.against]
    assert rows == [[p.question, p.variant, p.against, ci_text(p.top1), f"{p.b} / {p.c}", p_text(p.top1.p),
                     p_text(p.p_holm), p.verdict] if p.top1 else [p.question, p.variant, p.against, "missing", "", "",
                                                                  "", ""] for p in extra]


def check_class_table(planted: Planted, md: str, pairs: list[Pair]) -> None:
    rows = [r for t in tables(md, "Experiment") for r in t if len(r) == 6]
    expected = []
    for p in pairs:
        if EXPERIMENTS[p.variant].get("baseline") != p.against or p.top1 is None:
            continue
        labels = planted.labels
        gains = []
        for k in range(labels.max() + 1):
            mine = labels == k
            rv = int(planted.correct1(p.variant, p.seeds)[:, mine].sum())
            rb = int(planted.correct1(p.against, p.seeds)[:, mine].sum())
            total = int(mine.sum()) * len(p.seeds)
            gains.append((-100 * (rv - rb) / total, k, rb, rv, total))
        for j, (gain, k, rb, rv, total) in enumerate(sorted(gains)[:3]):
            expected.append([p.variant if j == 0 else "", p.against if j == 0 else "", f"class {k}",
                             f"{rb}/{total}", f"{rv}/{total}", f"{-gain:+.1f}"])
    assert rows == expected


CLAIM = re.compile(r"^- (?:(?P<question>.+\?) )?(?P<variant>\S+) vs (?P<against>\S+): (?P<thesis>.+); here "
                   r"(?P=variant) − (?P=against) = (?P<diff>\S+) points top-1 "
                   r"\(95% CI (?P<low>\S+) to (?P<high>\S+); p = (?P<p>\S+), Holm-adjusted p = (?P<p_holm>\S+)\): "
                   r"\*\*(?P<status>.+)\*\*\.$")
ANSWER = re.compile(r"^- (?P<question>.+\?) (?P<variant>\S+) − (?P<against>\S+) = (?P<diff>\S+) points top-1 "
                    r"\(95% CI (?P<low>\S+) to (?P<high>\S+); p = (?P<p>\S+), Holm-adjusted p = (?P<p_holm>\S+)\): "
                    r"\*\*(?P<answer>.+)\*\*\.$")


def _numbers(m: re.Match) -> tuple[str, ...]:
    return m["diff"], m["low"], m["high"], m["p"], m["p_holm"]


def _expected_numbers(p: Pair) -> tuple[str, ...]:
    return points(p.top1.diff), points(p.top1.low), points(p.top1.high), p_text(p.top1.p), p_text(p.p_holm)


def check_the_claims(planted: Planted, md: str, pairs: list[Pair]) -> None:
    pairs = [p for p in pairs if p.top1 is not None]
    text = section(md, "Conclusion")
    claims = text.split("### The thesis's claims\n\n")[1].split("\n\n")[0].splitlines()
    expected = [p for p in pairs if p.claim is not None]
    assert len(claims) == len(expected)
    for line, p in zip(claims, expected):
        m = CLAIM.match(line)
        assert m, line
        assert (m["variant"], m["against"], m["question"] or "") == (p.variant, p.against, p.question), line
        assert _numbers(m) == _expected_numbers(p), line
        thesis = (f"the thesis reports {p.thesis_delta:+.2f} points top-1" if p.thesis_delta is not None
                  else "the thesis reports no difference" if p.claim == "same"
                  else f"the thesis reports {p.variant} {p.claim} than {p.against}")
        assert m["thesis"] == thesis, line
        assert m["status"] == p.status, line


def check_the_answers(planted: Planted, md: str, pairs: list[Pair]) -> None:
    pairs = [p for p in pairs if p.top1 is not None]
    text = section(md, "Conclusion")
    answers = text.split("### What the controls and the new experiments show\n\n")[1].split("\n\n")[0].splitlines()
    expected = [p for p in pairs if p.claim is None and (p.question or not is_saliency_experiment(p)
                                                           or EXPERIMENTS[p.variant]["stage"] == "future")]
    assert len(answers) == len(expected)
    words = {BETTER: "yes, {v} is better than {a}", WORSE: "{v} is worse than {a}",
             NOISE: "no evidence of a difference at this sample size"}
    for line, p in zip(answers, expected):
        m = ANSWER.match(line)
        assert m, line
        question = p.question or f"Does {p.variant} differ from {p.against}?"
        assert (m["question"], m["variant"], m["against"]) == (question, p.variant, p.against), line
        assert _numbers(m) == _expected_numbers(p), line
        assert m["answer"] == words[p.verdict].format(v=p.variant, a=p.against), line


def check_the_attribution(planted: Planted, md: str, pairs: list[Pair]) -> None:
    """A saliency experiment compared with controls of its own: its gain is the map's only if it beats its
    baseline and every such control."""
    controls = [name for name, e in EXPERIMENTS.items() if e["stage"] == "controls"]
    expected = []
    for p in pairs:
        mine = [q for q in pairs if q.variant == p.variant and q.against in controls and q.against != p.against]
        if p.top1 is None or not mine or not is_saliency_experiment(p):
            continue
        said = [f"{q.variant} − {q.against} not finished yet" if q.top1 is None
                else f"{q.variant} − {q.against} = {points(q.top1.diff)} points top-1 ({q.verdict})"
                for q in [p] + mine]
        pending = [q.against for q in mine if q.top1 is None]
        matched = [q.against for q in mine if q.verdict != BETTER]
        status = (f"no gain to explain: {p.variant} is not better than {p.against}" if p.verdict != BETTER
                  else f"not decided yet: {' and '.join(pending)} not finished" if pending
                  else f"not shown to be the map's: {p.variant} is not better than {' and '.join(matched)}"
                  if matched else f"the gain is the map's: {p.variant} also beats every control")
        expected.append(f"- {p.variant}: {'; '.join(said)}: **{status}**.")
    assert len(expected) == 2  # FanIn1 (against FanIn1-const) and FanIn3 (against FanIn3_noS)
    text = section(md, "Conclusion").split("### Is the gain due to the map?\n\n")[1]
    assert text.split("\n\n")[1].splitlines() == expected


def check_the_overall_count(planted: Planted, md: str, pairs: list[Pair]) -> None:
    pairs = [p for p in pairs if p.top1 is not None]
    [overall] = [line for line in section(md, "Conclusion").splitlines() if line.startswith("Overall")]
    counted = [p for p in pairs if is_saliency_experiment(p)]
    n = {v: sum(p.verdict == v for p in counted) for v in (BETTER, WORSE, NOISE)}
    best = max(counted, key=lambda p: p.top1.diff)
    worst = min(counted, key=lambda p: p.top1.diff)
    others = len(pairs) - len(counted)
    assert len(counted) > 1 and others > 1  # the sentence below spells the plural
    verb = {v: "is" if k == 1 else "are" for v, k in n.items()}
    assert overall == (
        f"Overall, of {len(counted)} saliency experiments compared with their baselines (the other "
        f"{others} comparisons, of controls, baselines and further questions, are not counted here), "
        f"{n[BETTER]} {verb[BETTER]} better, {n[WORSE]} {verb[WORSE]} worse and {n[NOISE]} {verb[NOISE]} not "
        "distinguishable from noise. "
        f"The largest gain is {best.variant} over {best.against} ({points(best.top1.diff)} points, {best.verdict}). "
        f"The largest loss is {worst.variant} against {worst.against} ({points(worst.top1.diff)} points, "
        f"{worst.verdict}).")


def check_the_resolution_and_the_family(planted: Planted, md: str, pairs: list[Pair]) -> None:
    pairs = [p for p in pairs if p.top1 is not None]
    m = len(pairs)
    assert f"This study makes {m} comparisons (both tables below)" in md
    [resolution] = [line for line in section(md, "Conclusion").splitlines() if line.startswith("Resolution")]
    widths = [100 * (p.top1.high - p.top1.low) / 2 for p in pairs if p.top1.high > p.top1.low]
    needed = [100 * sps.t.ppf(1 - ALPHA / (2 * m), p.top1.df) * p.top1.se for p in pairs if p.top1.se > 0]
    assert f"with {IMAGES} validation images and {len(SEEDS)} seeds" in resolution
    assert f"are about ±{np.median(widths):.1f} points wide (median)" in resolution
    assert f"After the adjustment for {m} comparisons, a verdict needs a difference of about " \
           f"{np.median(needed):.1f} points" in resolution



def check_setup(planted: Planted, md: str, pairs: list[Pair]) -> None:
    finished = sum(len(planted.seeds(name)) for name in EXPERIMENTS)
    assert f"Runs finished and evaluated: {finished} of {len(EXPERIMENTS) * len(SEEDS)}." in md
    missing = ", ".join(f"{name} seed {seed}" for name in EXPERIMENTS for seed in SEEDS
                        if (name, seed) in planted.missing)
    assert (f"Not finished yet (shown as missing below): {missing}." in md) == bool(missing)
    # every record verified against its checksum, every run folder one of the study's
    assert "no checksum" not in md and "Not in this report" not in md


def check_the_prior(planted: Planted, md: str, pairs: list[Pair]) -> None:
    """The report states the verdict test, and the moderated test's fitted prior (top-1)."""
    if planted.cfg.verdict_test == SEEDS_IMAGES:
        assert "The training part comes from the comparison's own seeds alone (`verdict_test: seeds-images`)" in md
        assert "Fitted on" not in md
        return
    x = [planted.correct1(p.variant, p.seeds).astype(float) - planted.correct1(p.against, p.seeds)
         for p in pairs if p.top1 is not None]
    prior = fit_prior([variance_parts(v) for v in x])
    d0 = "infinite" if math.isinf(prior.d0) else f"{prior.d0:.1f}"
    assert (f"Fitted on {prior.comparisons} comparisons: a prior SD of the per-seed differences of "
            f"{100 * prior.s0_2 ** 0.5:.2f} points, prior degrees of freedom {d0}.") in md


def check_untrained(planted: Planted, md: str, pairs: list[Pair]) -> None:
    stuck = [f"{name} (seed {SEEDS[k]})" for name in EXPERIMENTS for k in planted.seeds(name)
             if np.unique(planted.runs[name][k].top5[:, 0]).size == 1]
    finished = sum(len(planted.seeds(name)) for name in EXPERIMENTS)
    assert stuck
    assert (f"{len(stuck)} of {finished} runs predict the same class for every validation image, so they have not "
            "learned to tell the classes apart yet and their comparisons say nothing about saliency: "
            + ", ".join(stuck) + ".") in md


CHECKS = (check_setup, check_untrained, check_results_table, check_further_comparisons_table, check_class_table,
          check_the_claims, check_the_answers, check_the_attribution, check_the_overall_count,
          check_the_resolution_and_the_family, check_the_prior)


def test_the_report_says_what_the_planted_runs_give(study):
    """`salclass report` on the planted folder, every check run; then again with one run
    unfinished (its pairs have fewer seeds in common) and every run of one experiment (its
    pairs have none); then with one seed in common. One test, so that the report is built
    inside it: `make mutants` runs a mutant against the tests that reach its code."""
    planted, pairs = study
    failures = _report_failures(planted, pairs)
    unfinished = [("RGB*+AT", 2)] + [("FanIn1-const", seed) for seed in SEEDS]
    done = [planted.root / "runs" / name.replace("*", "star") / f"seed{seed}" / "done.json"
            for name, seed in unfinished]
    for path in done:
        path.rename(path.with_name("done.away"))
    planted.missing = set(unfinished)
    try:
        failures += [f"with runs unfinished: {f}" for f in _report_failures(planted, expected_pairs(planted))]
    finally:
        planted.missing = set()
        for path in done:
            path.with_name("done.away").rename(path)
    # one seed in common: no verdict
    unfinished = [("RGB*+AT", 1), ("RGB*+AT", 2)]
    done = [planted.root / "runs" / "RGBstar+AT" / f"seed{seed}" / "done.json" for _, seed in unfinished]
    for path in done:
        path.rename(path.with_name("done.away"))
    planted.missing = set(unfinished)
    try:
        failures += [f"one seed: {f}" for f in _report_failures(planted, [], (check_one_seed_pair,))]
    finally:
        planted.missing = set()
        for path in done:
            path.with_name("done.away").rename(path)
    assert not failures, "\n\n".join(failures)


def mcnemar_p(b: int, c: int) -> float:
    """Exact binomial below 25 discordant images, else chi-square with continuity correction."""
    n = b + c
    if n == 0:
        return 1.0
    if n < 25:
        return min(1.0, 2 * sps.binom.cdf(min(b, c), n, 0.5))
    return float(sps.chi2.sf((abs(b - c) - 1) ** 2 / n, 1))


def check_one_seed_pair(planted: Planted, md: str, pairs: list[Pair]) -> None:
    """RGB*+AT with one seed in common with RGB*: McNemar's p and no verdict. Its interval is a
    bootstrap over images, checked only to hold the difference."""
    x = planted.correct1("RGB*+AT").astype(float) - planted.correct1("RGB*", planted.seeds("RGB*+AT"))
    assert x.shape[0] == 1
    p = mcnemar_p(int((x == 1).sum()), int((x == -1).sum()))
    [row] = [r for t in tables(md, "Experiment") for r in t if r[0] == "RGB*+AT" and len(r) == 14]
    diff, low, high = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", row[7]).groups()
    assert diff == points(x.mean()) and float(low) <= float(diff) <= float(high)
    assert (row[9], row[11]) == (p_text(p), "no verdict (one seed)")
    assert ("Does RGB*+AT differ from RGB*? RGB*+AT − RGB* = " + diff + " points top-1 (95% CI " + low + " to "
            + high + ", images only; p = " + p_text(p)) in md
    assert "**no verdict: one seed**" in md and " 1 more has one seed only and no verdict." in md


def _report_failures(planted: Planted, pairs: list[Pair], checks=CHECKS) -> list[str]:
    from salclass.cli import main

    assert main(["report", str(planted.root)]) == 0
    md = (planted.root / "report.md").read_text(encoding="utf-8")
    failures = []
    for check in checks:
        try:
            check(planted, md, pairs)
        except Exception as e:  # a failed assertion, or a line or table that is not there
            failures.append(f"{check.__name__}: {type(e).__name__}: {e}")
    return failures
