"""The report's conclusion, generated from the comparisons' numbers by the rules
of salclass.study.claims."""

from __future__ import annotations

import numpy as np

from salclass.io import read_json
from salclass.study import stats
from salclass.study.claims import answer, attribute_gain, claim_status, direction, saliency_experiment
from salclass.study.folder import StudyFolder
from salclass.say import agree, counted
from salclass.study.render import Block, fmt_count, fmt_p, fmt_points
from salclass.study.results import PairResult, StudyResults


def conclusions(res: StudyResults) -> list[Block]:
    """Plain-language findings, each derived from a comparison by fixed rules
    (`claim_status` for the thesis's claims, the verdict for the rest)."""
    done = [p for p in res.pairs if p.result is not None]
    out = [Block("h2", "Conclusion (generated from the numbers above)")]
    if not done:
        return out + [Block("p", "No comparison has both of its runs finished yet.")]
    # Two runs that agree on every image give a zero-width interval, which says nothing about resolution.
    widths = [100.0 * (p.result.top1.high - p.result.top1.low) / 2 for p in done
              if p.result.top1.high > p.result.top1.low]
    images = max(p.images for p in done)
    n_seeds = max(len(p.seeds) for p in done)
    if widths:
        covers = "the choice of images and training noise" if n_seeds >= 2 else "the choice of images only"
        text = (f"Resolution: with {images} validation images and {counted(n_seeds, 'seed')}, the 95% intervals "
                f"(covering {covers}) of the pairs that disagree on some image are about "
                f"±{float(np.median(widths)):.1f} points wide (median), so smaller differences cannot be told from "
                "noise in this study.")
        needed = [100.0 * stats.needed_difference(p.result, res.cfg.alpha) for p in done
                  if p.result.can_decide and p.result.top1.se]
        if needed:
            text += (f" After the adjustment for {done[0].result.family} comparisons, a verdict needs a difference "
                     f"of about {float(np.median(needed)):.1f} points (median over the pairs; the first step of "
                     f"Holm's method at {n_seeds} seeds). More seeds narrow both.")
        out.append(Block("p", text))

    margin = res.cfg.equivalence_margin
    claims, answers = [], []
    for p in done:
        # A comparison's own `claim` is what the thesis says in words; it stands over the direction
        # its two networks' numbers happen to take (a claim of no difference beside a gap of a few tenths).
        claim = p.claim if p.claim is not None else (direction(p.thesis_delta) if p.thesis_delta is not None else None)
        if p.thesis_delta is not None:
            thesis = f"the thesis reports {p.thesis_delta:+.2f} points top-1"
            if p.claim is not None:
                thesis += " and calls it no difference" if p.claim == "same" else f" and calls {p.variant} {p.claim}"
        elif claim == "same":
            thesis = "the thesis reports no difference"
        else:
            thesis = f"the thesis reports {p.variant} {claim} than {p.against}"
        if claim is not None:
            label = f"{p.question} " if p.question else ""
            claims.append(f"{label}{p.variant} vs {p.against}: {thesis}; here {_diff_text(p)}: "
                          f"**{claim_status(claim, p.result, margin, res.cfg.alpha)}**.")
        elif p.question or not saliency_experiment(res, p) or res.cfg.experiment(p.variant).stage == "future":
            q = p.question or f"Does {p.variant} differ from {p.against}?"
            answers.append(f"{q} {_diff_text(p)}: **{answer(p.result, p)}**.")
    if claims:
        out += [Block("h3", "The thesis's claims"), Block("list", items=claims)]
    if answers:
        out += [Block("h3", "What the controls and the new experiments show"), Block("list", items=answers)]
    out += _attribution(res)
    out += _overall(res, done)
    out += _untrained(res)
    out += _params_conclusion(res.study)
    return out


def _diff_text(p: PairResult) -> str:
    c = p.result
    adj = "" if c.p_adjusted is None else f", Holm-adjusted p = {fmt_p(c.p_adjusted)}"
    scope = "" if c.can_decide else ", images only"
    return (f"{p.variant} − {p.against} = {fmt_points(c.top1.diff)} points top-1 "
            f"(95% CI {fmt_points(c.top1.low)} to {fmt_points(c.top1.high)}{scope}; p = {fmt_p(c.p)}{adj})")


