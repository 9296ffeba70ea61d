"""The centre bias: where people look in any image, a Gaussian centred on the frame.

Its two widths, sigma_x and sigma_y in fractions of the image's width and
height, are fitted on OSIE's training fixations and shipped in the package as
resources/centre_bias.json; this module is the one that reads and writes that
file (`python -m salclass.saliency.models.baselines --data DIR` refits it).
The saliency baseline, the fixed prior of the compact FCN, the ensemble's mix
and the classifiers' `-centre` controls all take the Gaussian from here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from salclass.io import atomic_write_json

WIDTHS_FILE = "centre_bias.json"


def read_fitted() -> dict:
    """The stored fit: sigma_x, sigma_y and what they were fitted on."""
    ref = resources.files("salclass").joinpath("resources", WIDTHS_FILE)
    return json.loads(ref.read_text(encoding="utf-8"))


def fitted_widths() -> tuple[float, float]:
    """(sigma_x, sigma_y) of the stored fit."""
    fitted = read_fitted()
    return fitted["sigma_x"], fitted["sigma_y"]


def write_fitted(fitted: dict, out: str | Path | None = None) -> Path:
    """Write a fit to `out` (default: the packaged file the models read); returns where."""
    target = Path(out) if out else Path(__file__).resolve().parent / "resources" / WIDTHS_FILE
    atomic_write_json(target, fitted)
    return target


def centre_log_map(height: int, width: int, sigma_x: float, sigma_y: float, dtype=np.float64) -> np.ndarray:
    """(height, width) log of the Gaussian at the pixel centres, 0 at the middle,
    computed in `dtype` throughout (float32 gives the FCN prior its exact values)."""
    gx = ((np.arange(width, dtype=dtype) + 0.5) / width - 0.5) / sigma_x
    gy = ((np.arange(height, dtype=dtype) + 0.5) / height - 0.5) / sigma_y
    return -0.5 * (gy[:, None] ** 2 + gx[None, :] ** 2)


def centre_bias_map(height: int, width: int, sigma_x: float, sigma_y: float) -> np.ndarray:
    """(height, width) float64 Gaussian centred on the frame at the pixel
    centres, maximum 1; widths in fractions of the sides (`fitted_widths()` gives the fitted ones)."""
    return np.exp(centre_log_map(height, width, sigma_x, sigma_y))
