"""The study's typed settings: what data, which saliency model, which experiments.

A study is a list of experiments; each is one model variant trained once per seed
and compared, image by image, with the experiment named as its baseline. Epoch
counts and learning-rate milestones are written at the thesis's scale and
multiplied by one `epoch_scale`, so the same study runs long on a GPU and short
on a CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from salclass.precision import PrecisionSetting
from salclass.settings import SettingsError, read_yaml, settings_from_dict

Group = Literal["baselines", "stage1", "stage2", "stage3", "controls", "future"]

GROUP_TITLES: dict[str, str] = {
    "baselines": "Baselines without saliency (section 4.1)",
    "stage1": "Stage 1: saliency added to the trained baseline, fine-tuned (sections 3.4, 4.2)",
    "stage2": "Stage 2: saliency concatenated, trained from scratch (sections 3.5, 4.3)",
    "stage3": "Stage 3: fan-in networks, trained from scratch (sections 3.6, 4.4)",
    "controls": "Controls the thesis did not run",
    "future": "Chapter 6: future work",
}

_NAME = re.compile(r"^[A-Za-z0-9_.*+-]+$")


@dataclass
class DataSettings:
    """Where the images come from. Give `source` (an ImageNet-layout folder the
    study packs itself) or `store` (a store root with train/ and val/ prepared
    beforehand, e.g. full ImageNet)."""

    source: Path | None = None
    store: Path | None = None
    size: int = 144
    classes: list[str] | None = None  # class folder names (wnids) to keep
    num_classes: int | None = None  # or: the first N class folders in sorted order
    train_per_class: int | None = None
    val_per_class: int | None = None
    seed: int = 0  # which images a subset keeps, and the store's shuffle
    workers: int | None = None

    def __post_init__(self):
        if (self.source is None) == (self.store is None):
            raise ValueError("data: give exactly one of 'source' (an image folder) or 'store' (a prepared store)")
        if self.size not in (144, 256):
            raise ValueError(f"data.size must be 144 or 256, got {self.size}")
        if self.classes is not None and self.num_classes is not None:
            raise ValueError("data: give 'classes' or 'num_classes', not both")
        for key in ("num_classes", "train_per_class", "val_per_class"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ValueError(f"data.{key} must be >= 1, got {v}")
        if self.store is not None and self.is_subset:
            raise ValueError("data: a subset (classes, num_classes, *_per_class) needs 'source', not 'store'")

    @property
    def is_subset(self) -> bool:
        return any(v is not None for v in (self.classes, self.num_classes, self.train_per_class,
                                           self.val_per_class))


@dataclass
class SaliencySettings:
    model: str = "default"  # a saliency model name or checkpoint; "default" is the shipped network
    batch_size: int = 64
    precision: PrecisionSetting = "auto"  # of the maps predicted into the store (salclass.precision)
    # Fixation data to score the saliency model on for the report (None: no metrics table).
    eval_data: Path | None = None
    eval_split: str = "test"
    eval_images: int | None = None  # score only the first N images of the split, for speed


@dataclass
class AttentionSettings:
    """Attention transfer (Zagoruyko and Komodakis, 2017) with the saliency map as
    the teacher's attention: beta * || Q_s/||Q_s|| - Q_t/||Q_t|| || at `layer`."""

    beta: float = 1000.0
    layer: str = "relu2"


@dataclass
class ThesisNumbers:
    """The thesis's own result for this experiment (percent), shown for reference."""

    top1: float | None = None
    top5: float | None = None


@dataclass
class Experiment:
    name: str
    model: str  # a name from salclass.models (e.g. "RGBS", "FanIn3-const")
    stage: Group  # the experiment group (the config key is `stage`): a report section and figure
    baseline: str | None = None  # the experiment it is compared to
    init_from: str | None = None  # start from this experiment's trained weights (same seed)
    init: Literal["uniform", "zeros", "default"] = "uniform"  # new weights after surgery; thesis: uniform
    mean_subtract: bool = False
    epochs: int | None = None  # at the thesis's scale; None: the study's default
    milestones: list[int] | None = None
    attention: AttentionSettings | None = None
    thesis: ThesisNumbers = field(default_factory=ThesisNumbers)
    description: str = ""
    train: dict = field(default_factory=dict)  # extra training settings for this experiment only

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"experiment name {self.name!r}: use letters, digits and _ . * + - only")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"experiment {self.name}: epochs must be >= 1, got {self.epochs}")

    @property
    def slug(self) -> str:
        """Folder name: '*' (the thesis's mark for "no mean subtraction") is spelled out."""
        return self.name.replace("*", "star")


