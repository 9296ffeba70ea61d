"""The rules that turn comparisons into the report's claims and counts.

Each test pins one rule so that reversing or loosening it fails: a thesis
direction read backwards, any significant result taken as support, an
inconclusive result called consistent, a control counted as a saliency
experiment, a verdict from one seed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from salclass.study import stats
from salclass.study.config import StudyConfig
from salclass.study.folder import StudyFolder
from salclass.study.claims import (CONTRADICTED, HOLDS, NOT_CONFIRMED, NOT_TESTED, SAME_CONTRADICTED,
                                   attribute_gain, claim_status, saliency_experiment)
from salclass.study.conclusion import conclusions
from salclass.study.render import to_markdown
from salclass.study.results import PairResult, StudyResults

ALPHA, MARGIN = 0.05, 1.0


def _runs(seeds: int, n: int, acc: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((seeds, n)) < acc


def _shifted(base: np.ndarray, fraction: float) -> np.ndarray:
    """Fix (fraction > 0) or break (fraction < 0) that share of each run's images, consistently over seeds."""
    out = base.copy()
    for row in out:
        pool = np.flatnonzero(~row if fraction > 0 else row)
        row[pool[: int(len(pool) * abs(fraction))]] = fraction > 0
    return out


def _jittered(seeds: int, n: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two networks that agree on most images, as trained networks do: one set of
    image outcomes, each run flipping a random `flip` share of it."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    runs = [truth ^ (rng.random((seeds, n)) < flip) for _ in range(2)]
    return runs[0], runs[1]


def _decided(variant, baseline) -> stats.Comparison:
    return stats.decide([stats.compare(variant, baseline)], ALPHA)[0]


@pytest.fixture(scope="module")
def cases() -> dict[str, stats.Comparison]:
    base = _runs(3, 2000, 0.5, 0)
    one = _runs(1, 2000, 0.5, 1)
    return {
        "better": _decided(_shifted(base, 0.2), base),
        "worse": _decided(_shifted(base, -0.2), base),
        # a small difference with few images: inconclusive, and far too wide to show equivalence
        "noise": _decided(_runs(3, 80, 0.5, 2), _runs(3, 80, 0.5, 3)),
        "equivalent": _decided(*_jittered(5, 4000, 0.02, 4)),
        "one_seed_gain": _decided(_shifted(one, 0.3), one),
    }


def test_the_cases_are_what_they_claim_to_be(cases):
    assert cases["better"].verdict == stats.BETTER and cases["worse"].verdict == stats.WORSE
    assert cases["noise"].verdict == stats.NOISE and cases["equivalent"].verdict == stats.NOISE
    assert cases["one_seed_gain"].verdict == stats.NO_VERDICT and cases["one_seed_gain"].p < 1e-10


def test_a_direction_holds_only_when_the_verdict_goes_that_way(cases):
    assert claim_status("better", cases["better"], MARGIN, ALPHA) == HOLDS
    assert claim_status("worse", cases["worse"], MARGIN, ALPHA) == HOLDS
    # reversed direction: a significant result the other way contradicts, it never supports
    assert claim_status("better", cases["worse"], MARGIN, ALPHA) == CONTRADICTED
    assert claim_status("worse", cases["better"], MARGIN, ALPHA) == CONTRADICTED
    assert claim_status("better", cases["noise"], MARGIN, ALPHA) == NOT_CONFIRMED


def test_one_seed_tests_no_claim(cases):
    for claim in ("better", "worse", "same"):
        assert claim_status(claim, cases["one_seed_gain"], MARGIN, ALPHA) == NOT_TESTED


def test_no_difference_needs_equivalence_not_just_an_inconclusive_result(cases):
    inconclusive = claim_status("same", cases["noise"], MARGIN, ALPHA)
    assert not inconclusive.startswith("consistent") and inconclusive.startswith("not testable")
    assert claim_status("same", cases["equivalent"], MARGIN, ALPHA).startswith("consistent")
    assert claim_status("same", cases["better"], MARGIN, ALPHA).startswith("contradicted")
    # the same narrow result is not equivalent for a margin it does not fit in
    assert claim_status("same", cases["equivalent"], 0.05, ALPHA).startswith("not testable")


EXPERIMENTS = [
    {"name": "RGB*", "model": "RGB", "stage": "baselines", "thesis": {"top1": 36.60}},
    {"name": "FanIn1", "model": "FanIn1", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 38.32}},
    {"name": "FanIn2", "model": "FanIn2", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 36.60}},
    {"name": "FanIn1-const", "model": "FanIn1-const", "stage": "controls", "baseline": "RGB*"},
]


