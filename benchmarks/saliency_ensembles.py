"""Which saliency models to put in an ensemble? Scores of subsets on OSIE's validation images.

    .venv/bin/python benchmarks/saliency_ensembles.py --model A.pt,B.pt,C.pt,D.pt [--subsets 0,1,01,0123] [--split val]

Models are numbered 0-9, then a-z (the eleventh is "a"), one character each in --subsets.

Each model predicts every image once; a subset's map is the mean of its members'
maps, each scaled to sum 1 (what `salclass saliency ensemble` makes of them, up
to where the resizing happens). Prints the information gain over the centre
bias (bits per fixation), NSS, CC and AUC-Judd of each subset. Run it on OSIE's
validation split, never on the held-out scenes: what is chosen here would be
chosen on them otherwise.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from salclass.saliency import metrics as M
from salclass.saliency.fixations import ReadOptions, open_fixation_data
from salclass.saliency.models import load_predictor


_NUMBERS = "0123456789abcdefghijklmnopqrstuvwxyz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/osie")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--model", required=True, help="models separated by commas, numbered 0-9 then a-z in --subsets")
    ap.add_argument("--subsets", default=None, help="subsets of model numbers, e.g. 0,1,01,0123 (default: each, all)")
    a = ap.parse_args()
    specs = a.model.split(",")
    if len(specs) > len(_NUMBERS):
        ap.error(f"at most {len(_NUMBERS)} models")
    names = _NUMBERS[:len(specs)]
    subsets = a.subsets.split(",") if a.subsets else list(names) + [names]
    for sub in subsets:
        if not sub or any(c not in names for c in sub):
            ap.error(f"subset {sub!r}: one of {names} per model")
    ds = open_fixation_data(a.data, ReadOptions()).split(a.split)
    nets, centre = [load_predictor(s) for s in specs], load_predictor("centre_bias")
    scores = {sub: [] for sub in subsets}
    for i in tqdm(range(len(ds)), desc=a.split, unit="img"):
        img, fix, truth = ds.image(i)[None], ds.fixation_points(i), ds.density(i).astype(np.float64)
        cb = centre.predict(img)[0].astype(np.float64)
        cb /= cb.sum()
        maps = [n.predict(img)[0].astype(np.float64) for n in nets]
        maps = [m / m.sum() for m in maps]
        for sub in subsets:
            m = np.mean([maps[names.index(c)] for c in sub], axis=0)
            scores[sub].append((M.information_gain(m, cb, fix), M.nss(m, fix), M.cc(m, truth), M.auc_judd(m, fix)))
    print(f"{a.data} {a.split}: {len(ds)} images; models: " + ", ".join(f"{n} {s}" for n, s in zip(names, specs)))
    print("| subset | IG | NSS | CC | AUC-Judd |")
    print("| --- | --- | --- | --- | --- |")
    for sub, rows in scores.items():
        ig, nss, cc, auc = np.mean(rows, axis=0)
        print(f"| {sub} | {ig:.3f} | {nss:.3f} | {cc:.3f} | {auc:.3f} |")


if __name__ == "__main__":
    main()
