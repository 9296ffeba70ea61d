"""`salclass saliency eval`: every benchmark metric for every model on one split.

Rows of the table: the weight-free models (the centre bias first, then the
bottom-up models), the shipped default network when it is installed, every
model name or checkpoint given, and the inter-observer bound. Each score is
the mean over the split's images of the per-image score (the MIT benchmark's
averaging). Maps are predicted at the stimulus's own resolution (the
predictors return maps at their input's size; anything else is resized).

Fixation metrics (AUC-Judd, shuffled AUC, NSS, information gain) score the
map against every subject's fixations on the image; shuffled AUC takes as
negatives the fixations of all other images of the split (scaled to this
image's size). Distribution metrics (CC, KL, SIM) compare the map with the
ground-truth density (blurred fixations of all subjects). Information gain is
over the centre bias, in bits per fixation, with each map read as a density.

Each row is traced to what made it (`EvalTable.models`, "models" in the JSON,
"weights:" under the table): a weight-free model's name, or the weights file
and the first 16 hex digits of its sha256.

Every other model row is also compared image by image with one row, the
centre bias unless `versus` names another model (`EvalTable.versus`, "versus" in
the JSON, a second table under the first): the mean per-image difference and
its 95% percentile bootstrap interval over the images (2,000 resamples, seeded). The interval covers which images were
drawn, not training noise, and is not adjusted for the many metrics and rows.

A metric that cannot be computed on the data (the fixation metrics on data
with maps only, the bound without subjects) is left out of the means and given
a reason (`EvalTable.reasons`), printed under the table and written into the
JSON in place of its value.

The inter-observer bound: the subjects are split into two halves
(even- and odd-numbered). A map blurred from one half's fixations, with the
ground truth's sigma, is scored against the other half's fixations (fixation
metrics) and the other half's blurred map (distribution metrics), then the
halves swap and the two scores are averaged. Each half has half the data,
so the bound is conservative (a whole group predicts a new observer better than
half a group does). It has no information gain: a blurred handful of fixations
is not a density that is positive wherever someone may look.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salclass.errors import UserError
from salclass.saliency import metrics as M

if TYPE_CHECKING:
    from salclass.saliency.fixations import ReadOptions

METRICS = ("auc_judd", "auc_shuffled", "nss", "cc", "kl", "sim", "ig")
LABELS = {"auc_judd": "AUC-Judd", "auc_shuffled": "sAUC", "nss": "NSS", "cc": "CC", "kl": "KL",
          "sim": "SIM", "ig": "IG"}
CENTRE_BIAS = "centre_bias"
BOOTSTRAP_RESAMPLES = 2000
INTER_OBSERVER = "inter-observer"


@dataclass
class EvalTable:
    """Mean score of every model (row) for every metric; NaN where a metric
    cannot be computed, with the reason in `reasons` (model -> metric -> why)."""

    data: str
    split: str
    images: int
    shape: tuple[int, int] | None
    ground_truth: str
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    # row -> what made it: a weight-free model's name, or the weights file and its sha256 prefix,
    # so a published row can be traced to the exact checkpoint (the default changes between releases).
    models: dict[str, str] = field(default_factory=dict)
    # row -> metric -> (mean difference from the row `against`, CI low, CI high), or a reason instead
    versus: dict[str, dict[str, tuple[float, float, float] | str]] = field(default_factory=dict)
    against: str = CENTRE_BIAS
    notes: list[str] = field(default_factory=list)   # about the data: dropped points, a missing bound

    def to_json(self) -> dict:
        """The table as JSON: each score a number, or the reason it is missing."""
        scores = {}
        for model, row in self.rows.items():
            why = self.reasons.get(model, {})
            scores[model] = {m: (v if math.isfinite(v) else why.get(m, _infinite(v))) for m, v in row.items()}
        versus = {model: {m: v if isinstance(v, str) else {"difference": v[0], "ci95": [v[1], v[2]]}
                          for m, v in row.items()} for model, row in self.versus.items()}
        return {"data": self.data, "split": self.split, "images": self.images, "ground_truth": self.ground_truth,
                "notes": self.notes, "models": self.models, "scores": scores,
                "versus": {"against": self.against, "differences": versus}}

    def format(self) -> str:
        size = f", {self.shape[1]}x{self.shape[0]}" if self.shape else ""
        lines = [f"{Path(self.data).name} {self.split} split: {self.images} images{size}; "
                 f"ground truth: {self.ground_truth}",
                 "higher is better except KL; IG is bits per fixation over the centre bias"]
        width = max(len("model"), *(len(name) for name in self.rows))
        lines.append(f"{'model':<{width}}  " + "  ".join(f"{LABELS[m]:>8}" for m in METRICS))
        for name, row in self.rows.items():
            lines.append(f"{name:<{width}}  " + "  ".join(f"{_cell(row[m]):>8}" for m in METRICS))
        # One line per distinct reason, naming the metrics (and rows, unless all) it explains.
        groups: dict[str, list[tuple[str, str]]] = {}
        for model, why in self.reasons.items():
            for m, text in why.items():
                groups.setdefault(text, []).append((model, m))
        for text, cells in groups.items():
            metrics = sorted({m for _, m in cells}, key=METRICS.index)
            models = sorted({model for model, _ in cells}, key=list(self.rows).index)
            where = "" if len(models) == len(self.rows) else f" of {', '.join(models)}"
            lines.append(f"- {', '.join(LABELS[m] for m in metrics)}{where}: {text}")
        if self.versus:
            lines.append(f"difference from {self.against}, 95% interval over images (KL: lower is better)")
            lines.append(f"{'model':<{width}}  " + "  ".join(f"{LABELS[m]:>15}" for m in METRICS))
            for name, row in self.versus.items():
                cells = ["-" if isinstance(row[m], str) else f"{row[m][1]:+.3f}..{row[m][2]:+.3f}" for m in METRICS]
                lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>15}" for c in cells))
        lines += [f"note: {n}" for n in self.notes]
        weights = [f"{name} = {made}" for name, made in self.models.items() if made != name]
        if weights:
            lines.append("weights: " + "; ".join(weights))
        return "\n".join(lines)


def _infinite(v: float) -> str:
    return "-inf: the map is zero at a fixated pixel" if v < 0 else "inf"


def _cell(v: float) -> str:
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.3f}"


def weight_free_models() -> list[str]:
    """Every registered model that needs no weights, the centre bias first."""
    from salclass.saliency.models import list_models, model_class

    names = [n for n in list_models() if not model_class(n).needs_weights]
    return sorted(names, key=lambda n: (n != CENTRE_BIAS, n))


def _default_installed() -> bool:
    from salclass.saliency.models import DEFAULT_MODEL, shipped_weights

    return shipped_weights(DEFAULT_MODEL).is_file()


def _load_predictors(specs: list[str], batch_size: int, precisions: list[str]) -> tuple[list, dict, dict]:
    """One predictor per spec and precision (weight-free models once, in fp32:
    autocast changes nothing in them), each one's identity by row name, and
    each spec's first row name."""
    from salclass.saliency.models import Predictor, load_model
    from salclass.saliency.predict import model_identity

    predictors, identities, rows, seen = [], {}, {}, set()
    for spec in specs:
        if spec in seen:
            continue
        seen.add(spec)
        model, name = load_model(spec)
        has_weights = any(True for _ in model.parameters())
        for precision in precisions if has_weights else ["fp32"]:
            p = Predictor(model, name, batch_size=batch_size, precision=precision)
            if p.name in {q.name for q in predictors}:
                raise UserError(f"two models would share the row name '{p.name}'")
            predictors.append(p)
            identities[p.name] = model_identity(spec, precision)
            rows.setdefault(spec, p.name)
    return predictors, identities, rows


