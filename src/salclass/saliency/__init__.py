"""salclass.saliency: fixation data, saliency models, training, prediction into a store.

    from salclass.saliency import load_predictor
    maps = load_predictor("default").predict(images)   # uint8 (B,H,W,3) -> float32 (B,H,W), max 1
"""

from __future__ import annotations


def load_predictor(name_or_ckpt="default", batch_size: int = 32, precision: str = "fp32"):
    """A model name, "default" (the shipped network) or a checkpoint path -> Predictor
    computing in `precision` ("fp32" or "bf16")."""
    # Deferred so that reading fixation data does not import torch.
    from salclass.saliency.models import load_predictor as _load

    return _load(name_or_ckpt, batch_size=batch_size, precision=precision)


__all__ = ["load_predictor"]
