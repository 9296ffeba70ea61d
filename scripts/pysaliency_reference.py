"""Compute pysaliency's metric values on real OSIE maps, as the independent
reference for tests/saliency/test_metrics.py.

pysaliency (the MIT/Tuebingen benchmark's implementation) is not a dependency
of salclass: it builds from source with Cython and imports torch. Run this
script in a separate, throwaway environment:

    python3.11 -m venv /tmp/pysal-venv
    /tmp/pysal-venv/bin/pip install "setuptools<81" "numpy<2.4" Cython wheel torch==2.13.0
    /tmp/pysal-venv/bin/pip install --no-build-isolation pysaliency==0.2.22
    /tmp/pysal-venv/bin/python scripts/pysaliency_reference.py

It writes tests/saliency/reference/pysaliency_values.json: the fixation points
used (0-based integer pixels, with subject), the recipe of every map (rebuilt
by `build_maps` below, which the test imports, so the maps need not be stored),
and pysaliency's value of every metric for every image and map.

The setting is the inter-observer one: maps are made from one half of the
subjects (even-numbered) and scored against the other half's (odd-numbered)
fixations and blurred map. The script reads OSIE by itself with scipy, not
through salclass, so that the reference depends on nothing it checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "osie"
DEFAULT_OUT = REPO / "tests" / "saliency" / "reference" / "pysaliency_values.json"

# Five images of the recorded OSIE test split (the first five by name).
IMAGES = 5
RECIPE = {
    "blur_sigma": 24.0,        # pixels: one degree of visual angle in OSIE, as the ground truth
    "blur_truncate": 3.5,
    "centre_sigma_xy": [200.0, 150.0],   # an anisotropic Gaussian at the image centre, quarter of each side
    "mixture_uniform": 0.2,    # weight of the uniform part of the probabilistic map
}
MAPS = ("centre", "half", "half_u8", "half_mix")


def fixation_pixels(x_matlab: np.ndarray, y_matlab: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB 1-based continuous coordinates -> 0-based integer pixel (x, y)."""
    h, w = shape
    x = np.clip(np.floor(np.asarray(x_matlab, dtype=np.float64) - 0.5), 0, w - 1).astype(np.int64)
    y = np.clip(np.floor(np.asarray(y_matlab, dtype=np.float64) - 0.5), 0, h - 1).astype(np.int64)
    return x, y


def blurred(points: np.ndarray, shape: tuple[int, int], recipe: dict) -> np.ndarray:
    """Fixation counts blurred with a Gaussian, maximum 1."""
    counts = np.zeros(shape, dtype=np.float64)
    np.add.at(counts, (points[:, 1], points[:, 0]), 1.0)
    m = ndimage.gaussian_filter(counts, recipe["blur_sigma"], mode="constant", truncate=recipe["blur_truncate"])
    return m / m.max()


