"""A planted study: a complete study folder of records, written in a second from a
seeded generator with no training, whose truth is known by construction.

Every experiment's runs are per-image outcomes. The baselines are drawn at
accuracies that differ between seeds (so that pairing seed with seed matters);
every other experiment is its parent's runs with a given number of the parent's
mistakes fixed and of its right answers broken in each seed. Fixed and broken
images are disjoint across the seeds of a derivation, unless `same_images` asks
for the same images in every seed (an effect that is the same in every run): the
statistics of a variant against its parent then depend on those counts only,
not on which images the generator happened to draw.

The records are the files `salclass report` reads, in the shapes training and
evaluation write them: `study.yaml`, and per run `config.yaml`, `metrics.jsonl`,
`val_start.json` (fine-tunes), `done.json`, `eval/eval.json` and
`eval/predictions.npz`. tests/study/test_planted_study.py derives what the
report must say from the arrays kept in `Planted`, with its own formulas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salclass.io import atomic_write_json
from salclass.settings import save_settings, settings_from_dict
from salclass.study.config import StudyConfig
from salclass.study.folder import StudyFolder, save_study_config
from salclass.study.plan import train_settings
from salclass.study.steps import train_config
from salclass.run_folder import RunFolder, write_evaluation

SEEDS = (0, 1, 2)
# Enough images that, under the variance floor and at 3 seeds (2 degrees of freedom in the seeds-images test),
# gains of 3 points pass Holm over the study's 16 comparisons and an equivalence within 1 point can be shown.
IMAGES = 4000
CLASSES = 10
EPOCHS = 2
GENERATOR_SEED = 20261201


@dataclass(frozen=True)
class Drawn:
    """A baseline: each seed's run right on this share of the images (chosen at random)."""

    accuracy: tuple[float, float, float]


@dataclass(frozen=True)
class Derived:
    """The parent's runs with `fixed[k]` of its mistakes fixed and `broken[k]` of its
    right answers broken in seed k."""

    parent: str
    fixed: tuple[int, int, int]
    broken: tuple[int, int, int] = (0, 0, 0)
    same_images: bool = False


@dataclass(frozen=True)
class Stuck:
    """Runs that predict class 0 for every image: they have not learned to tell classes apart."""


# name -> (study.yaml entry, how its runs are made). The comment says what the pair of
# each experiment with its baseline is planted to be; the test checks that it is.
PLAN: dict[str, tuple[dict, Drawn | Derived | Stuck]] = {
    "RGB*": ({"model": "RGB", "stage": "baselines", "thesis": {"top1": 36.60, "top5": 60.91}},
             Drawn((0.40, 0.50, 0.60))),
    # a baseline compared with the other (a question below): +4.2 points, per-seed differences not all equal
    "RGB": ({"model": "RGB", "stage": "baselines", "mean_subtract": True, "baseline": "RGB*",
             "thesis": {"top1": 38.00}},
            Derived("RGB*", (182, 170, 160), (2, 0, 2))),
    # a control: 8 more epochs of RGB*, a clear gain
    "RGB*-ft": ({"model": "RGB", "stage": "controls", "init_from": "RGB*", "baseline": "RGB*"},
                Derived("RGB*", (330, 320, 310))),
    # a fine-tune whose start run (RGB*) is 8 points below its declared baseline: per-seed
    # differences all equal, on the same images in every seed (no seed-by-image noise: the
    # training variance is zero, and the moderated test's fit leaves it out)
    "RGBS-ft": ({"model": "RGBS", "stage": "stage1", "init_from": "RGB*", "baseline": "RGB*-ft"},
                Derived("RGB*-ft", (40, 40, 40), same_images=True)),
    # a clear loss against its baseline
    "RGBxS-ft": ({"model": "RGBxS", "stage": "stage1", "init_from": "RGB*", "baseline": "RGB*-ft"},
                 Derived("RGB*-ft", (0, 0, 0), (300, 280, 260))),
    # the thesis: no difference (its numbers are equal); here equivalent within the margin
    "RGBS": ({"model": "RGBS", "stage": "stage2", "mean_subtract": True, "baseline": "RGB",
              "thesis": {"top1": 38.00}},
             Derived("RGB", (8, 4, 4), (4, 4, 8))),
    # the thesis: no difference; here a clear loss
    "RGB_1S2S": ({"model": "RGB_1S2S", "stage": "stage2", "mean_subtract": True, "baseline": "RGB",
                  "thesis": {"top1": 38.00}},
                 Derived("RGB", (0, 0, 0), (250, 240, 230))),
    # the thesis: better (+1.72); here a clear gain
    "FanIn1": ({"model": "FanIn1", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 38.32}},
               Derived("RGB*", (330, 320, 310))),
    # the thesis: better (+0.90); here a clear loss
    "FanIn2": ({"model": "FanIn2", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 37.50}},
               Derived("RGB*", (0, 0, 0), (190, 180, 170))),
    # the thesis: worse (-1.60); here inconclusive (the seeds disagree)
    "FanIn3": ({"model": "FanIn3", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 35.00}},
               Derived("RGB*", (80, 0, 60), (0, 20, 0))),
    # a control, a clear gain
    "FanIn1-const": ({"model": "FanIn1-const", "stage": "controls", "baseline": "RGB*"},
                     Derived("RGB*", (130, 120, 110))),
    # a control: a claim of no difference (a comparison of the same pair, below) that is
    # nearly shown: one of its one-sided tests passes, the other misses
    "FanIn3_noS": ({"model": "FanIn3_noS", "stage": "controls", "baseline": "RGB*"},
                   Derived("RGB*", (4, 4, 16), (4, 0, 4))),
    # a control: per-seed differences all equal, on different images in each seed: the training
    # part is the floor alone and the image part is clipped at zero
    "FanIn2-const": ({"model": "FanIn2-const", "stage": "controls", "baseline": "RGB*"},
                     Derived("RGB*", (20, 20, 20))),
    # no comparison: the report names its runs as untrained
    "RGB-lr0": ({"model": "RGB", "stage": "baselines"}, Stuck()),
    # a new experiment, a clear loss
    "RGB*+AT": ({"model": "RGB", "stage": "future", "baseline": "RGB*", "attention": {"beta": 1.0}},
                Derived("RGB*", (0, 0, 0), (190, 205, 215))),
}

