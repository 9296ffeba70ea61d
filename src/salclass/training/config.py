"""Settings of one classifier training run.

The defaults are the protocol shared by every experiment of the thesis
(section 3.3.3): SGD with momentum 0.9, learning rate 0.01 divided by 10 at
epochs 24, 45 and 62 of 90, Keras's l2(0.0005) on the convolution and dense
kernels, batches of 128, cross-entropy, dropout 0.5, no mean subtraction,
random crop and flip, and the thesis's block order conv -> ReLU -> BN -> pool.

Regularisation: Keras's l2(0.0005) adds 0.0005 * sum(w^2) of each kernel to the
loss, whose gradient is 0.001 * w. SGD's `weight_decay` adds wd * w to the
gradient before momentum, so weight_decay = 0.001 on the kernels alone is the
same update (`decay_on: kernels`). `decay_on: all` applies it to every parameter,
biases and batch-norm scale and shift included (what salclass did before, with
weight_decay 0.0005).

Precision: `auto` trains under bfloat16 autocast where the device multiplies
bfloat16 natively and in float32 elsewhere (salclass.precision); the run records
what it used, and a resumed run keeps it. `amp: true|false` of configs written
before `precision` existed reads as `precision: auto|fp32`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from salclass.precision import PrecisionSetting

# Keras's l2(0.0005) as SGD weight decay: the gradient of 0.0005 * w^2 is 0.001 * w.
THESIS_WEIGHT_DECAY = 0.001


@dataclass
class AttentionTransfer:
    """Attention transfer (Zagoruyko & Komodakis 2017) with the saliency map
    as the teacher's attention map. Off while beta is 0."""

    beta: float = 0.0
    layer: str = "relu2"

    def __post_init__(self) -> None:
        if not self.beta >= 0.0:
            raise ValueError(f"attention.beta must be >= 0, got {self.beta}")
        if not self.layer:
            raise ValueError("attention.layer must name a submodule, e.g. relu2")

    @property
    def enabled(self) -> bool:
        return self.beta > 0.0


@dataclass
class TrainConfig:
    store: Path
    out: Path
    model: str = "RGB"
    epochs: int = 90
    milestones: list[int] = field(default_factory=lambda: [24, 45, 62])
    lr: float = 0.01
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = THESIS_WEIGHT_DECAY
    decay_on: Literal["kernels", "all"] = "kernels"
    block_order: Literal["relu-bn", "bn-relu"] = "relu-bn"
    batch_size: int = 128
    dropout: float = 0.5
    mean_subtract: bool = False
    crop: int | None = None
    seed: int = 0
    init_from: Path | None = None
    init_new: Literal["uniform", "zeros", "default"] = "uniform"
    attention: AttentionTransfer = field(default_factory=AttentionTransfer)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: PrecisionSetting = "auto"
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    workers: int | None = None
    threads: int | None = None
    progress: bool = True
    tensorboard: bool = True

    @staticmethod
    def upgrade_settings(data: dict) -> dict:
        """Settings saved by older runs: their CUDA-only `amp` flag reads as `precision`."""
        if "amp" in data:
            amp = data.pop("amp")
            data.setdefault("precision", "auto" if amp else "fp32")
        return data

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.crop is not None and self.crop < 16:
            raise ValueError(f"crop must be >= 16 pixels, got {self.crop}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self._check_model()

    def _check_model(self) -> None:
        from salclass.errors import UserError
        from salclass.models import get_variant

        try:
            get_variant(self.model)
        except UserError as e:
            raise ValueError(f"model: {e}") from None
