"""Read a study's run folders and compute what the report shows.

Nothing here trains or evaluates: every number comes from files the training
stage wrote (each run folder's metrics and evaluation, read through
salclass.run_folder), and the accuracies are computed from the
per-image predictions (the evaluation's summary must agree with them). A run folder
is read as a record: its checkpoint is not needed. Accuracies are kept in
percent from here on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salclass.errors import UserError
from salclass.study import moderation, stats
from salclass.study.config import StudyConfig
from salclass.study.folder import StudyFolder


@dataclass
class RunRecord:
    seed: int
    dir: Path
    top1: float  # percent, from the predictions
    top5: float
    index: np.ndarray  # store rows of the validation images, sorted
    label: np.ndarray
    correct1: np.ndarray  # bool, aligned with index
    correct5: np.ndarray
    curve: list[tuple[int, float]]  # (epoch, validation top-1 %) from the run's metrics
    class_names: list[str]
    predicted_classes: int  # distinct top-1 predictions over the validation images
    seconds: float = 0.0  # training and validation time its metrics logged
    schedule: dict = field(default_factory=dict)  # the optimiser and schedule its saved config names (SCHEDULE_KEYS)


@dataclass
class ExperimentResult:
    name: str
    runs: dict[int, RunRecord]
    missing: list[int]  # seeds without a finished, evaluated run
    top1: stats.Spread | None = None
    top5: stats.Spread | None = None


@dataclass
class PairResult:
    variant: str
    against: str
    question: str
    claim: str | None  # direction the thesis reported without numbers
    seeds: list[int]
    images: int
    result: stats.Comparison | None  # None when the two have no finished seed in common
    thesis_delta: float | None  # thesis top-1 difference in points, when it gives both numbers
    class_gains: list[dict] = field(default_factory=list)  # most-improved classes, best first


@dataclass
class StudyResults:
    cfg: StudyConfig
    study: StudyFolder
    experiments: dict[str, ExperimentResult]
    pairs: list[PairResult]
    unverified: list[Path] = field(default_factory=list)  # record files read without a checksum
    unaccounted: list[Path] = field(default_factory=list)  # folders under runs/ that are no run of cfg


# The settings of a run's config.yaml that make its training schedule, as the report states them.
SCHEDULE_KEYS = ("epochs", "lr", "milestones", "lr_gamma", "momentum", "weight_decay", "decay_on", "batch_size",
                 "dropout", "crop")


def percent(x: float) -> float:
    """Accuracies are fractions in the run files; the report speaks in percent."""
    return 100.0 * float(x)


def load_run(run_dir: Path, seed: int, unverified: list[Path] | None = None) -> RunRecord | None:
    """A finished and evaluated run, or None. Files read without a checksum are
    added to `unverified`."""
    from salclass.run_folder import RunFolder

    folder = RunFolder(run_dir)
    if not folder.is_record():
        return None
    if not folder.evaluation_matches():
        raise UserError(f"{folder.eval}: made from another checkpoint than the run's final one "
                        f"({folder.done.name}); re-run salclass evaluate {run_dir} (or salclass study)")
    ev, pred = folder.read_evaluation()
    index = pred["index"].astype(np.int64)
    order = np.argsort(index, kind="stable")
    top5 = pred["top5"]
    first = top5[:, 0] if top5.shape[0] and top5.shape[1] else np.zeros(0)
    correct1, correct5 = pred["correct1"].astype(bool)[order], pred["correct5"].astype(bool)[order]
    rec = RunRecord(seed=seed, dir=run_dir, top1=percent(correct1.mean()) if correct1.size else 0.0,
                    top5=percent(correct5.mean()) if correct5.size else 0.0,
                    index=index[order], label=pred["label"].astype(np.int64)[order],
                    correct1=correct1, correct5=correct5,
                    curve=[(epoch, percent(top1)) for epoch, top1 in folder.val_curve()],
                    class_names=_class_names(ev), predicted_classes=int(np.unique(first).size),
                    seconds=folder.logged_seconds(),
                    schedule={k: v for k, v in folder.read_config().items() if k in SCHEDULE_KEYS})
    if unverified is not None:
        unverified += [p for p in folder.unverified if p not in unverified]
    return rec


def _class_names(ev: dict) -> list[str]:
    per_class = ev.get("per_class") or []
    return [str(c.get("name") or c.get("wnid") or i) for i, c in enumerate(per_class)]


def _stack(recs: list[RunRecord], attr: str) -> np.ndarray:
    return np.stack([getattr(r, attr) for r in recs])


def _class_gains(var: list[RunRecord], base: list[RunRecord], top: int = 3) -> list[dict]:
    labels = base[0].label
    names = base[0].class_names or var[0].class_names
    n_classes = max(int(labels.max()) + 1 if labels.size else 0, len(names))
    rv, total = stats.per_class_counts(labels, _stack(var, "correct1"), n_classes)
    rb, _ = stats.per_class_counts(labels, _stack(base, "correct1"), n_classes)
    rows = []
    for k in range(n_classes):
        if total[k] == 0:
            continue
        gain = 100.0 * (rv[k] - rb[k]) / total[k]
        rows.append({"class": k, "name": names[k] if k < len(names) else str(k), "baseline": int(rb[k]),
                     "variant": int(rv[k]), "total": int(total[k]), "gain": gain})
    rows.sort(key=lambda r: (-r["gain"], r["class"]))
    return rows[:top]


def collect(root: str | Path, cfg: StudyConfig) -> StudyResults:
    study = StudyFolder(root, cfg)
    exps: dict[str, ExperimentResult] = {}
    unverified: list[Path] = []
    for e in cfg.experiments:
        runs, missing = {}, []
        for seed in cfg.seeds:
            rec = load_run(study.run_dir(e, seed), seed, unverified)
            if rec is None:
                missing.append(seed)
            else:
                runs[seed] = rec
        res = ExperimentResult(e.name, runs, missing)
        if runs:
            res.top1 = stats.mean_spread([r.top1 for r in runs.values()])
            res.top5 = stats.mean_spread([r.top5 for r in runs.values()])
        exps[e.name] = res

    pairs = []
    for i, pair in enumerate(cfg.pairs()):
        v, a = pair.variant, pair.against
        ev, ea = cfg.experiment(v), cfg.experiment(a)
        thesis_delta = None
        if ev.thesis.top1 is not None and ea.thesis.top1 is not None:
            thesis_delta = ev.thesis.top1 - ea.thesis.top1
        seeds = [s for s in cfg.seeds if s in exps[v].runs and s in exps[a].runs]
        var = [exps[v].runs[s] for s in seeds]
        base = [exps[a].runs[s] for s in seeds]
        for rv, rb in zip(var, base):
            if not np.array_equal(rv.index, rb.index):
                raise UserError(f"{rv.dir} and {rb.dir} were evaluated on different images; "
                                "re-evaluate both on the study's validation store")
        if not seeds:
            pairs.append(PairResult(v, a, pair.question, pair.claim, [], 0, None, thesis_delta))
            continue
        cmp_ = stats.compare(_stack(var, "correct1"), _stack(base, "correct1"),
                             _stack(var, "correct5"), _stack(base, "correct5"), resamples=cfg.bootstrap, seed=i)
        pairs.append(PairResult(v, a, pair.question, pair.claim, seeds, int(var[0].index.size), cmp_, thesis_delta,
                                _class_gains(var, base)))
    # One family: every comparison the report makes, tested and adjusted together.
    done = [p for p in pairs if p.result is not None]
    tested = moderation.family_test([p.result for p in done], cfg.verdict_test)
    for p, decided in zip(done, stats.decide(tested, cfg.alpha)):
        p.result = decided
    return StudyResults(cfg, study, exps, pairs, unverified, study.unaccounted_runs())