def _results(tmp_path: Path, outcome: dict, comparisons: tuple = ()) -> StudyResults:
    """`outcome` maps an experiment (its comparison with its baseline) or a (variant, against) pair to a result."""
    from salclass.settings import settings_from_dict

    cfg = settings_from_dict(StudyConfig, {"data": {"source": str(tmp_path)}, "seeds": [0, 1, 2],
                                           "experiments": EXPERIMENTS, "comparisons": list(comparisons)})
    cfg_thesis = {e.name: e.thesis.top1 for e in cfg.experiments}
    pairs = []
    for p in cfg.pairs():
        delta = None
        if cfg_thesis[p.variant] is not None and cfg_thesis[p.against] is not None:
            delta = cfg_thesis[p.variant] - cfg_thesis[p.against]
        result = outcome.get((p.variant, p.against), outcome.get(p.variant))
        pairs.append(PairResult(p.variant, p.against, p.question, p.claim, [0, 1, 2], 2000, result, delta))
    return StudyResults(cfg, StudyFolder(tmp_path, cfg), {}, pairs)


def _text(res: StudyResults, tmp_path: Path) -> str:
    return to_markdown(conclusions(res), tmp_path)


def test_thesis_numbers_set_the_claimed_direction(tmp_path, cases):
    # The thesis's RGB* is 36.60, so FanIn1 (38.32) claims "better" and FanIn2 (36.60) "same".
    res = _results(tmp_path, {"FanIn1": cases["worse"], "FanIn2": cases["noise"], "FanIn1-const": cases["noise"]})
    text = _text(res, tmp_path)
    fanin1 = next(line for line in text.splitlines() if line.startswith("- FanIn1 vs RGB*"))
    assert "+1.72 points" in fanin1 and f"**{CONTRADICTED}**" in fanin1
    fanin2 = next(line for line in text.splitlines() if line.startswith("- FanIn2 vs RGB*"))
    assert "**not testable at this resolution" in fanin2 and "consistent" not in fanin2
    res = _results(tmp_path, {"FanIn1": cases["better"], "FanIn2": cases["noise"], "FanIn1-const": cases["noise"]})
    assert f"**{HOLDS}**" in next(line for line in _text(res, tmp_path).splitlines()
                                  if line.startswith("- FanIn1 vs RGB*"))


def test_a_comparisons_own_claim_stands_over_the_thesis_numbers(tmp_path, cases):
    # FanIn1's thesis numbers say "better" (+1.72); a comparison entry that says the thesis called it no difference
    # is tested as "same": a clear gain then contradicts it instead of confirming it.
    res = _results(tmp_path, {"FanIn1": cases["better"], "FanIn2": cases["noise"], "FanIn1-const": cases["noise"]})
    res.pairs = [replace(p, claim="same") if p.variant == "FanIn1" else p for p in res.pairs]
    fanin1 = next(line for line in _text(res, tmp_path).splitlines() if line.startswith("- FanIn1 vs RGB*"))
    assert "+1.72 points top-1 and calls it no difference" in fanin1 and f"**{SAME_CONTRADICTED}**" in fanin1


def test_controls_are_kept_out_of_the_overall_count(tmp_path, cases):
    res = _results(tmp_path, {"FanIn1": cases["better"], "FanIn2": cases["noise"],
                              "FanIn1-const": cases["better"]})
    by_name = {p.variant: p for p in res.pairs}
    assert saliency_experiment(res, by_name["FanIn1"]) and not saliency_experiment(res, by_name["FanIn1-const"])
    overall = next(line for line in _text(res, tmp_path).splitlines() if line.startswith("Overall"))
    assert "of 2 saliency experiments" in overall and "1 is better, 0 are worse and 1 is not" in overall
    assert "(the other 1 comparison, of controls, baselines and further questions, is not counted here)" in overall
    # the control is answered as a control
    assert "Does FanIn1-const differ from RGB*?" in _text(res, tmp_path)