COMPARISONS = [
    {"variant": "FanIn1", "against": "FanIn1-const",
     "question": "Do real maps help FanIn1 more than a constant map?"},
    {"variant": "RGBxS-ft", "against": "RGBS-ft", "claim": "worse"},
    {"variant": "RGB", "against": "RGB*", "question": "Does subtracting the mean matter?"},
    {"variant": "FanIn3", "against": "FanIn3_noS", "question": "Does FanIn3's saliency branch matter?"},
    {"variant": "FanIn3_noS", "against": "RGB*", "question": "Is FanIn3 without its saliency branch RGB* again?",
     "claim": "same"},
]


@dataclass
class Run:
    correct1: np.ndarray  # (images,) bool
    correct5: np.ndarray
    top5: np.ndarray  # (images, 5) predicted classes, best first


@dataclass
class Planted:
    root: Path
    cfg: StudyConfig
    labels: np.ndarray
    runs: dict[str, list[Run]] = field(default_factory=dict)  # experiment -> one per seed, in SEEDS order
    # (experiment, seed) of runs a test has made unfinished since
    missing: set[tuple[str, int]] = field(default_factory=set)

    def seeds(self, name: str) -> list[int]:
        """Positions in SEEDS of the experiment's finished runs."""
        return [k for k, seed in enumerate(SEEDS) if (name, seed) not in self.missing]

    def correct1(self, name: str, seeds: list[int] | None = None) -> np.ndarray:
        return np.stack([self.runs[name][k].correct1 for k in (self.seeds(name) if seeds is None else seeds)])

    def correct5(self, name: str, seeds: list[int] | None = None) -> np.ndarray:
        return np.stack([self.runs[name][k].correct5 for k in (self.seeds(name) if seeds is None else seeds)])


def study_settings(root: Path, verdict_test: str = "moderated") -> dict:
    return {
        "name": "planted",
        "verdict_test": verdict_test,
        # No store is needed: the report's numbers come from the run folders only.
        "data": {"store": str(root / "store")},
        "seeds": list(SEEDS),
        "epochs": EPOCHS, "milestones": [],
        "experiments": [{"name": name, **entry} for name, (entry, _) in PLAN.items()],
        "comparisons": COMPARISONS,
        # One figure keeps the report fast; curves are not what this study checks.
        "figures": [{"name": "fanin", "title": "fan-in", "experiments": ["RGB*", "FanIn1"]}],
        "alpha": 0.05,
        "equivalence_margin": 1.0,
    }