class _Scorer:
    """Scores of one image for every map, given its fixations and ground truth."""

    def __init__(self, fixations: np.ndarray | None, others: np.ndarray | None, density: np.ndarray,
                 centre: np.ndarray | None):
        self.fix = fixations if fixations is not None and len(fixations) else None
        self.others = others if others is not None and len(others) else None
        self.density = density
        self.centre = centre

    def score(self, smap: np.ndarray) -> dict[str, float]:
        out = dict.fromkeys(METRICS, math.nan)
        if self.fix is not None:
            out["auc_judd"] = M.auc_judd(smap, self.fix)
            out["nss"] = M.nss(smap, self.fix)
            if self.others is not None:
                out["auc_shuffled"] = M.auc_shuffled(smap, self.fix, self.others)
            if self.centre is not None:
                out["ig"] = M.information_gain(smap, self.centre, self.fix)
        if self.density.max() > self.density.min():
            out["cc"] = M.cc(smap, self.density)
            out["kl"] = M.kl_divergence(smap, self.density)
            out["sim"] = M.sim(smap, self.density)
        return out


def _inter_observer(ds, i: int, others: np.ndarray | None) -> dict[str, float]:
    """Half of the subjects predicting the other half, both ways, averaged."""
    n = ds.num_subjects
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    maps = [ds.density(i, subjects=h).astype(np.float64) for h in halves]
    points = [ds.fixation_points(i, subjects=h) for h in halves]
    scores = []
    for a, b in ((0, 1), (1, 0)):
        if not len(points[a]) or not len(points[b]):
            continue
        s = _Scorer(points[b], others, maps[b], None).score(maps[a])
        scores.append(s)
    if not scores:
        return dict.fromkeys(METRICS, math.nan)
    return {m: float(np.mean([s[m] for s in scores])) for m in METRICS}


