"""The optimiser of a classifier run: SGD with L2 weight decay where the config puts it."""

from __future__ import annotations

import torch
from torch import nn


def decay_groups(model: nn.Module, weight_decay: float, decay_on: str) -> list[dict]:
    """Parameter groups for SGD. "kernels": decay on convolution and linear weights
    only, none on biases and batch-norm scale/shift (Keras's kernel_regularizer, the
    thesis's); "all": the same decay on every parameter."""
    if decay_on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if decay_on != "kernels":
        raise ValueError(f"decay_on must be 'kernels' or 'all', got {decay_on!r}")
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    decayed = [p for p in model.parameters() if id(p) in kernels]
    free = [p for p in model.parameters() if id(p) not in kernels]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, decay_on: str) -> torch.optim.SGD:
    return torch.optim.SGD(decay_groups(model, weight_decay, decay_on), lr=lr, momentum=momentum)
