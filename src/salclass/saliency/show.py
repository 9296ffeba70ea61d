"""A picture to look at: images with predicted and ground-truth maps overlaid.

`salclass saliency show --data DIR --model M --out grid.png` takes the first
N test images of fixation data and draws, per image, the photo, the model's
map over it, and the human fixation density over it (with the fixations as
dots). `--store SPLIT` instead takes the first N images of a store and shows
the model's map beside the map stored there.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from salclass.errors import UserError
from salclass.io import atomic_write_bytes
from salclass.saliency.models import load_predictor


def _overlay(ax, image: np.ndarray, sal: np.ndarray | None, title: str) -> None:
    ax.imshow(image)
    if sal is not None:
        # The map drawn as a heat layer whose opacity follows its value, so the
        # unsalient parts of the photo stay visible.
        import matplotlib

        rgba = matplotlib.colormaps["inferno"](sal)
        rgba[..., 3] = 0.15 + 0.7 * sal
        ax.imshow(rgba)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def render_grid(images: list[np.ndarray], predicted: list[np.ndarray], reference: list[np.ndarray],
                names: list[str], model: str, reference_label: str, out: str | Path,
                points: list[np.ndarray] | None = None, scores: list[str] | None = None) -> Path:
    """Three rows (image, prediction, reference) and one column per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    aspect = images[0].shape[0] / images[0].shape[1]
    col_w = 2.4
    fig, axes = plt.subplots(3, n, figsize=(col_w * n, 3 * col_w * aspect + 0.9), squeeze=False)
    for j in range(n):
        _overlay(axes[0, j], images[j], None, names[j])
        _overlay(axes[1, j], images[j], predicted[j], scores[j] if scores else "")
        _overlay(axes[2, j], images[j], reference[j], "")
        if points is not None:
            p = points[j]
            axes[2, j].scatter(p[:, 0], p[:, 1], s=2, c="cyan", linewidths=0)
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel(f"predicted\n{model}", fontsize=9)
    axes[2, 0].set_ylabel(reference_label, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def show_cli(data: str | None, store: str | None, model: str, n: int, out: str, split: str = "test",
             read: dict | None = None) -> int:
    if (data is None) == (store is None):
        raise UserError("give exactly one of --data (fixation data) or --store (a store split with maps)")
    if not 1 <= n <= 32:
        raise UserError(f"--n must be between 1 and 32, got {n}")
    predictor = load_predictor(model)
    if data is not None:
        from salclass.saliency import metrics
        from salclass.saliency.fixations import open_fixation_data, read_options

        ds = open_fixation_data(data, read_options(read)).split(split)
        rows = range(min(n, len(ds)))
        images = [ds.image(i) for i in rows]
        predicted = [predictor.predict(im[None])[0] for im in images]
        reference = [ds.density(i) for i in rows]
        points = [ds.fixation_points(i) for i in rows] if ds.has_fixations else None
        scores = None
        if points is not None:
            scores = [f"NSS {metrics.nss(p, f):.2f}  CC {metrics.cc(p, g):.2f}"
                      for p, f, g in zip(predicted, points, reference)]
        names = [ds.names[i] for i in rows]
        label = f"human fixations\n({split} split)"
    else:
        from salclass.data import Store

        s = Store.open(store)
        if not s.has_saliency:
            raise UserError(f"{store}: the store has no complete saliency maps to compare with")
        k = min(n, s.count)
        images = [np.asarray(s.images[i]) for i in range(k)]
        predicted = list(predictor.predict(np.stack(images)))
        reference = [np.asarray(s.saliency[i], dtype=np.float32) / 255.0 for i in range(k)]
        points, scores = None, None
        names = [Path(s.ids[i]).name for i in range(k)]
        label = f"stored map\n{s.saliency_model}"
    path = render_grid(images, predicted, reference, names, predictor.name, label, out, points, scores)
    print(f"wrote {path}")
    return 0
