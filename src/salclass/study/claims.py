"""The rules that turn a comparison into the report's words: what a verdict says
of a thesis claim, which comparisons count as saliency experiments, and the
answer to a further question. Fixed in advance; no finding is written by hand."""

from __future__ import annotations

from salclass.study import stats
from salclass.say import listed
from salclass.study.results import PairResult, StudyResults

# What a comparison says of a thesis claim (claim_status).
HOLDS = "holds"
CONTRADICTED = "contradicted: the difference here goes the other way"
NOT_CONFIRMED = "not confirmed: the difference here is within noise"
NOT_TESTED = "not tested: one seed, so training noise was not measured"
SAME_CONSISTENT = "consistent: equivalent within ±{margin:g} points here"
SAME_CONTRADICTED = "contradicted: there is a difference here"
SAME_UNTESTABLE = "not testable at this resolution: neither a difference nor equivalence within ±{margin:g} points"

# Whether a saliency experiment's gain over its baseline is the map's (attribute_gain).
MAP_GAIN = "the gain is the map's: {variant} also beats every control"
NO_GAIN = "no gain to explain: {variant} is not better than {baseline}"
NOT_THE_MAP = "not shown to be the map's: {variant} is not better than {controls}"
PENDING = "not decided yet: {controls} not finished"


def direction(delta: float) -> str:
    return "better" if delta > 0 else ("worse" if delta < 0 else "same")


def claim_status(claim: str, c: stats.Comparison, margin_points: float, alpha: float) -> str:
    """What our comparison says of a thesis claim ("better", "worse" or "same").

    A direction holds only when our verdict is that direction, and is contradicted
    only by the opposite verdict. "Same" is consistent only when equivalence within
    the margin is shown; an inconclusive result neither confirms nor contradicts it.
    Without a measure of training noise (one seed) nothing is tested."""
    if claim not in ("better", "worse", "same"):
        raise ValueError(f"unknown claim {claim!r}")
    if not c.can_decide:
        return NOT_TESTED
    if claim == "same":
        if c.verdict in (stats.BETTER, stats.WORSE):
            return SAME_CONTRADICTED
        if stats.equivalent(c.top1, margin_points / 100.0, alpha, c.family or 1):
            return SAME_CONSISTENT.format(margin=margin_points)
        return SAME_UNTESTABLE.format(margin=margin_points)
    wanted, opposite = (stats.BETTER, stats.WORSE) if claim == "better" else (stats.WORSE, stats.BETTER)
    if c.verdict == wanted:
        return HOLDS
    if c.verdict == opposite:
        return CONTRADICTED
    return NOT_CONFIRMED


def attribute_gain(variant: str, baseline: str, gain: stats.Comparison,
                   controls: dict[str, stats.Comparison | None]) -> str:
    """Whether `variant`'s gain over `baseline` is the map's: only if the variant also beats each
    control it is compared with (the same network without the map, or fed a map that is no
    saliency). A gain that a control matches is the network's or the spatial prior's."""
    if not gain.can_decide:
        return NOT_TESTED
    if gain.verdict != stats.BETTER:
        return NO_GAIN.format(variant=variant, baseline=baseline)
    pending = [name for name, c in controls.items() if c is None]
    if pending:
        return PENDING.format(controls=listed(pending))
    if not all(c.can_decide for c in controls.values()):
        return NOT_TESTED
    matched = [name for name, c in controls.items() if c.verdict != stats.BETTER]
    if matched:
        return NOT_THE_MAP.format(variant=variant, controls=listed(matched))
    return MAP_GAIN.format(variant=variant)


def saliency_experiment(res: StudyResults, p: PairResult) -> bool:
    """Whether `p` is a saliency experiment against its own baseline, what the overall count
    is about. Controls, baselines compared with each other and the extra questions are not."""
    e = res.cfg.experiment(p.variant)
    return e.stage not in ("controls", "baselines") and e.baseline == p.against


def answer(c: stats.Comparison, p: PairResult) -> str:
    if not c.can_decide:
        return "no verdict: one seed"
    return {stats.BETTER: f"yes, {p.variant} is better than {p.against}",
            stats.WORSE: f"{p.variant} is worse than {p.against}",
            stats.NOISE: "no evidence of a difference at this sample size"}[c.verdict]