def _resized(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from salclass.saliency.fixations import resize_map

    return resize_map(m, shape) if m.shape != tuple(shape) else m


def evaluate_models(data_dir: str | Path, split: str = "test", model_specs: list[str] | tuple[str, ...] = (),
                    *, limit: int | None = None, baselines: bool = True, batch_size: int = 8,
                    progress: bool = True, read: ReadOptions | None = None,
                    precisions: list[str] | tuple[str, ...] = ("fp32",), versus: str = CENTRE_BIAS) -> EvalTable:
    """Score the weight-free models (if `baselines`), the shipped default
    network (if installed and `baselines`), every spec in `model_specs`
    (names or checkpoint paths) and the inter-observer bound on `split` of the
    fixation data in `data_dir`, read with `read`. `limit` keeps the first N
    images of the split (by name), for quick checks. Models with weights are
    scored once per entry of `precisions` ("fp32", "bf16"; bf16 rows are named
    "... bf16"). Every other row is compared image by image with the row of
    `versus` (a name or checkpoint; scored too if not among the others)."""
    from salclass.saliency.fixations import ReadOptions, open_fixation_data

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    full = open_fixation_data(data_dir, read or ReadOptions())
    ds = full.split(split)
    if limit is not None:
        ds = ds.subset(ds.names[:limit])
    if len(ds) == 0:
        raise UserError(f"{data_dir}: the {split} split has no images")

    specs = _row_specs(model_specs, baselines, str(versus))
    predictors, identities, spec_rows = _load_predictors(specs, batch_size, list(dict.fromkeys(precisions)))
    natives = [ds.image_size(i) for i in range(len(ds))]
    per_image, bound = _score_split(ds, natives, predictors, batch_size, progress, split)
    table = EvalTable(data=str(data_dir), split=split, images=len(ds),
                      shape=natives[0] if len(set(natives)) == 1 else None, ground_truth=ds.ground_truth,
                      notes=list(full.notes), models=identities, against=spec_rows[str(versus)])
    _fill(table, ds, per_image, bound)
    return table


def _row_specs(model_specs: list[str] | tuple[str, ...], baselines: bool, versus: str) -> list[str]:
    """The models to score, in row order; the centre bias always (information gain is over it)."""
    specs = list(weight_free_models()) if baselines else []
    if baselines and _default_installed():
        specs.append("default")
    specs += [str(s) for s in model_specs]
    if CENTRE_BIAS not in specs:
        specs.insert(0, CENTRE_BIAS)   # the information-gain baseline is always needed
    if versus not in specs:
        specs.append(versus)
    return specs


class _Negatives:
    """Every image's fixation points, and the shuffled-AUC negatives of each:
    the fixations of all other images of the split, at this image's size."""

    def __init__(self, ds, natives: list[tuple[int, int]]):
        self.ds = ds
        self.points = [ds.fixation_points(i) for i in range(len(ds))]
        self.owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(self.points)])
        self.all_points = np.concatenate(self.points)
        self.same_size = len(set(natives)) == 1

    def others(self, k: int, shape: tuple[int, int]) -> np.ndarray:
        if self.same_size:
            return self.all_points[self.owner != k]
        return np.concatenate([self.ds.fixation_points(o, shape) for o in range(len(self.ds)) if o != k])


def _batches(natives: list[tuple[int, int]], batch_size: int):
    """(first, end) of each batch: consecutive images of one size, so they stack."""
    i = 0
    while i < len(natives):
        j = i + 1
        while j < len(natives) and j - i < batch_size and natives[j] == natives[i]:
            j += 1
        yield i, j
        i = j


