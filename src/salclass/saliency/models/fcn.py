"""The project's saliency network: a compact fully-convolutional net (the
shipped default is an ensemble of six of them, models/ensemble.py).

About 0.3M parameters, small enough to train from scratch on OSIE's 450
training images on two CPU cores. It predicts a probability distribution over
pixels (softmax of logits), is trained with the KL divergence to the blurred
fixation density, and adds a learned centre-bias map to its logits, because
where people look depends strongly on the position in the frame, whatever the
content.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salclass.centre_bias import centre_log_map, fitted_widths
from salclass.saliency.models.base import SaliencyModel, area_preserving_size
from salclass.saliency.models.registry import register

# ImageNet channel statistics: a conventional, data-independent input scaling.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _centre_bias_logits(hw: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w) float32 log of the fitted centre-bias Gaussian at the cell centres."""
    return torch.from_numpy(centre_log_map(*hw, *fitted_widths(), dtype=np.float32)).view(1, 1, *hw)


@register("fcn")
class CompactFCN(SaliencyModel):
    """Compact FCN (~0.3M params) with learned centre bias, softmax map, KL loss; six make the shipped default."""

    trainable = needs_weights = True
    trunk = ("stem", "block2", "block3")

    def __init__(self, width: int = 32, area: int = 144 * 192, prior_size: tuple[int, int] | list[int] = (9, 12),
                 prior: str = "learned"):
        super().__init__()
        if width < 4 or area < 32 * 32:
            raise ValueError("width must be >= 4 and area >= 1024")
        if prior not in ("learned", "centre_bias"):
            raise ValueError(f"prior must be 'learned' or 'centre_bias', got {prior!r}")
        self.width = width
        self.area = area
        self.prior_hw = (int(prior_size[0]), int(prior_size[1]))
        self.prior_kind = prior
        w = width
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        # /2 then /4: cheap early layers, most capacity at /8 where saliency lives.
        self.stem = nn.Sequential(_conv(3, w * 3 // 4, stride=2), _conv(w * 3 // 4, w), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(_conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2))
        # Dilations widen the receptive field to most of the image without more pooling.
        self.block3 = nn.Sequential(_conv(2 * w, 3 * w), _conv(3 * w, 3 * w, dilation=2), _conv(3 * w, 3 * w, dilation=4))
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3 * w, 3 * w, 1), nn.ReLU(inplace=True))
        self.readout = nn.Sequential(nn.Conv2d(3 * w + 2 * w, w, 1), nn.ReLU(inplace=True), nn.Conv2d(w, 1, 1))
        if prior == "learned":
            self.prior = nn.Parameter(torch.zeros(1, 1, *self.prior_hw))
        else:
            # DeepGaze's arrangement: the centre bias fitted on all training
            # fixations is fixed, so the network learns only what the image adds
            # to it, and falls back to it where the content says little.
            self.register_buffer("prior", _centre_bias_logits(self.prior_hw))

    def settings(self) -> dict:
        return {"width": self.width, "area": self.area, "prior_size": list(self.prior_hw), "prior": self.prior_kind}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return area_preserving_size(height, width, self.area, 8)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return height // 4, width // 4

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.stem((x - self.mean) / self.std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> log-probabilities (B, h/4, w/4), summing to 1 over pixels."""
        f1 = self.block2(self.stem((x - self.mean) / self.std))
        f2 = self.block3(f1)
        f2 = f2 + self.context(f2)
        logits = self.readout(torch.cat([f2, f1], dim=1))
        logits = logits + F.interpolate(self.prior, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        logits = F.interpolate(logits, size=self.target_size(h, w), mode="bilinear", align_corners=False)[:, 0]
        return torch.log_softmax(logits.flatten(1), dim=1).view_as(logits)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """KL(target || prediction), target a density summing to 1 per image."""
        t = target.flatten(1)
        return (t * (torch.log(t.clamp_min(1e-12)) - output.flatten(1))).sum(1).mean()

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).exp()
