"""The saliency model's benchmark metrics for the report, from the saliency stage's evaluator."""

from __future__ import annotations

import math

from salclass.study.config import SaliencySettings
from salclass.study.folder import SALIENCY_TYPE


def score(sal: SaliencySettings) -> dict:
    """Score the weight-free baselines, the shipped network and the study's model on fixation data."""
    from salclass.saliency.evaluate import LABELS, METRICS, evaluate_models

    extra = [] if sal.model == "default" else [sal.model]
    table = evaluate_models(sal.eval_data, sal.eval_split, extra, limit=sal.eval_images)
    rows = []
    for name, row in table.rows.items():
        out = {"model": name}
        for m in METRICS:
            v = row.get(m)
            out[LABELS[m]] = v if v is not None and math.isfinite(v) else None
        rows.append(out)
    versus = []
    for name, row in table.versus.items():
        out = {"model": name}
        for m in METRICS:
            v = row[m]
            out[LABELS[m]] = None if isinstance(v, str) else {"difference": v[0], "low": v[1], "high": v[2]}
        versus.append(out)
    subset = (f"the first {table.images} images (by name) of" if sal.eval_images is not None else "all "
              f"{table.images} images of")
    note = (f"Scored on {subset} the {sal.eval_split} split of {sal.eval_data.name} (eye fixations), "
            "averaged per image. Higher is better except KL; IG is in bits per fixation over the centre "
            "bias. The inter-observer row is how well half of the observers predict the other half. "
            f"The classifiers of this study were given the maps of `{sal.model}`.")
    return {"type": SALIENCY_TYPE, "version": 1, "model": sal.model, "data": str(sal.eval_data),
            "split": sal.eval_split, "images": table.images, "rows": rows, "note": note,
            "versus_centre_bias": versus, "weights": table.models}
