"""The study's report: DIR/report.md, figures under DIR/figures/, and a
self-contained DIR/report.html, built only from files inside the study folder.

The report is assembled as a list of blocks (headings, paragraphs, tables,
images) and rendered twice, to Markdown and to HTML, so the two never disagree.
Its conclusion is generated from the comparisons' numbers by fixed rules (see
`conclusions`); no finding is written in advance.
"""

from __future__ import annotations

import base64
import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salclass import checksum
from salclass.errors import UserError
from salclass.io import atomic_write_text, read_json
from salclass.study import stats
from salclass.study.config import GROUP_TITLES, StudyConfig
from salclass.study.figures import curves, example_grid
from salclass.study.folder import (PARAMS_TYPE, SALIENCY_TYPE, STORE_SUMMARY_TYPE, STUDY_YAML, StudyFolder,
                                   read_study_config)
from salclass.study.results import PairResult, StudyResults, collect


@dataclass
class Block:
    kind: str  # "h1", "h2", "h3", "p", "list", "table", "img"
    text: str = ""
    items: list | None = None
    header: list[str] | None = None
    path: Path | None = None


# --- formatting ------------------------------------------------------------

def _pm(s: stats.Spread | None) -> str:
    if s is None:
        return "missing"
    return f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else f"{s.mean:.2f}"


def _pts(x: float) -> str:
    return f"{100.0 * x:+.2f}"


def _ci(iv: stats.Interval | None) -> str:
    if iv is None:
        return ""
    return f"{_pts(iv.diff)} [{_pts(iv.low)}, {_pts(iv.high)}]"