def _attribution(res: StudyResults) -> list[Block]:
    """For each saliency experiment compared with controls of its own, whether its gain is the map's."""
    controls = {e.name for e in res.cfg.experiments if e.stage == "controls"}
    items = []
    for gain in res.pairs:
        mine = [p for p in res.pairs if p.variant == gain.variant and p.against in controls - {gain.against}]
        if gain.result is None or not mine or not saliency_experiment(res, gain):
            continue
        said = "; ".join(_short_diff(p) for p in [gain] + mine)
        status = attribute_gain(gain.variant, gain.against, gain.result,
                                {p.against: p.result for p in mine})
        items.append(f"{gain.variant}: {said}: **{status}**.")
    if not items:
        return []
    return [Block("h3", "Is the gain due to the map?"),
            Block("p", "A saliency experiment's gain over its baseline is put down to the map only where the "
                       "experiment also beats every control it is compared with: the same network without the "
                       "map, or fed a map that holds no saliency (the centre bias, a constant). A gain that a "
                       "control matches comes from the change of network or from a spatial prior."),
            Block("list", items=items)]


def _short_diff(p: PairResult) -> str:
    if p.result is None:
        return f"{p.variant} − {p.against} not finished yet"
    verdict = p.result.verdict if p.result.can_decide else "one seed, no verdict"
    return f"{p.variant} − {p.against} = {fmt_points(p.result.top1.diff)} points top-1 ({verdict})"


def _overall(res: StudyResults, done: list[PairResult]) -> list[Block]:
    """The count over saliency experiments only; controls answer other questions."""
    saliency = [p for p in done if saliency_experiment(res, p)]
    others = len(done) - len(saliency)
    if not saliency:
        return []
    best = max(saliency, key=lambda p: p.result.top1.diff)
    worst = min(saliency, key=lambda p: p.result.top1.diff)
    excluded = (f" (the other {counted(others, 'comparison')}, of controls, baselines and further questions, "
                f"{agree(others, 'is', 'are')} not counted here)" if others else "")
    decidable = [p for p in saliency if p.result.can_decide]
    if decidable:
        counts = {v: sum(p.result.verdict == v for p in decidable) for v in (stats.BETTER, stats.WORSE, stats.NOISE)}
        said = {v: f"{n} {agree(n, 'is', 'are')}" for v, n in counts.items()}
        text = (f"Overall, of {counted(len(decidable), 'saliency experiment')} compared with their baselines"
                f"{excluded}, {said[stats.BETTER]} better, {said[stats.WORSE]} worse and {said[stats.NOISE]} not "
                "distinguishable from noise.")
        undecided = len(saliency) - len(decidable)
        if undecided:
            text += f" {undecided} more {agree(undecided, 'has', 'have')} one seed only and no verdict."
    else:
        up = sum(p.result.top1.diff > 0 for p in saliency)
        down = sum(p.result.top1.diff < 0 for p in saliency)
        text = (f"Overall, {counted(len(saliency), 'saliency experiment')} {agree(len(saliency), 'was', 'were')} "
                f"compared with their baselines{excluded}, "
                "with one seed each, so none gets a verdict: training noise was not measured. "
                f"{counted(up, 'difference')} {agree(up, 'points', 'point')} up and {down} down.")
    if best.result.top1.diff > 0:
        text += (f" The largest gain is {best.variant} over {best.against} "
                 f"({fmt_points(best.result.top1.diff)} points, {best.result.verdict}).")
    if worst.result.top1.diff < 0:
        text += (f" The largest loss is {worst.variant} against {worst.against} "
                 f"({fmt_points(worst.result.top1.diff)} points, {worst.result.verdict}).")
    return [Block("p", text)]


def _untrained(res: StudyResults) -> list[Block]:
    """Runs that give every validation image the same class have not learned to tell classes apart."""
    stuck = [f"{name} (seed {r.seed})" for name, e in res.experiments.items() for r in e.runs.values()
             if r.predicted_classes == 1 and len(r.class_names) > 1]
    if not stuck:
        return []
    return [Block("p", f"{len(stuck)} of {sum(len(e.runs) for e in res.experiments.values())} runs predict the "
                       "same class for every validation image, so they have not learned to tell the classes "
                       "apart yet and their comparisons say nothing about saliency: " + ", ".join(stuck) + ". "
                       "Longer runs (a larger epoch_scale) or more images are needed.")]


def _params_conclusion(study: StudyFolder) -> list[Block]:
    if not study.params.is_file():
        return []
    claims = read_json(study.params).get("thesis") or []
    wrong = [c for c in claims if not c["matches"]]
    if not claims:
        return []
    text = f"Of the thesis's {len(claims)} parameter figures, {len(claims) - len(wrong)} match the networks built here"
    if wrong:
        text += "; these do not: " + "; ".join(f"{c['claim']} (stated {fmt_count(c['stated'])}, counted "
                                                f"{fmt_count(c['actual'])})" for c in wrong)
    return [Block("p", text + ".")]