def _score_split(ds, natives: list[tuple[int, int]], predictors: list, batch_size: int, progress: bool,
                 split: str) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, float]]]:
    """Every predictor's scores on every image (row name -> one dict per image), and the bound's."""
    from tqdm import tqdm

    fixations = _Negatives(ds, natives) if ds.has_fixations else None
    with_bound = fixations is not None and ds.num_subjects >= 2
    centre_index = [p.name for p in predictors].index(CENTRE_BIAS)
    per_image: dict[str, list[dict[str, float]]] = {p.name: [] for p in predictors}
    bound: list[dict[str, float]] = []
    bar = tqdm(total=len(ds), desc=f"saliency eval ({split})", unit="img", file=sys.stderr, disable=not progress)
    for i, j in _batches(natives, batch_size):
        images = np.stack([ds.image(k) for k in range(i, j)])
        shape = natives[i]
        predicted = [p.predict(images) for p in predictors]
        for b, k in enumerate(range(i, j)):
            fix = others = None
            if fixations is not None:
                fix, others = fixations.points[k], fixations.others(k, shape)
            density = ds.density(k, shape).astype(np.float64)
            maps = [_resized(pred[b], shape).astype(np.float64) for pred in predicted]
            scorer = _Scorer(fix, others, density, maps[centre_index])
            for p, m in zip(predictors, maps):
                try:
                    per_image[p.name].append(scorer.score(m))
                except ValueError as e:   # e.g. NaN maps from a diverged checkpoint
                    raise UserError(f"model {p.name}, image {ds.names[k]}: {e}") from None
            if with_bound:
                bound.append(_inter_observer(ds, k, others))
        bar.update(j - i)
    bar.close()
    return per_image, bound


def _fill(table: EvalTable, ds, per_image: dict[str, list[dict[str, float]]], bound: list[dict[str, float]]) -> None:
    """The table's rows, differences from `table.against` and reasons, from the per-image scores;
    `bound` is empty when the data cannot give the inter-observer row."""
    missing = _missing(ds)
    for name, scores in per_image.items():
        table.rows[name] = _mean(scores)
        if name != table.against:
            table.versus[name] = _versus(scores, per_image[table.against])
        table.reasons[name] = {m: missing.get(m, "no image of the split could be scored")
                               for m, v in table.rows[name].items() if math.isnan(v)}
    if bound:
        row = _mean(bound)
        row["ig"] = math.nan
        name = f"{INTER_OBSERVER} (half vs half)"
        table.rows[name] = row
        table.reasons[name] = {"ig": "not defined for the bound: a blurred handful of fixations is not a density"}
    elif ds.has_fixations:
        table.notes.append("no inter-observer row: it needs each fixation's observer, and at least two observers")
    else:
        table.notes.append("no inter-observer row: it needs fixation points with their observers")


def _missing(ds) -> dict[str, str]:
    """metric -> why it cannot be computed on `ds` (empty when every metric can)."""
    if not ds.has_fixations:
        why = f"needs fixation points, and this data has maps only ({ds.points_hint})"
        return {m: why for m in ("auc_judd", "auc_shuffled", "nss", "ig")}
    if len(ds) < 2:
        return {"auc_shuffled": "needs the fixations of other images as negatives, and the split has one image"}
    return {}


def _versus(scores: list[dict[str, float]], base: list[dict[str, float]]) -> dict:
    """metric -> (mean, low, high) of the per-image difference from `base`, or why not."""
    from scipy.stats import bootstrap

    out: dict = {}
    for m in METRICS:
        d = np.asarray([s[m] - b[m] for s, b in zip(scores, base)], dtype=np.float64)
        if np.isinf(d).any():
            out[m] = "an infinite score on some image"
            continue
        d = d[~np.isnan(d)]
        if d.size < 2:
            out[m] = "needs at least two images scored by both"
        elif np.ptp(d) == 0:   # every image differs by the same amount: no spread to resample
            out[m] = (float(d[0]), float(d[0]), float(d[0]))
        else:
            ci = bootstrap((d,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                           rng=np.random.default_rng(0)).confidence_interval
            out[m] = (float(d.mean()), float(ci.low), float(ci.high))
    return out


def _mean(scores: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for m in METRICS:
        v = np.asarray([s[m] for s in scores], dtype=np.float64)
        v = v[~np.isnan(v)]
        out[m] = float(v.mean()) if v.size else math.nan
    return out


def eval_cli(data: str, split: str = "test", models: list[str] | None = None, as_json: bool = False,
             limit: int | None = None, read: dict | None = None, precisions: list[str] | None = None,
             versus: str = CENTRE_BIAS) -> int:
    from salclass.saliency.fixations import read_options
    from salclass.saliency.predict import cpu_precision

    used = [cpu_precision(p, quiet=True) for p in precisions or ["auto"]]  # bf16 rows are named so
    table = evaluate_models(data, split, list(models or []), limit=limit, read=read_options(read), precisions=used,
                            versus=versus)
    if as_json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(table.format())
    return 0