def _outcomes(plan: dict, labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """experiment -> (seeds, images) top-1 correctness."""
    out: dict[str, np.ndarray] = {}
    for name, (_, how) in plan.items():
        if isinstance(how, Stuck):
            runs = np.tile(labels == 0, (len(SEEDS), 1))
        elif isinstance(how, Drawn):
            runs = np.zeros((len(SEEDS), IMAGES), bool)
            for k, acc in enumerate(how.accuracy):
                runs[k, rng.permutation(IMAGES)[: round(acc * IMAGES)]] = True
        else:
            runs = _derive(out[how.parent], how, rng)
        out[name] = runs
    return out


def _derive(parent: np.ndarray, how: Derived, rng: np.random.Generator) -> np.ndarray:
    runs = parent.copy()
    if how.same_images:
        if len(set(how.fixed)) != 1 or len(set(how.broken)) != 1:
            raise ValueError("same_images needs the same counts in every seed")
        wrong = rng.permutation(np.flatnonzero(~parent.any(axis=0)))
        right = rng.permutation(np.flatnonzero(parent.all(axis=0)))
        runs[:, wrong[: how.fixed[0]]] = True
        runs[:, right[: how.broken[0]]] = False
        return runs
    used = np.zeros(IMAGES, bool)
    for k in range(len(SEEDS)):
        for count, now, becomes in ((how.fixed[k], False, True), (how.broken[k], True, False)):
            pool = rng.permutation(np.flatnonzero((parent[k] == now) & ~used))
            if pool.size < count:
                raise ValueError(f"{how.parent}: not enough images to derive from")
            chosen = pool[:count]
            runs[k, chosen] = becomes
            used[chosen] = True
    return runs


def _top5(labels: np.ndarray, correct1: np.ndarray) -> np.ndarray:
    """Predictions with the label first when right; otherwise, for two images in
    three, second (so top-5 differs from top-1)."""
    ranks = (labels[:, None] + np.arange(5)[None, :]) % CLASSES
    second = (labels[:, None] + np.array([1, 0, 2, 3, 4])[None, :]) % CLASSES
    missed = (labels[:, None] + np.arange(1, 6)[None, :]) % CLASSES
    near = (np.arange(labels.size) % 3) != 0
    return np.where(correct1[:, None], ranks, np.where(near[:, None], second, missed))


def _write_run(folder: RunFolder, settings: dict, labels: np.ndarray, run: Run, model: str,
               curve: list[float], start: float | None) -> None:
    folder.eval_dir.mkdir(parents=True, exist_ok=True)
    save_settings(train_config(settings), folder.config)
    if start is not None:
        atomic_write_json(folder.start, {"type": "salclass.start_eval", "version": 1,
                                         "init_from": settings["init_from"],
                                         "val": {"top1": start, "top5": start, "loss": 1.0}})
    for epoch, top1 in enumerate(curve, 1):
        folder.append_metrics({"epoch": epoch, "lr": 0.01, "train": {"top1": top1, "loss": 1.0},
                               "val": {"top1": top1, "top5": top1, "loss": 1.0}})
    top1, top5 = float(run.correct1.mean()), float(run.correct5.mean())
    confusion = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, run.top5[:, 0]), 1)
    per_class = []
    for k in range(CLASSES):
        mine = labels == k
        per_class.append({"index": k, "wnid": f"n{k:08d}", "name": f"class {k}", "count": int(mine.sum()),
                          "top1": float(run.correct1[mine].mean()), "top5": float(run.correct5[mine].mean())})
    # No checkpoint is written: a stand-in for its checksum, the same in done.json and eval.json, as training
    # and evaluation record it for the final checkpoint.
    checkpoint_sha256 = hashlib.sha256(str(folder.path).encode()).hexdigest()
    write_evaluation(folder.eval_dir, {
        "checkpoint": str(folder.checkpoint), "checkpoint_sha256": checkpoint_sha256, "model": model,
        "epoch": len(curve), "precision": "fp32", "store": settings["store"] + "/val", "count": int(labels.size),
        "top1": top1, "top5": top5, "loss": 1.0, "per_class": per_class, "confusion": confusion.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class (class order of per_class)"},
        {"index": np.arange(labels.size, dtype=np.int64), "label": labels, "top5": run.top5,
         "correct1": run.correct1, "correct5": run.correct5})
    folder.write_done({"epochs": len(curve), "model": model, "precision": "fp32",
                       "checkpoint_sha256": checkpoint_sha256, "val": {"top1": top1, "top5": top5, "loss": 1.0},
                       "best_val_top1": max(curve), "seconds_this_session": 1.0})


def plant(root: str | Path, verdict_test: str = "moderated") -> Planted:
    """Write the planted study into `root` (a new folder) and return its truth."""
    root = Path(root)
    root.mkdir(parents=True)
    cfg = settings_from_dict(StudyConfig, study_settings(root, verdict_test))
    layout = StudyFolder(root, cfg)
    save_study_config(cfg, layout.study_yaml)
    rng = np.random.default_rng(GENERATOR_SEED)
    labels = np.arange(IMAGES, dtype=np.int64) % CLASSES
    outcomes = _outcomes(PLAN, labels, rng)
    planted = Planted(root, cfg, labels)
    for e in cfg.experiments:
        planted.runs[e.name] = []
        for k, seed in enumerate(SEEDS):
            c1 = outcomes[e.name][k]
            if isinstance(PLAN[e.name][1], Stuck):
                top5 = np.tile(np.arange(5), (IMAGES, 1))
            else:
                top5 = _top5(labels, c1)
            run = Run(c1, (top5 == labels[:, None]).any(axis=1), top5)
            planted.runs[e.name].append(run)
            final = float(c1.mean())
            start = float(outcomes[e.init_from][k].mean()) if e.init_from else None
            _write_run(layout.run_folder(e, seed), train_settings(cfg, layout, e, seed), labels, run, e.model,
                       [final - 0.05, final], start)
    return planted
