"""Does the network's map gain from being mixed with the centre bias, blurred or flattened?

    .venv/bin/python benchmarks/saliency_calibration.py [--model default] [--split val]

On OSIE's validation images (never the held-out scenes: anything chosen here
would be chosen on them otherwise), each map is read as a density p over pixels
and turned into

    (1 - w) * blur_s(p ** (1 / T)) + w * centre_bias      (each term summing to 1)

for a grid of mixture weights w, blur widths s (a fraction of the image width)
and temperatures T. It prints the mean information gain over the centre bias
(bits per fixation: the log-likelihood, which a calibrated density maximises),
NSS, CC and AUC-Judd of every combination, and the combination of highest
information gain. (0, 0, 1) there means the network is already calibrated on
this data.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy.ndimage import gaussian_filter

from salclass.saliency import metrics as M
from salclass.saliency.fixations import ReadOptions, open_fixation_data
from salclass.saliency.models import load_predictor

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
BLURS = (0.0, 0.02, 0.04)
TEMPERATURES = (1.0, 1.5)


def _density(m: np.ndarray) -> np.ndarray:
    return m / m.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/osie")
    ap.add_argument("--model", default="default")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    a = ap.parse_args()
    ds = open_fixation_data(a.data, ReadOptions()).split(a.split)
    net, centre = load_predictor(a.model), load_predictor("centre_bias")
    images = []
    for i in range(len(ds)):
        img = ds.image(i)[None]
        images.append((net.predict(img)[0].astype(np.float64), _density(centre.predict(img)[0].astype(np.float64)),
                       ds.fixation_points(i), ds.density(i).astype(np.float64)))
    print(f"{a.data} {a.split}: {len(ds)} images, model {net.name}")
    print(f"{'w':>5} {'blur':>5} {'T':>4} {'IG':>7} {'NSS':>6} {'CC':>6} {'AUC-Judd':>8}")
    rows = []
    for w, s, t in itertools.product(WEIGHTS, BLURS, TEMPERATURES):
        scores = []
        for smap, cb, fix, truth in images:
            p = _density(smap ** (1.0 / t))
            if s > 0:
                p = _density(gaussian_filter(p, s * p.shape[1], mode="nearest"))
            m = (1 - w) * p + w * cb
            scores.append((M.information_gain(m, cb, fix), M.nss(m, fix), M.cc(m, truth), M.auc_judd(m, fix)))
        ig, nss, cc, auc = np.mean(scores, axis=0)
        rows.append((ig, w, s, t))
        print(f"{w:5.2f} {s:5.2f} {t:4.1f} {ig:7.3f} {nss:6.3f} {cc:6.3f} {auc:8.3f}", flush=True)
    ig, w, s, t = max(rows)
    print(f"highest information gain: w {w}, blur {s}, T {t} ({ig:.3f} bits per fixation)")


if __name__ == "__main__":
    main()