@dataclass
class ComparisonSettings:
    """An extra paired comparison beyond each experiment vs its baseline, e.g. a control."""

    variant: str
    against: str
    question: str = ""
    # The direction the thesis reported for this pair, when it reported one without numbers.
    claim: Literal["better", "worse", "same"] | None = None


# Stems of the figures every report draws itself; a configured figure may not take them.
REPORT_FIGURES = ("examples", "comparisons")


@dataclass
class FigureSettings:
    name: str  # file name stem of the PNG
    title: str
    experiments: list[str] = field(default_factory=list)


@dataclass
class StudyConfig:
    name: str = "study"
    data: DataSettings = field(default_factory=lambda: DataSettings(source=Path("../shared/data/imagenette")))
    saliency: SaliencySettings = field(default_factory=SaliencySettings)
    seeds: list[int] = field(default_factory=lambda: [0])
    epoch_scale: float = 1.0
    epochs: int = 90  # default length of a run, thesis scale
    milestones: list[int] = field(default_factory=lambda: [24, 45, 62])
    # conv -> ReLU -> BN (the thesis's) or conv -> BN -> ReLU, for every network of the study.
    block_order: Literal["relu-bn", "bn-relu"] = "relu-bn"
    train: dict = field(default_factory=dict)  # training settings applied to every run (batch_size, device...)
    experiments: list[Experiment] = field(default_factory=list)
    comparisons: list[ComparisonSettings] = field(default_factory=list)
    figures: list[FigureSettings] = field(default_factory=list)
    bootstrap: int = 2000  # bootstrap resamples per comparison (the image-only interval of one seed)
    alpha: float = 0.05  # for the whole family of comparisons (Holm)
    # How a comparison's training noise is estimated (docs/study.md, "How verdicts are made"): "moderated" borrows
    # strength from the family's other comparisons, "seeds-images" uses the comparison's own seeds alone.
    verdict_test: Literal["moderated", "seeds-images"] = "moderated"
    # A thesis claim of "no difference" holds only if ours is shown to lie within +-this many top-1 points.
    equivalence_margin: float = 1.0
    examples: int = 8  # images in the report's grid of maps

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated seed in {self.seeds}")
        if not self.epoch_scale > 0:
            raise ValueError(f"epoch_scale must be > 0, got {self.epoch_scale}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.equivalence_margin < 100:
            raise ValueError(f"equivalence_margin must be in (0, 100) points, got {self.equivalence_margin}")
        if self.bootstrap < 100:
            raise ValueError(f"bootstrap must be >= 100 resamples, got {self.bootstrap}")
        if not self.experiments:
            raise ValueError("experiments: the study lists no experiments")
        if "block_order" in self.train or any("block_order" in e.train for e in self.experiments):
            raise ValueError("block_order: set it once at the top level of the study (every network shares it)")
        names = [e.name for e in self.experiments]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"experiments: name {sorted(dup)[0]!r} is used twice")
        slugs = [e.slug for e in self.experiments]
        if len(set(slugs)) != len(slugs):
            raise ValueError("experiments: two names map to the same folder ('*' is spelled 'star')")
        known = set(names)
        for e in self.experiments:
            for key in ("baseline", "init_from"):
                ref = getattr(e, key)
                if ref is not None and ref not in known:
                    raise ValueError(f"experiment {e.name}: {key} {ref!r} is not an experiment of this study")
            if e.baseline == e.name or e.init_from == e.name:
                raise ValueError(f"experiment {e.name}: cannot refer to itself")
        for c in self.comparisons:
            for ref in (c.variant, c.against):
                if ref not in known:
                    raise ValueError(f"comparisons: {ref!r} is not an experiment of this study")
        for f in self.figures:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", f.name) or f.name in REPORT_FIGURES:
                raise ValueError(f"figure {f.name!r}: the name must be a plain file stem (letters, digits, '_', "
                                 f"'.', '-') other than {', '.join(REPORT_FIGURES)} (the report's own figures)")
            for ref in f.experiments:
                if ref not in known:
                    raise ValueError(f"figure {f.name}: {ref!r} is not an experiment of this study")
        self.order()  # rejects init_from cycles

    def experiment(self, name: str) -> Experiment:
        for e in self.experiments:
            if e.name == name:
                return e
        raise KeyError(name)

    def order(self) -> list[Experiment]:
        """Experiments in the listed order, except that each comes after the one it starts from."""
        done: list[Experiment] = []
        placed: set[str] = set()

        def visit(e: Experiment, path: tuple[str, ...]) -> None:
            if e.name in placed:
                return
            if e.name in path:
                raise ValueError(f"experiments: init_from cycle {' -> '.join(path + (e.name,))}")
            if e.init_from is not None:
                visit(self.experiment(e.init_from), path + (e.name,))
            placed.add(e.name)
            done.append(e)

        for e in self.experiments:
            visit(e, ())
        return done

    def schedule(self, e: Experiment) -> tuple[int, list[int]]:
        """Epochs and learning-rate milestones of `e` after `epoch_scale`."""
        epochs = e.epochs if e.epochs is not None else self.epochs
        milestones = e.milestones if e.milestones is not None else (
            self.milestones if e.epochs is None else _proportional(self.milestones, self.epochs, epochs))
        return scale_schedule(epochs, milestones, self.epoch_scale)

    def pairs(self) -> list[ComparisonSettings]:
        """Every comparison the report makes: each experiment vs its baseline, then the extra ones."""
        out: dict[tuple[str, str], ComparisonSettings] = {
            (e.name, e.baseline): ComparisonSettings(e.name, e.baseline)
            for e in self.experiments if e.baseline is not None}
        for c in self.comparisons:
            out[(c.variant, c.against)] = c
        return list(out.values())


