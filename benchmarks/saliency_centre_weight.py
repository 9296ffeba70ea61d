"""How much of the centre bias to mix into an ensemble? CC on OSIE's validation images, by weight.

    .venv/bin/python benchmarks/saliency_centre_weight.py [--model default] [--weights 0,0.05,...,0.5]

The ensemble's own mixture (`Ensemble.centre_weight`, what `salclass saliency
ensemble --centre-weight W` saves) is set to each weight in turn and the maps
are scored as `salclass saliency eval` scores them: mean CC, information gain
over the centre bias (bits per fixation), NSS and AUC-Judd. The weight of
highest CC is printed last (ties go to the smaller weight). This is how the
shipped default's 0.15 was chosen (round four, docs/results.md). Run it
on OSIE's validation split, never on the held-out scenes: what is chosen here
would be chosen on them otherwise.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from salclass.saliency import metrics as M
from salclass.saliency.fixations import ReadOptions, open_fixation_data
from salclass.saliency.models import load_predictor

_GRID = ",".join(f"{0.05 * k:.2f}" for k in range(11))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/osie")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--model", default="default", help="an ensemble: name or checkpoint (default: the shipped one)")
    ap.add_argument("--weights", default=_GRID, help=f"weights separated by commas (default {_GRID})")
    a = ap.parse_args()
    try:
        weights = sorted(float(w) for w in a.weights.split(","))
    except ValueError:
        ap.error(f"--weights: numbers separated by commas, got {a.weights!r}")
    if not all(0.0 <= w < 1.0 for w in weights):
        ap.error("--weights: each weight must be at least 0 and below 1")
    net, centre = load_predictor(a.model), load_predictor("centre_bias")
    if net.model.name != "ensemble":
        ap.error(f"{a.model} is a '{net.model.name}' model, not an ensemble")
    ds = open_fixation_data(a.data, ReadOptions()).split(a.split)
    images = [(ds.image(i)[None], ds.fixation_points(i), ds.density(i).astype(np.float64)) for i in range(len(ds))]
    baseline = [centre.predict(img)[0].astype(np.float64) for img, _, _ in images]
    print(f"{a.data} {a.split}: {len(ds)} images, model {net.name} (saved weight {net.model.centre_weight:g})")
    print(f"{'w':>5} {'CC':>7} {'IG':>7} {'NSS':>7} {'AUC-Judd':>8}")
    best = None
    for w in weights:
        net.model.centre_weight = w
        scores = []
        for (img, fix, truth), cb in zip(tqdm(images, desc=f"w {w:g}", leave=False), baseline):
            m = net.predict(img)[0].astype(np.float64)
            scores.append((M.cc(m, truth), M.information_gain(m, cb, fix), M.nss(m, fix), M.auc_judd(m, fix)))
        cc, ig, nss, auc = np.mean(scores, axis=0)
        print(f"{w:5.2f} {cc:7.4f} {ig:7.3f} {nss:7.3f} {auc:8.3f}", flush=True)
        if best is None or cc > best[0]:
            best = (cc, w)
    print(f"highest CC: weight {best[1]:g} ({best[0]:.4f})")


if __name__ == "__main__":
    main()