def _p(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _thesis(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _p_pair(c: stats.Comparison) -> tuple[str, str]:
    return _p(c.p), ("" if c.p_adjusted is None else _p(c.p_adjusted))


def _family_note(res: StudyResults) -> list[Block]:
    """How many comparisons were made, how p is adjusted, and what one seed cannot tell."""
    done = [p.result for p in res.pairs if p.result is not None]
    if not done:
        return []
    text = (f"This study makes {len(done)} comparisons (both tables below); their p-values are adjusted together "
            "with Holm's method, which keeps the chance of even one false verdict in the whole study below "
            f"alpha = {res.cfg.alpha:g}.")
    one = [c for c in done if not c.can_decide]
    if one:
        text += (f" {len(one)} of them rest on one seed: with one run per network the run-to-run training noise "
                 "was not measured, so they get no verdict. Their interval (paired bootstrap over images) and p "
                 "(McNemar's test) cover only the choice of validation images; a difference of several points "
                 "between two single runs can be training noise alone (docs/study.md, \"How verdicts are made\"). "
                 "Verdicts need several seeds: the shipped thesis studies use 5.")
    return [Block("p", text)]


# --- sections --------------------------------------------------------------

def _setup(res: StudyResults, store_txt: str) -> list[Block]:
    cfg = res.cfg
    out = []
    n_runs = len(cfg.experiments) * len(cfg.seeds)
    n_done = sum(len(e.runs) for e in res.experiments.values())
    src = cfg.data.source if cfg.data.source is not None else cfg.data.store
    out.append(Block("p", f"Data: {store_txt} (from `{src}`), images of {cfg.data.size} px. "
                          f"Seeds: {', '.join(map(str, cfg.seeds))}. Epoch scale: {cfg.epoch_scale:g} "
                          f"(thesis-length runs are multiplied by it). Block order: {cfg.block_order}. "
                          f"Saliency model: `{cfg.saliency.model}`. {_precision_text(res)} "
                          f"Runs finished and evaluated: {n_done} of {n_runs}."))
    missing = [f"{name} seed {s}" for name, e in res.experiments.items() for s in e.missing]
    if missing:
        out.append(Block("p", "Not finished yet (shown as missing below): " + ", ".join(missing) + "."))
    if res.unaccounted:
        out.append(Block("p", f"**Not in this report**: {len(res.unaccounted)} folder(s) under runs/ are no run of "
                              "this study's study.yaml (a study.yaml cut short or edited, or seeds or experiments "
                              "removed since): " + ", ".join(f"`{_rel(p, res)}`" for p in res.unaccounted) + "."))
    if res.unverified:
        out.append(Block("p", f"{len(res.unverified)} record file(s) carry no checksum (written before salclass "
                              "recorded them) and were read unverified: "
                              + ", ".join(f"`{_rel(p, res)}`" for p in res.unverified[:12])
                              + (", ..." if len(res.unverified) > 12 else "") + "."))
    out.append(Block("p", "The thesis's numbers (ImageNet, 1000 classes, one run each) are printed beside ours "
                          "for reference only: the data sets differ, so only the direction and size of the "
                          "differences can be compared, never the accuracies themselves."))
    return out


def _rel(path: Path, res: StudyResults) -> str:
    try:
        return path.relative_to(res.study.root).as_posix()
    except ValueError:
        return str(path)


def _precision_text(res: StudyResults) -> str:
    p = res.cfg.train.get("precision")
    own = sorted({e.train["precision"] for e in res.cfg.experiments if e.train.get("precision") not in (None, p)})
    if p not in ("fp32", "bf16"):
        return "Precision: not recorded (a study from before one precision per study)."
    text = f"Precision: {p}, one for every run"
    return text + (f" but the experiments that name their own ({', '.join(own)})." if own else ".")


def _store_summary(study: StudyFolder) -> str:
    """From the store, or else from what the study recorded of it (store.json: a copy of the records)."""
    from salclass.data import Store

    counts, n_classes = {}, 0
    for split in ("train", "val"):
        try:
            s = Store.open(study.store / split)
        except UserError:
            continue
        counts[split], n_classes = s.count, len(s.classes)
    if not counts and study.store_summary.is_file():
        data, _ = checksum.read_json_checked(study.store_summary)
        if not isinstance(data, dict) or data.get("type") != STORE_SUMMARY_TYPE:
            raise UserError(f"{study.store_summary}: not a study's store summary")
        for split in ("train", "val"):
            if isinstance(data.get(split), dict):
                counts[split], n_classes = data[split]["count"], len(data[split]["classes"])
    if not counts:
        return "store not found"
    return f"{n_classes} classes, {' / '.join(f'{n} {split}' for split, n in counts.items())} images"


def _results_table(res: StudyResults) -> list[Block]:
    cfg = res.cfg
    by_pair = {(p.variant, p.against): p for p in res.pairs}
    out = [Block("h2", "Results (the analogue of table 4.1)"),
           Block("p", "Top-1 and top-5 validation accuracy in percent (mean ± standard deviation over seeds). "
                      "Δ is the experiment minus its baseline in percentage points with its 95% confidence "
                      "interval; p is the raw p-value of the top-1 difference and p (Holm) the same adjusted for "
                      "all the comparisons of this study; the verdict says whether the difference is "
                      f"distinguishable from noise (adjusted p below alpha = {cfg.alpha:g}).")]
    out += _family_note(res)
    classes = {len(r.class_names) for e in res.experiments.values() for r in e.runs.values()}
    if classes and max(classes) <= 5:
        out.append(Block("p", f"With {max(classes)} classes every run's top-5 accuracy is 100% by definition; "
                              "only top-1 says anything here."))
    header = ["Experiment", "Model", "Start", "Epochs", "Top-1 %", "Top-5 %", "Baseline", "Δ top-1 [95% CI]",
              "Δ top-5 [95% CI]", "p", "p (Holm)", "Verdict", "Thesis top-1", "Thesis top-5"]
    for group, title in GROUP_TITLES.items():
        exps = [e for e in cfg.experiments if e.stage == group]
        if not exps:
            continue
        rows = []
        for e in exps:
            r = res.experiments[e.name]
            epochs, _ = cfg.schedule(e)
            start = f"from {e.init_from}" if e.init_from else "scratch"
            pr = by_pair.get((e.name, e.baseline)) if e.baseline else None
            cmp_ = pr.result if pr else None
            model = e.model + (", mean subtracted" if e.mean_subtract else "")
            if e.attention is not None:
                model += f", attention transfer β={e.attention.beta:g} at {e.attention.layer}"
            rows.append([e.name, model, start, str(epochs), _pm(r.top1), _pm(r.top5), e.baseline or "",
                         _ci(cmp_.top1) if cmp_ else "", _ci(cmp_.top5) if cmp_ else "",
                         *(_p_pair(cmp_) if cmp_ else ("", "")), cmp_.verdict if cmp_ else "",
                         _thesis(e.thesis.top1), _thesis(e.thesis.top5)])
        out += [Block("h3", title), Block("table", header=header, items=rows)]
        described = [f"{e.name}: {e.description}" for e in exps if e.description]
        if described:
            out.append(Block("p", "; ".join(described) + "."))
    return out


def _extra_table(res: StudyResults) -> list[Block]:
    extra = [p for p in res.pairs if p.question or res.cfg.experiment(p.variant).baseline != p.against]
    if not extra:
        return []
    rows = []
    for p in extra:
        c = p.result
        rows.append([p.question, p.variant, p.against, _ci(c.top1) if c else "missing",
                     f"{c.mcnemar.b} / {c.mcnemar.c}" if c else "", *(_p_pair(c) if c else ("", "")),
                     c.verdict if c else ""])
    return [Block("h2", "Controls and further comparisons"),
            Block("p", "Each row compares two experiments image by image, like the table above; "
                       "b / c count the images only the first / only the second gets right (summed over seeds)."),
            Block("table", header=["Question", "Experiment", "Against", "Δ top-1 [95% CI]", "b / c",
                                   "p", "p (Holm)", "Verdict"], items=rows)]


def _class_table(res: StudyResults) -> list[Block]:
    rows = []
    for p in res.pairs:
        if p.result is None or res.cfg.experiment(p.variant).baseline != p.against:
            continue
        for k, g in enumerate(p.class_gains):
            rows.append([p.variant if k == 0 else "", p.against if k == 0 else "", g["name"],
                         f"{g['baseline']}/{g['total']}", f"{g['variant']}/{g['total']}", f"{g['gain']:+.1f}"])
    if not rows:
        return []
    return [Block("h2", "Classes that improved most (the analogue of table 4.2)"),
            Block("p", "For each experiment, the three classes whose top-1 accuracy rose most over its baseline: "
                       "correct validation images out of all of that class (summed over seeds), and the change "
                       "in percentage points. With few images per class a change of one image is already "
                       "several points."),
            Block("table", header=["Experiment", "Baseline", "Class", "Baseline correct", "Experiment correct",
                                   "Change (points)"], items=rows)]


def _params_table(study: StudyFolder) -> list[Block]:
    if not study.params.is_file():
        return [Block("h2", "Parameters"), Block("p", "No parameter table was recorded for this study.")]
    data = read_json(study.params)
    if data.get("type") != PARAMS_TYPE:
        raise UserError(f"{study.params}: not a study parameter table")
    base = data["models"].get(data.get("baseline", ""), {}).get("total")
    rows = []
    for name, m in data["models"].items():
        delta = "" if base is None else f"{m['total'] - base:+,}"
        rows.append([name, ", ".join(m.get("used_by", [])), f"{m['total']:,}", delta, m.get("description", "")])
    out = [Block("h2", "Parameters"),
           Block("p", f"Trainable parameters (weights, biases, batch-norm scale and shift) of every network in "
                      f"the study at {data['input_size']} px input with {data['num_classes']} classes, from "
                      f"salclass.models, and the difference to {data.get('baseline', 'the baseline')}."),
           Block("table", header=["Model", "Experiments", "Parameters", "Δ vs baseline", "Network"], items=rows)]
    claims = data.get("thesis") or []
    if claims:
        out += [Block("p", "The figures the thesis states (section 3.6) beside the count of these networks:"),
                Block("table", header=["Thesis figure", "Stated", "Counted", "Same", "Why"],
                      items=[[c["claim"], _num(c["stated"]), _num(c["actual"]), "yes" if c["matches"] else "no",
                              c["why"]] for c in claims])]
    return out


def _num(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _figure_list(cfg: StudyConfig) -> list[tuple[str, str, list[str]]]:
    """(file stem, title, experiments) of every curve figure: the configured ones, else one per experiment group."""
    if cfg.figures:
        return [(f.name, f.title, f.experiments) for f in cfg.figures]
    return [(f"curves_{group}", title, [e.name for e in cfg.experiments if e.stage == group])
            for group, title in GROUP_TITLES.items() if any(e.stage == group for e in cfg.experiments)]


def draw_figures(res: StudyResults, dest: StudyFolder) -> dict[str, Path]:
    """Every PNG of the report, written under dest's figures/ before any section
    is built; a figure that has nothing to show is removed if an earlier report
    drew it. Returns the drawn ones by file stem."""
    drawn = {}
    for name, title, names in _figure_list(res.cfg):
        path = dest.figures / f"{name}.png"
        if curves(res, names, title, path):
            drawn[name] = path
        elif path.exists():
            path.unlink()
    grid = _example_grid(res, dest)
    if grid is not None:
        drawn["examples"] = grid
    return drawn


def _figures(res: StudyResults, drawn: dict[str, Path]) -> list[Block]:
    out = [Block("h2", "Validation curves"),
           Block("p", "Validation top-1 after every epoch (mean over seeds; the band spans the seeds).")]
    shown = [(name, title) for name, title, _ in _figure_list(res.cfg) if name in drawn]
    for name, title in shown:
        out += [Block("h3", title), Block("img", text=title, path=drawn[name])]
    if not shown:
        out.append(Block("p", "No finished run has curves yet."))
    return out


def _saliency(res: StudyResults, drawn: dict[str, Path]) -> list[Block]:
    study = res.study
    out = [Block("h2", "The saliency model")]
    if study.saliency.is_file():
        data = read_json(study.saliency)
        if data.get("type") != SALIENCY_TYPE:
            raise UserError(f"{study.saliency}: not a study saliency table")
        out.append(Block("p", data.get("note", "")))
        rows = data.get("rows") or []
        if rows:
            cols = [k for k in rows[0] if k != "model"]
            out.append(Block("table", header=["Model"] + cols,
                             items=[[r["model"]] + [_metric(r.get(k)) for k in cols] for r in rows]))
        versus = data.get("versus_centre_bias") or []   # absent from studies run before 2026-11-30
        if versus:
            cols = [k for k in versus[0] if k != "model"]
            out += [Block("p", "Each model's per-image difference from the centre bias, with a 95% bootstrap "
                               "interval over these images: it covers which images were drawn, not training "
                               "noise, and is not adjusted for the number of metrics."),
                    Block("table", header=["Model"] + cols,
                          items=[[r["model"]] + [_difference(r.get(k)) for k in cols] for r in versus])]
    else:
        out.append(Block("p", "No saliency metrics were recorded for this study (set saliency.eval_data)."))
    if "examples" in drawn:
        out += [Block("p", "Validation images with the maps the classifiers were given."),
                Block("img", text="images and their saliency maps", path=drawn["examples"])]
    elif not _store_here(res.study):
        out.append(Block("p", "The grid of validation images with their maps is left out: it needs the study's "
                              "store, which is not here (a copy of the study's records keeps none)."))
    return out


def _store_here(study: StudyFolder) -> bool:
    from salclass.data import Store

    try:
        Store.open(study.val_split)
    except UserError:
        return False
    return True


def _difference(v) -> str:
    if not isinstance(v, dict):
        return "-"
    return f"{v['difference']:+.3f} ({v['low']:+.3f} to {v['high']:+.3f})"


def _metric(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def _example_grid(res: StudyResults, dest: StudyFolder) -> Path | None:
    """The first validation images of each class in turn, so every class shows up.
    Without the store, the grid a copy of the records kept (figures/examples.png)."""
    import shutil

    from salclass.data import Store

    try:
        s = Store.open(res.study.val_split)
    except UserError:
        kept = res.study.figures / "examples.png"
        if not kept.is_file():
            return None
        path = dest.figures / kept.name
        if path.resolve() != kept.resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, path)
        return path
    if not s.has_saliency or s.count == 0:
        return None
    labels = np.asarray(s.labels)
    per_class = [list(np.flatnonzero(labels == k)) for k in range(len(s.classes))]
    rows: list[int] = []
    while len(rows) < min(res.cfg.examples, s.count):
        for idx in per_class:
            if idx and len(rows) < res.cfg.examples:
                rows.append(int(idx.pop(0)))
    rows.sort()
    names = [name for _, name in s.classes]
    titles = [names[int(labels[i])][:18] for i in rows]
    path = dest.figures / "examples.png"
    example_grid(np.asarray(s.images[rows]), np.asarray(s.saliency[rows]), titles, path)
    return path


# --- the generated conclusion ----------------------------------------------

def _direction(delta: float) -> str:
    return "better" if delta > 0 else ("worse" if delta < 0 else "same")


HOLDS = "holds"
CONTRADICTED = "contradicted: the difference here goes the other way"
NOT_CONFIRMED = "not confirmed: the difference here is within noise"
NOT_TESTED = "not tested: one seed, so training noise was not measured"
SAME_CONSISTENT = "consistent: equivalent within ±{margin:g} points here"
SAME_CONTRADICTED = "contradicted: there is a difference here"
SAME_UNTESTABLE = "not testable at this resolution: neither a difference nor equivalence within ±{margin:g} points"


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


def saliency_experiment(res: StudyResults, p: PairResult) -> bool:
    """Whether `p` is a saliency experiment against its own baseline, what the overall count
    is about. Controls, baselines compared with each other and the extra questions are not."""
    e = res.cfg.experiment(p.variant)
    return e.stage not in ("controls", "baselines") and e.baseline == p.against


def _diff_text(p: PairResult) -> str:
    c = p.result
    adj = "" if c.p_adjusted is None else f", Holm-adjusted p = {_p(c.p_adjusted)}"
    scope = "" if c.can_decide else ", images only"
    return (f"{p.variant} − {p.against} = {_pts(c.top1.diff)} points top-1 "
            f"(95% CI {_pts(c.top1.low)} to {_pts(c.top1.high)}{scope}; p = {_p(c.p)}{adj})")


def _answer(c: stats.Comparison, p: PairResult) -> str:
    if not c.can_decide:
        return "no verdict: one seed"
    return {stats.BETTER: f"yes, {p.variant} is better than {p.against}",
            stats.WORSE: f"{p.variant} is worse than {p.against}",
            stats.NOISE: "no evidence of a difference at this sample size"}[c.verdict]


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
        text = (f"Resolution: with {images} validation images and {n_seeds} seed(s), the 95% intervals (covering "
                f"{covers}) of the pairs that disagree on some image are about ±{float(np.median(widths)):.1f} "
                "points wide (median), so smaller differences cannot be told from noise in this study.")
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
        claim = p.claim
        if p.thesis_delta is not None:
            claim = _direction(p.thesis_delta)
            thesis = f"the thesis reports {p.thesis_delta:+.2f} points top-1"
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
            answers.append(f"{q} {_diff_text(p)}: **{_answer(p.result, p)}**.")
    if claims:
        out += [Block("h3", "The thesis's claims"), Block("list", items=claims)]
    if answers:
        out += [Block("h3", "What the controls and the new experiments show"), Block("list", items=answers)]
    out += _overall(res, done)
    out += _untrained(res)
    out += _params_conclusion(res.study)
    return out


def _overall(res: StudyResults, done: list[PairResult]) -> list[Block]:
    """The count over saliency experiments only; controls answer other questions."""
    saliency = [p for p in done if saliency_experiment(res, p)]
    others = len(done) - len(saliency)
    if not saliency:
        return []
    best = max(saliency, key=lambda p: p.result.top1.diff)
    worst = min(saliency, key=lambda p: p.result.top1.diff)
    excluded = (f" (the other {others} comparisons, controls, baselines and further questions, are not counted "
                "here)" if others else "")
    decidable = [p for p in saliency if p.result.can_decide]
    if decidable:
        counts = {v: sum(p.result.verdict == v for p in decidable) for v in (stats.BETTER, stats.WORSE, stats.NOISE)}
        text = (f"Overall, of {len(decidable)} saliency experiments compared with their baselines{excluded}, "
                f"{counts[stats.BETTER]} are better, {counts[stats.WORSE]} are worse and "
                f"{counts[stats.NOISE]} are not distinguishable from noise.")
        undecided = len(saliency) - len(decidable)
        if undecided:
            text += f" {undecided} more have one seed only and no verdict."
    else:
        up = sum(p.result.top1.diff > 0 for p in saliency)
        down = sum(p.result.top1.diff < 0 for p in saliency)
        text = (f"Overall, {len(saliency)} saliency experiments were compared with their baselines{excluded}, "
                "with one seed each, so none gets a verdict: training noise was not measured. "
                f"{up} differences point up and {down} down.")
    if best.result.top1.diff > 0:
        text += (f" The largest gain is {best.variant} over {best.against} "
                 f"({_pts(best.result.top1.diff)} points, {best.result.verdict}).")
    if worst.result.top1.diff < 0:
        text += (f" The largest loss is {worst.variant} against {worst.against} "
                 f"({_pts(worst.result.top1.diff)} points, {worst.result.verdict}).")
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
        text += "; these do not: " + "; ".join(f"{c['claim']} (stated {_num(c['stated'])}, counted "
                                                f"{_num(c['actual'])})" for c in wrong)
    return [Block("p", text + ".")]


def _training_noise(cfg: StudyConfig, prior: stats.Prior | None) -> str:
    """How the training part of the variance was estimated: the comparison's own seeds, or moderated."""
    floor = (" The per-seed variance is never taken below the seed-by-image residual mean square over the number "
             "of images, the least it can be.")
    if cfg.verdict_test == stats.TEST_SEEDS_IMAGES:
        return ("The training part comes from the comparison's own seeds alone (`verdict_test: seeds-images`), "
                "with as many degrees of freedom as there are seeds less one." + floor + " A comparison with no "
                "spread at all gets p = 1, no verdict of a difference.")
    text = ("The training part is moderated over the study's comparisons (`verdict_test: moderated`, Smyth's "
            "moderated t): each comparison's per-seed variance is averaged with a prior variance fitted to all "
            "the comparisons' variances, weighted by their degrees of freedom, the prior's counted as at most "
            "the comparison's own.")
    if prior is not None:
        if prior.df == 0.0:
            text += (f" Here only {prior.comparisons} comparison(s) measured training noise, too few to fit a "
                     "prior, so each comparison uses its own seeds alone.")
        else:
            fitted = "infinite" if np.isinf(prior.df) else f"{prior.df:.1f}"
            text += (f" Fitted on {prior.comparisons} comparisons: a prior SD of the per-seed differences of "
                     f"{100 * prior.var ** 0.5:.2f} points, prior degrees of freedom {fitted}.")
    return text + floor + (" A comparison with no spread at all is moderated like the others: its zero variance is "
                           "averaged with the prior's (p = 1 where no prior could be fitted).")


def _method(cfg: StudyConfig, prior: stats.Prior | None = None) -> list[Block]:
    return [Block("h2", "How the statistics are computed"),
            Block("list", items=[
                "Every experiment is trained once per seed; a variant and its baseline share seeds and are "
                "evaluated on the same validation images, so their predictions are compared image by image.",
                "Several seeds: the difference of the means is tested with a t-test whose variance has two "
                "parts, the spread of the per-seed differences (training noise) and the spread of the per-image "
                "differences averaged over seeds (the choice of images, less the noise the two parts share); the "
                "95% interval is the matching t interval. " + _training_noise(cfg, prior),
                "One seed: no verdict. The interval is a paired bootstrap over the validation images and p is "
                "McNemar's test on the images only one of the two gets right (exact below 25 such images); both "
                "ignore training noise, which one run per network cannot measure.",
                "All comparisons of the study form one family: p-values are adjusted with Holm's method, and a "
                f"verdict (better or worse) needs the adjusted p below alpha = {cfg.alpha:g}.",
                "A thesis claim of a direction holds only when the verdict goes that way. A claim of no difference "
                f"is consistent only when two one-sided tests show the difference within ±{cfg.equivalence_margin:g} "
                "points (at alpha divided by the number of comparisons); otherwise it is not testable at this "
                "resolution.",
                "Controls (and baselines compared with each other) are reported as such and left out of the "
                "overall count of saliency experiments.",
                "benchmarks/verdicts.py measures the false-positive rates of these rules on simulated studies "
                "with no real differences (docs/study.md)."])]


# --- rendering -------------------------------------------------------------

def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], root: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            if b.text:
                lines += [b.text, ""]
        elif b.kind == "list":
            lines += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            lines.append("|" + "|".join("---" for _ in b.header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.items]
            lines.append("")
        elif b.kind == "img":
            lines += [f"![{b.text}]({b.path.relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    t = html.escape(str(text))
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{_inline_html(b.text)}</{b.kind}>")
        elif b.kind == "p":
            if b.text:
                body.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                           for row in b.items)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}"></p>')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def load_study_config(root: Path) -> StudyConfig:
    return read_study_config(Path(root) / STUDY_YAML)[0]


def build_report(root: str | Path, cfg: StudyConfig | None = None, out: str | Path | None = None) -> Path:
    """Write report.md, report.html and figures/*.png into `out` (default: the
    study folder `root`) from the files of `root` alone; returns the Markdown
    path. `root` may be a copy of the study's records (no checkpoints, no store)."""
    root = Path(root)
    cfg = cfg if cfg is not None else load_study_config(root)
    res = collect(root, cfg)
    dest = StudyFolder(out if out is not None else root, cfg)
    # Everything read or drawn from outside the run files comes first; the sections only lay it out.
    store_txt = _store_summary(res.study)
    drawn = draw_figures(res, dest)
    blocks = [Block("h1", f"Study report: {cfg.name}"),
              Block("p", "Built by `salclass report` from the files in this study folder only.")]
    blocks += _setup(res, store_txt)
    blocks += _results_table(res)
    blocks += _extra_table(res)
    blocks += _class_table(res)
    blocks += _params_table(res.study)
    blocks += _figures(res, drawn)
    blocks += _saliency(res, drawn)
    blocks += conclusions(res)
    blocks += _method(cfg, next((p.result.prior for p in res.pairs if p.result and p.result.prior), None))
    atomic_write_text(dest.report_md, to_markdown(blocks, dest.root))
    atomic_write_text(dest.report_html, to_html(blocks, f"Study report: {cfg.name}"))
    for p in res.unaccounted:
        print(f"salclass: warning: {p}: not a run of {root / STUDY_YAML}, left out of the report", file=sys.stderr)
    return dest.report_md


def report_cli(root: str, out: str | None = None) -> int:
    path = build_report(Path(root), out=out)
    print(f"report: {path} (and {path.with_suffix('.html').name})")
    return 0
