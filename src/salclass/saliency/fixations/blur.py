"""Ground-truth maps from fixation points, made the way the benchmark makes them.

Fixation counts are blurred with a Gaussian whose sigma is one degree of visual
angle, so the blur follows the viewing geometry (pixels per degree,
`ReadOptions.ppd`), with a per-data-set default:

* OSIE: 24 px per degree at 800x600, the value the OSIE authors use for their
  own fixation maps (``params.eye.radius = 24`` in their released MATLAB
  configuration);
* SALICON: 19 px at 640x480, the blur of the SALICON API's fixation maps
  (``buildFixMap(..., sigma=19)``); its points come from mouse movements, so
  this is the data set's convention rather than a measured viewing distance;
* anything else: unknown, so the image's width is taken to span
  ``VIEW_DEGREES`` = 33.3 degrees, as OSIE's 800 px do at 24 px per degree.

Maps made at another resolution scale the blur with the image, so they stay
one degree wide.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

OSIE_SIGMA = 24.0
"""Ground-truth blur for OSIE in pixels at 800x600: one degree of visual angle."""
SALICON_SIGMA = 19.0
"""Ground-truth blur of the SALICON API at 640x480."""
VIEW_DEGREES = 800 / OSIE_SIGMA
"""Visual angle assumed for an image's width when the viewing geometry is unknown."""

# Truncating the Gaussian at 3.5 sigma matches a 7-sigma-wide kernel window.
_TRUNCATE = 3.5


def blur_fixations(counts: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian density from a fixation-count map, float32, maximum 1 (all
    zeros if there are no fixations). Outside the image counts as empty, as
    with MATLAB's imfilter, so no mass is invented at the borders."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    rows, cols = np.nonzero(counts)
    width_y, width_x = 2 * int(_TRUNCATE * sy + 0.5) + 1, 2 * int(_TRUNCATE * sx + 0.5) + 1
    if rows.size < width_y + width_x:
        # Few fixated pixels and a wide kernel (a large image at one degree):
        # the sum of one separable Gaussian per pixel, the same truncated
        # kernel as below, costs pixels x fixations instead of pixels x kernel width.
        weight = counts[rows, cols].astype(np.float64)
        dens = (_kernel_at(rows, counts.shape[0], sy) * weight[:, None]).T @ _kernel_at(cols, counts.shape[1], sx)
    else:
        dens = ndimage.gaussian_filter(counts.astype(np.float64), sigma=(sy, sx), mode="constant",
                                       truncate=_TRUNCATE)
    top = dens.max()
    if top > 0:
        dens /= top
    return dens.astype(np.float32)


def _kernel_at(centres: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """(K, n): a Gaussian of `sigma` truncated as ndimage truncates it, centred
    on each of `centres` over positions 0..n-1 (unnormalised: maps are scaled to maximum 1)."""
    offset = np.arange(n)[None, :] - centres[:, None]
    k = np.exp(-0.5 * (offset / sigma) ** 2)
    k[np.abs(offset) > int(_TRUNCATE * sigma + 0.5)] = 0.0
    return k