def test_one_seed_overall_gives_no_verdict(tmp_path, cases):
    gain = cases["one_seed_gain"]
    res = _results(tmp_path, {"FanIn1": gain, "FanIn2": gain, "FanIn1-const": gain})
    overall = next(line for line in _text(res, tmp_path).splitlines() if line.startswith("Overall"))
    assert "none gets a verdict" in overall and "better" not in overall.split("none gets")[0]


def test_family_size_reaches_equivalence(cases):
    # Equivalence is tested at alpha / family: a result that is equivalent alone may not be among many.
    eq = cases["equivalent"]
    assert eq.top1.se > 0
    assert claim_status("same", replace(eq, family=1), MARGIN, ALPHA).startswith("consistent")
    assert claim_status("same", replace(eq, family=10 ** 9), MARGIN, ALPHA).startswith("not testable")


def test_a_claim_of_no_difference_reads_the_margin_in_points_and_a_family_of_one(cases):
    from scipy import stats as sps

    # one-sided t statistics 0.2% past the critical value at alpha for a margin of 1 point
    df = 2.0
    se = 0.01 / (sps.t.ppf(1 - ALPHA, df) * 1.002)
    iv = stats.Interval(diff=0.0, low=-0.1, high=0.1, level=0.95, over="seeds+images", se=se, df=df)
    c = replace(cases["noise"], top1=iv, family=None)
    assert claim_status("same", c, MARGIN, ALPHA).startswith("consistent")
    assert claim_status("same", c, 0.99, ALPHA).startswith("not testable")
    assert claim_status("same", replace(c, family=2), MARGIN, ALPHA).startswith("not testable")


def test_a_gain_is_the_maps_only_when_the_experiment_beats_every_control(cases):
    better, worse, noise, one = cases["better"], cases["worse"], cases["noise"], cases["one_seed_gain"]
    said = lambda gain, controls: attribute_gain("FanIn3", "RGB*", gain, controls)  # noqa: E731
    assert said(better, {"noS": better, "centre": better}) == "the gain is the map's: FanIn3 also beats every control"
    # a control that matches the gain, or beats it, takes it from the map
    assert said(better, {"noS": better, "centre": noise}) == \
        "not shown to be the map's: FanIn3 is not better than centre"
    assert said(better, {"noS": worse, "centre": noise}) == \
        "not shown to be the map's: FanIn3 is not better than noS and centre"
    # no gain over the baseline: nothing to explain, whatever the controls say
    for gain in (noise, worse):
        assert said(gain, {"noS": better}) == "no gain to explain: FanIn3 is not better than RGB*"
    assert said(better, {"noS": better, "centre": None}) == "not decided yet: centre not finished"
    assert said(one, {"noS": better}) == NOT_TESTED and said(better, {"noS": one}) == NOT_TESTED


def test_the_conclusion_asks_whether_a_gain_is_the_maps_where_controls_are_compared(tmp_path, cases):
    outcome = {"FanIn1": cases["better"], "FanIn2": cases["better"], "FanIn1-const": cases["noise"],
               ("FanIn1", "FanIn1-const"): cases["noise"]}
    assert "Is the gain due to the map?" not in _text(_results(tmp_path, outcome), tmp_path)
    text = _text(_results(tmp_path, outcome, ({"variant": "FanIn1", "against": "FanIn1-const"},)), tmp_path)
    section = text.split("### Is the gain due to the map?")[1].split("\n\n")[2].splitlines()
    const = cases["noise"].top1.diff * 100
    assert section == [  # FanIn2 has no control compared with it
        f"- FanIn1: FanIn1 − RGB* = {cases['better'].top1.diff * 100:+.2f} points top-1 (better); FanIn1 − "
        f"FanIn1-const = {const:+.2f} points top-1 (not distinguishable from noise): **not shown to be the map's: "
        "FanIn1 is not better than FanIn1-const**."]
