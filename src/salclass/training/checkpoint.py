"""The classifier checkpoint: what a run saves each epoch and what evaluation,
fine-tuning and `--resume` read back.

Everything in it is a tensor, a number, a string or a list/dict of those, so it
loads with `weights_only=True` (salclass.io.load_checkpoint).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from salclass.errors import UserError
from salclass.io import load_checkpoint
from salclass.run_folder import CHECKPOINT_NAME

CHECKPOINT_TYPE = "salclass.classifier"
# 2: records `block_order`; version 1 checkpoints were all trained conv -> BN -> ReLU.
# `precision` was added within version 2 (readers fall back when it is absent).
CHECKPOINT_VERSION = 2


def rng_state() -> dict:
    """This process's torch, CUDA, numpy and Python RNG states in a weights-only-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_path(run_or_ckpt: str | Path) -> Path:
    """A run folder's checkpoint, or the checkpoint file itself."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        return path / CHECKPOINT_NAME
    return path


def load_classifier(run_or_ckpt: str | Path) -> dict:
    """A classifier checkpoint (from a run folder or a file); UserError if it is
    missing, of another type, or lacks what a classifier checkpoint holds."""
    path = checkpoint_path(run_or_ckpt)
    if not path.exists() and Path(run_or_ckpt).is_dir():
        raise UserError(f"{run_or_ckpt}: no {CHECKPOINT_NAME} in this folder (not a training run, or no epoch finished yet)")
    ckpt = load_checkpoint(path, CHECKPOINT_TYPE, max_version=CHECKPOINT_VERSION)
    missing = [k for k in ("model", "model_name", "num_classes", "input_size", "epoch", "config") if k not in ckpt]
    if missing:
        raise UserError(f"{path}: classifier checkpoint lacks '{missing[0]}'")
    return ckpt


def trained_precision(ckpt: dict, device: torch.device) -> str:
    """"fp32" or "bf16": what the checkpoint's run computed in. Checkpoints from
    before `precision` ran bf16 autocast on CUDA when `amp` was on, fp32 on the CPU."""
    if "precision" in ckpt:
        return ckpt["precision"]
    return "bf16" if device.type == "cuda" and ckpt["config"].get("amp", True) else "fp32"


def block_order_of(ckpt: dict) -> str:
    """The block order the checkpoint's weights were trained with."""
    return ckpt.get("block_order", "bn-relu") if int(ckpt.get("version", 1)) >= 2 else "bn-relu"
