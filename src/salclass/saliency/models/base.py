"""The model interface and the public predictor wrapper.

A saliency model implements one method, `raw(x)`: a batch of RGB images, float
in [0, 1] at the size the model asks for, to non-negative maps of any scale and
resolution. `Predictor` does everything else: checks the input, resizes to the
model's size, batches, resizes the maps back and scales each to maximum 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salclass.errors import UserError
from salclass.precision import autocast

# Appended to the name of a predictor (and so to a store's map model) that runs
# in bf16: its maps differ from fp32's in the last bits, and a store's rows must
# not mix the two.
BF16_SUFFIX = " bf16"


class SaliencyModel(nn.Module):
    """Base of every saliency model. Weight-free models are modules without
    parameters, so that all models are saved, moved and called alike."""

    name: str = ""
    trainable: bool = False      # `salclass saliency train` can fit it
    needs_weights: bool = False  # useless without learned weights (a checkpoint or shipped file)

    def settings(self) -> dict:
        """Constructor arguments that rebuild this architecture (saved in checkpoints)."""
        return {}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) the model wants for an image of (height, width)."""
        return height, width

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float in [0, 1] -> (B, h', w') non-negative maps."""
        raise NotImplementedError

    # Trainable models also define `forward(x)` (the training output),
    # `target_size(h, w)` and `loss(output, target)`.

    # Models whose early layers can start from weights learned on another task
    # (`salclass saliency pretrain`) name those layers' attributes here and
    # define `trunk_features(x)`: (B, 3, h, w) in [0, 1] -> (B, C, h', w') from them alone.
    trunk: tuple[str, ...] = ()

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def trunk_state(self) -> dict[str, torch.Tensor]:
        """The trunk's weights and normalisation statistics, by state-dict key."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k.split(".")[0] in self.trunk}


def area_preserving_size(height: int, width: int, area: int, multiple: int) -> tuple[int, int]:
    """Scale (height, width) to about `area` pixels, keeping the aspect ratio,
    each side a multiple of `multiple` (a fully-convolutional net's stride)."""
    scale = (area / (height * width)) ** 0.5
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w


def to_input(images: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, h, w) in [0, 1], antialiased resize.
    Training and prediction both use this, so the model sees the same pixels."""
    # A copy: store images are read-only memory maps, which torch will not wrap.
    x = torch.tensor(images) if isinstance(images, np.ndarray) else images
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return x


class Predictor:
    """`predict(uint8 (B, H, W, 3)) -> float32 (B, H, W)`, each map maximum 1.
    With precision "bf16" the model runs under bf16 autocast (resizing and
    normalisation stay float32) and the name says so."""

    def __init__(self, model: SaliencyModel, name: str, batch_size: int = 32, precision: str = "fp32"):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.name = name + (BF16_SUFFIX if precision == "bf16" else "")
        self.batch_size = batch_size
        self.precision = precision

    def __repr__(self) -> str:
        return f"Predictor({self.name!r})"

    def predict(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            desc = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise UserError(f"saliency prediction needs uint8 images of shape (B, H, W, 3), got {desc}")
        n, height, width = images.shape[:3]
        if height < 1 or width < 1:
            raise UserError(f"saliency prediction got empty images of shape {images.shape}")
        out = np.empty((n, height, width), dtype=np.float32)
        size = self.model.input_size(height, width)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                x = to_input(images[start:start + self.batch_size], size)
                with autocast(x.device, self.precision):
                    maps = self.model.raw(x)
                maps = maps.unsqueeze(1).float()
                maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
                out[start:start + len(x)] = normalise_max(maps.clamp_(min=0.0)).numpy()
        return out


def normalise_max(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (H, W) map of a batch to maximum 1; an all-zero map (nothing
    stands out) becomes uniform rather than undefined."""
    top = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    flat = top <= 0
    return torch.where(flat, torch.ones_like(maps), maps / torch.where(flat, torch.ones_like(top), top))
