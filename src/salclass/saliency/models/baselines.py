"""Weight-free saliency models: the centre bias and two classical bottom-up models.

No maintained Python library ships spectral residual or image signature
without a heavy native dependency (OpenCV's contrib saliency module), so both
are written here with numpy/scipy FFTs, following the papers:
Hou & Zhang, "Saliency detection: a spectral residual approach" (CVPR 2007);
Hou, Harel & Koch, "Image signature: highlighting sparse salient regions" (PAMI 2012).

The centre bias's widths are fitted on OSIE's training split and stored by
`salclass.centre_bias`; refit with
`python -m salclass.saliency.models.baselines --data ../shared/data/osie`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import fft, ndimage

from salclass.centre_bias import centre_bias_map, fitted_widths, write_fitted
from salclass.saliency.models.base import SaliencyModel, area_preserving_size
from salclass.saliency.models.registry import register

def fit_centre_bias(data: str | Path) -> dict:
    """Maximum-likelihood widths of a Gaussian centred on the image, in
    fractions of width and height, from every fixation of the training split."""
    from salclass.saliency.fixations import open_fixation_data

    ds = open_fixation_data(data).split("train")
    dx, dy = [], []
    for i in range(len(ds)):
        h, w = ds.image_size(i)
        fx = ds.fixations(i)
        dx.append((fx.x + 0.5) / w - 0.5)
        dy.append((fx.y + 0.5) / h - 0.5)
    dx, dy = np.concatenate(dx), np.concatenate(dy)
    return {"type": "salclass.centre_bias", "version": 1,
            "sigma_x": float(np.sqrt(np.mean(dx ** 2))), "sigma_y": float(np.sqrt(np.mean(dy ** 2))),
            "fixations": int(dx.size), "images": len(ds), "data": Path(data).name, "split": "train",
            "command": "python -m salclass.saliency.models.baselines --data ../shared/data/osie"}


class _WeightFree(SaliencyModel):
    # Bottom-up models work on a small image: the published methods run at
    # about 64 pixels wide, which keeps only the coarse structure that predicts fixations.
    area = 48 * 64

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return area_preserving_size(height, width, self.area, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(np.float64)
        return torch.from_numpy(np.stack([self.map_one(a) for a in arr]).astype(np.float32))

    def map_one(self, img: np.ndarray) -> np.ndarray:
        """(3, h, w) float in [0, 1] -> (h, w) non-negative map."""
        raise NotImplementedError


@register("centre_bias")
class CentreBias(_WeightFree):
    """Gaussian centred on the image, widths fitted to OSIE train fixations; ignores content."""

    def __init__(self, sigma_x: float | None = None, sigma_y: float | None = None):
        super().__init__()
        if sigma_x is None or sigma_y is None:
            fitted_x, fitted_y = fitted_widths()
            sigma_x = fitted_x if sigma_x is None else sigma_x
            sigma_y = fitted_y if sigma_y is None else sigma_y
        if sigma_x <= 0 or sigma_y <= 0:
            raise ValueError("centre bias widths must be positive")
        self.sigma_x, self.sigma_y = float(sigma_x), float(sigma_y)

    def settings(self) -> dict:
        return {"sigma_x": self.sigma_x, "sigma_y": self.sigma_y}

    def map_one(self, img: np.ndarray) -> np.ndarray:
        return centre_bias_map(*img.shape[-2:], self.sigma_x, self.sigma_y)


def _blur(m: np.ndarray, fraction: float) -> np.ndarray:
    return ndimage.gaussian_filter(m, sigma=fraction * m.shape[1], mode="nearest")


@register("spectral_residual")
class SpectralResidual(_WeightFree):
    """Spectral residual (Hou & Zhang 2007): what the log-amplitude spectrum has beyond its local average."""

    def map_one(self, img: np.ndarray) -> np.ndarray:
        gray = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
        spec = fft.fft2(gray)
        log_amp = np.log(np.abs(spec) + 1e-9)
        residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="nearest")
        sal = np.abs(fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
        return _blur(sal, 0.05)


@register("image_signature")
class ImageSignature(_WeightFree):
    """Image signature (Hou, Harel & Koch 2012): the sign of each channel's DCT, transformed back and squared."""

    def map_one(self, img: np.ndarray) -> np.ndarray:
        sal = np.zeros(img.shape[-2:])
        for ch in _opponent(img):
            sal += fft.idctn(np.sign(fft.dctn(ch, norm="ortho")), norm="ortho") ** 2
        return _blur(sal, 0.045)


def _opponent(img: np.ndarray) -> np.ndarray:
    """Luminance and two colour-opponent channels (a cheap stand-in for CIELAB)."""
    r, g, b = img
    return np.stack([(r + g + b) / 3.0, r - g, (r + g) / 2.0 - b])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fit the centre-bias widths on a fixation data set's train split")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=None, help="JSON to write (default: the packaged resources file)")
    a = p.parse_args(argv)
    fitted = fit_centre_bias(a.data)
    out = write_fitted(fitted, a.out)
    print(f"sigma_x {fitted['sigma_x']:.4f} sigma_y {fitted['sigma_y']:.4f} "
          f"(fractions of width/height, {fitted['fixations']} fixations) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