def build_maps(points: np.ndarray, shape: tuple[int, int], recipe: dict) -> dict[str, np.ndarray]:
    """Every map of one image from its points (rows of x, y, subject).

    centre: a Gaussian at the centre (many tied values by symmetry);
    half: blurred fixations of the even-numbered subjects;
    half_u8: `half` quantised to 256 levels, as maps are stored (heavy ties);
    half_mix: `half` as a density mixed with the uniform one (strictly positive,
        a probabilistic model for information gain);
    other: blurred fixations of the odd-numbered subjects (the ground truth).
    """
    h, w = shape
    even = points[points[:, 2] % 2 == 0]
    odd = points[points[:, 2] % 2 == 1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = recipe["centre_sigma_xy"]
    centre = np.exp(-0.5 * (((xx - (w - 1) / 2) / sx) ** 2 + ((yy - (h - 1) / 2) / sy) ** 2))
    half = blurred(even, shape, recipe)
    a = recipe["mixture_uniform"]
    return {
        "centre": centre,
        "half": half,
        "half_u8": np.round(half * 255.0) / 255.0,
        "half_mix": (1 - a) * half / half.sum() + a / (h * w),
        "other": blurred(odd, shape, recipe),
    }


def load_points(data: Path, names: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(data / "fixations.mat", squeeze_me=True, struct_as_record=False)
    records = {str(r.img): r for r in np.atleast_1d(mat["fixations"])}
    out = {}
    for name in names:
        rows = []
        for s, subj in enumerate(np.atleast_1d(records[name].subjects)):
            x, y = fixation_pixels(np.atleast_1d(subj.fix_x), np.atleast_1d(subj.fix_y), shape)
            rows.append(np.stack([x, y, np.full(x.shape, s)], axis=1))
        out[name] = np.concatenate(rows)
    return out


def compute(data: Path) -> dict:
    import pysaliency
    from PIL import Image
    from pysaliency.metrics import CC, SIM, MIT_KLDiv
    from pysaliency.models import Model
    from pysaliency.saliency_map_models import RandomNoiseSaliencyMapModel, SaliencyMapModel

    split = json.loads((REPO / "src" / "salclass" / "resources" / "osie_split.json").read_text())
    names = sorted(split["test"])[:IMAGES]
    images = [np.asarray(Image.open(data / "stimuli" / n).convert("RGB")) for n in names]
    shape = images[0].shape[:2]
    assert all(im.shape[:2] == shape for im in images)
    points = load_points(data, names, shape)
    maps = [build_maps(points[n], shape, RECIPE) for n in names]

    stimuli = pysaliency.Stimuli(images)
    index_of = {stimuli.stimulus_ids[i]: i for i in range(len(names))}

    class Fixed(SaliencyMapModel):
        def __init__(self, key):
            super().__init__(caching=False)
            self.key = key

        def _saliency_map(self, stimulus):
            return maps[index_of[pysaliency.datasets.get_image_hash(stimulus)]][self.key]

    class Density(Model):
        def __init__(self, key):
            super().__init__(caching=False)
            self.key = key

        def _log_density(self, stimulus):
            m = maps[index_of[pysaliency.datasets.get_image_hash(stimulus)]][self.key]
            return np.log(m / m.sum())

    # Scored fixations: the odd-numbered subjects' (the half the maps were not made from).
    xs, ys, ns = [], [], []
    for i, n in enumerate(names):
        p = points[n][points[n][:, 2] % 2 == 1]
        xs.append(p[:, 0]), ys.append(p[:, 1]), ns.append(np.full(len(p), i))
    fixations = pysaliency.Fixations.create_without_history(
        np.concatenate(xs).astype(float), np.concatenate(ys).astype(float), np.concatenate(ns))

    def per_image(values: np.ndarray) -> list[float]:
        return [float(np.mean(values[fixations.n == i])) for i in range(len(names))]

    values: dict[str, dict[str, list[float]]] = {}
    for key in MAPS:
        model = Fixed(key)
        v = {
            "auc_judd": [float(a) for a in model.AUC_per_image(
                stimuli, fixations, nonfixations="unfixated", thresholds="fixations")],
            "auc_judd_jitter": [float(a) for a in RandomNoiseSaliencyMapModel(model).AUC_per_image(
                stimuli, fixations, nonfixations="unfixated", thresholds="fixations")],
            "auc_shuffled": [float(a) for a in model.AUC_per_image(stimuli, fixations, nonfixations="shuffled")],
            "nss": per_image(model.NSSs(stimuli, fixations)),
            "cc": [float(CC(m[key], m["other"])) for m in maps],
            "kl": [float(MIT_KLDiv(m[key], m["other"])) for m in maps],
            "sim": [float(SIM(m[key], m["other"])) for m in maps],
        }
        values[key] = v
    uniform = pysaliency.UniformModel()
    values["half_mix"]["ig_vs_centre"] = per_image(
        Density("half_mix").information_gains(stimuli, fixations, Density("centre")))
    values["centre"]["ig_vs_uniform"] = per_image(Density("centre").information_gains(stimuli, fixations, uniform))

    return {
        "type": "salclass.pysaliency_reference",
        "version": 1,
        "pysaliency": pysaliency.__version__ if hasattr(pysaliency, "__version__") else "0.2.22",
        "numpy": np.__version__,
        "command": "/tmp/pysal-venv/bin/python scripts/pysaliency_reference.py",
        "images": names,
        "shape": list(shape),
        "recipe": RECIPE,
        "maps": list(MAPS),
        "scored": "odd-numbered subjects' fixations; ground truth map 'other' from the same subjects",
        "points": {n: points[n].tolist() for n in names},
        "values": values,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="OSIE folder (fixations.mat + stimuli/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    a = ap.parse_args(argv)
    ref = compute(a.data)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(ref, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