def _proportional(milestones: list[int], base_epochs: int, epochs: int) -> list[int]:
    """The default milestones, moved to the same fractions of a run of a different length."""
    return [max(1, round(m * epochs / base_epochs)) for m in milestones]


def scale_schedule(epochs: int, milestones: list[int], scale: float) -> tuple[int, list[int]]:
    n = max(1, round(epochs * scale))
    ms = sorted({round(m * scale) for m in milestones})
    return n, [m for m in ms if 0 < m < n]


def _absolute(p: Path | None) -> Path | None:
    return None if p is None else p.expanduser().resolve()


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A study YAML, on top of the one its `base:` key names (relative to its own folder)."""
    path = path.resolve()
    if path in seen:
        raise SettingsError(f"{path}: 'base' refers back to itself")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise SettingsError(f"{path}: base: expected a file name, got {base!r}")
    return merge(_read_with_base(path.parent / base, seen + (path,)), data)


def load_study(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Load a study config; data and fixation paths are made absolute (relative to the current folder).

    A config may start from another with `base: other.yaml`: its mappings are merged
    key by key over the base's, anything else (lists included) replaces the base's value."""
    data = _read_with_base(Path(path)) if path is not None else {}
    cfg = settings_from_dict(StudyConfig, data, overrides)
    cfg.data.source = _absolute(cfg.data.source)
    cfg.data.store = _absolute(cfg.data.store)
    cfg.saliency.eval_data = _absolute(cfg.saliency.eval_data)
    if Path(cfg.saliency.model).suffix in (".pt", ".pth"):
        cfg.saliency.model = str(_absolute(Path(cfg.saliency.model)))
    return cfg


def merge(base: dict, over: dict) -> dict[str, Any]:
    """Nested dict merge: values of `over` win, mappings merge key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
