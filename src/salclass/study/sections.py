"""The report's sections before its conclusion: the set-up, the tables of results,
parameters and saliency metrics, the curves, and how the statistics are computed.
Each is a list of blocks (salclass.study.render) laid out from what was read or
drawn before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salclass import checksum
from salclass.errors import UserError
from salclass.io import read_json
from salclass.study import stats
from salclass.study.config import GROUP_TITLES, StudyConfig
from salclass.study.figures import figure_list
from salclass.study.folder import PARAMS_TYPE, SALIENCY_TYPE, STORE_SUMMARY_TYPE, StudyFolder
from salclass.study.render import (Block, fmt_count, fmt_difference, fmt_duration, fmt_interval, fmt_metric,
                                   fmt_p_pair, fmt_spread, fmt_thesis)
from salclass.say import agree, counted, listed
from salclass.study.results import SCHEDULE_KEYS, StudyResults


def setup(res: StudyResults, store_txt: str) -> list[Block]:
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
    training = _training_text(res)
    if training:
        out.append(Block("p", training))
    seconds = sum(r.seconds for e in res.experiments.values() for r in e.runs.values())
    if n_done:
        out.append(Block("p", f"Compute: {fmt_duration(seconds)} of training and validation over the {n_done} finished "
                              "runs (the epochs' times their metrics logged, on whatever machine and load each run "
                              "met)."))
    missing = [f"{name} seed {s}" for name, e in res.experiments.items() for s in e.missing]
    if missing:
        out.append(Block("p", "Not finished yet (shown as missing below): " + ", ".join(missing) + "."))
    if res.unaccounted:
        out.append(Block("p", f"**Not in this report**: {counted(len(res.unaccounted), 'folder')} under runs/ "
                              f"{agree(len(res.unaccounted), 'is', 'are')} no run of "
                              "this study's study.yaml (a study.yaml cut short or edited, or seeds or experiments "
                              "removed since): " + ", ".join(f"`{_rel(p, res)}`" for p in res.unaccounted) + "."))
    if res.unverified:
        out.append(Block("p", f"{counted(len(res.unverified), 'record file')} {agree(len(res.unverified), 'carries', 'carry')} no "
                              "checksum (written before salclass recorded them) and "
                              f"{agree(len(res.unverified), 'was', 'were')} read unverified: "
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


def _training_text(res: StudyResults) -> str:
    """The optimiser and schedule of the finished runs, from their saved configs: stated once where they agree
    (the number of epochs may differ, as the tables show), else the settings that differ and their values."""
    from salclass.data import default_crop

    runs = [r for e in res.experiments.values() for r in e.runs.values() if r.schedule]
    if not runs:
        return ""
    crop = default_crop(res.cfg.data.size)
    settings = [{**r.schedule, "crop": r.schedule.get("crop") or crop} for r in runs]
    differ = sorted({k for s in settings for k in s if k != "epochs" and any(t.get(k) != s.get(k) for t in settings)})
    if differ:
        values = "; ".join(f"{k}: " + ", ".join(sorted({str(s.get(k)) for s in settings})) for k in differ)
        return (f"Training: the finished runs differ in {', '.join(differ)} ({values}); each run's config.yaml holds "
                "its own settings.")
    s = settings[0]
    unrecorded = [k for k in SCHEDULE_KEYS if k != "epochs" and s.get(k) is None]
    if unrecorded:
        return (f"Training: the finished runs' config.yaml files do not record {', '.join(unrecorded)} (written by "
                "an older salclass); each holds the settings it does record.")
    try:
        g = float(s["lr_gamma"])
        gamma = f"divided by {1 / g:g}" if 0 < g < 1 else f"times {g:g}"
        steps = (f", {gamma} after {agree(len(s['milestones']), 'epoch', 'epochs')} "
                 + listed([str(m) for m in s["milestones"]]) if s.get("milestones") else "")
        on = " on every parameter" if s["decay_on"] == "all" else " on the weights of convolutions and linear layers"
        return (f"Training: SGD with momentum {s['momentum']:g}, learning rate {s['lr']:g}{steps}; weight decay "
                f"{s['weight_decay']:g}{on}; batches of {s['batch_size']}; dropout {s['dropout']:g}; random "
                f"{s['crop']} px crops with horizontal flips for training, the centre crop for validation. Epochs per "
                "experiment are in the tables.")
    except (TypeError, ValueError):
        raise UserError(f"{runs[0].dir}: its config.yaml holds a training setting of the wrong type "
                        f"({', '.join(f'{k}: {v!r}' for k, v in sorted(s.items()))})") from None


def _precision_text(res: StudyResults) -> str:
    p = res.cfg.train.get("precision")
    own = sorted({e.train["precision"] for e in res.cfg.experiments if e.train.get("precision") not in (None, p)})
    if p not in ("fp32", "bf16"):
        return "Precision: not recorded (a study from before one precision per study)."
    text = f"Precision: {p}, one for every run"
    return text + (f" but the experiments that name their own ({', '.join(own)})." if own else ".")


def store_summary(study: StudyFolder) -> str:
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


def results_table(res: StudyResults) -> list[Block]:
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
            rows.append([e.name, model, start, str(epochs), fmt_spread(r.top1), fmt_spread(r.top5), e.baseline or "",
                         fmt_interval(cmp_.top1) if cmp_ else "", fmt_interval(cmp_.top5) if cmp_ else "",
                         *(fmt_p_pair(cmp_) if cmp_ else ("", "")), cmp_.verdict if cmp_ else "",
                         fmt_thesis(e.thesis.top1), fmt_thesis(e.thesis.top5)])
        out += [Block("h3", title), Block("table", header=header, items=rows)]
        described = [f"{e.name}: {e.description}" for e in exps if e.description]
        if described:
            out.append(Block("p", "; ".join(described) + "."))
    return out


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


def extra_table(res: StudyResults) -> list[Block]:
    extra = [p for p in res.pairs if p.question or res.cfg.experiment(p.variant).baseline != p.against]
    if not extra:
        return []
    rows = []
    for p in extra:
        c = p.result
        rows.append([p.question, p.variant, p.against, fmt_interval(c.top1) if c else "missing",
                     f"{c.mcnemar.b} / {c.mcnemar.c}" if c else "", *(fmt_p_pair(c) if c else ("", "")),
                     c.verdict if c else ""])
    return [Block("h2", "Controls and further comparisons"),
            Block("p", "Each row compares two experiments image by image, like the table above; "
                       "b / c count the images only the first / only the second gets right (summed over seeds)."),
            Block("table", header=["Question", "Experiment", "Against", "Δ top-1 [95% CI]", "b / c",
                                   "p", "p (Holm)", "Verdict"], items=rows)]


def comparisons_section(drawn: dict[str, Path]) -> list[Block]:
    if "comparisons" not in drawn:
        return []
    return [Block("h2", "Every comparison at a glance"),
            Block("p", "The top-1 differences of the two tables above with their 95% intervals, coloured by "
                       "verdict; a cross marks the thesis's difference where it reports both networks."),
            Block("img", text="every comparison's top-1 difference", path=drawn["comparisons"])]


def class_table(res: StudyResults) -> list[Block]:
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


def params_table(study: StudyFolder) -> list[Block]:
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
                      items=[[c["claim"], fmt_count(c["stated"]), fmt_count(c["actual"]), "yes" if c["matches"] else "no",
                              c["why"]] for c in claims])]
    return out


def figures_section(res: StudyResults, drawn: dict[str, Path]) -> list[Block]:
    out = [Block("h2", "Validation curves"),
           Block("p", "Validation top-1 after every epoch (mean over seeds; the band spans the seeds).")]
    shown = [(name, title) for name, title, _ in figure_list(res.cfg) if name in drawn]
    for name, title in shown:
        out += [Block("h3", title), Block("img", text=title, path=drawn[name])]
    if not shown:
        out.append(Block("p", "No finished run has curves yet."))
    return out


def saliency_section(res: StudyResults, drawn: dict[str, Path]) -> list[Block]:
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
                             items=[[r["model"]] + [fmt_metric(r.get(k)) for k in cols] for r in rows]))
        versus = data.get("versus_centre_bias") or []   # older study folders lack it
        if versus:
            cols = [k for k in versus[0] if k != "model"]
            out += [Block("p", "Each model's per-image difference from the centre bias, with a 95% bootstrap "
                               "interval over these images: it covers which images were drawn, not training "
                               "noise, and is not adjusted for the number of metrics."),
                    Block("table", header=["Model"] + cols,
                          items=[[r["model"]] + [fmt_difference(r.get(k)) for k in cols] for r in versus])]
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
            text += (f" Here only {counted(prior.comparisons, 'comparison')} measured training noise, too few to fit a "
                     "prior, so each comparison uses its own seeds alone.")
        else:
            fitted = "infinite" if np.isinf(prior.df) else f"{prior.df:.1f}"
            text += (f" Fitted on {prior.comparisons} comparisons: a prior SD of the per-seed differences of "
                     f"{100 * prior.var ** 0.5:.2f} points, prior degrees of freedom {fitted}.")
    return text + floor + (" A comparison with no spread at all is moderated like the others: its zero variance is "
                           "averaged with the prior's (p = 1 where no prior could be fitted).")


def method(cfg: StudyConfig, prior: stats.Prior | None = None) -> list[Block]:
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
