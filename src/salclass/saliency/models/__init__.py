"""Saliency models: a registry by name, the predictor wrapper, checkpoints.

    create("fcn")                 # a fresh model of a registered architecture
    load_predictor("default")     # the shipped network; or any name; or a checkpoint path
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from salclass.errors import UserError
from salclass.io import load_checkpoint
from salclass.saliency.models.base import Predictor, SaliencyModel
from salclass.saliency.models.registry import create, describe_models, list_models, model_class, register

CHECKPOINT_TYPE = "salclass.saliency_model"
DEFAULT_MODEL = "fcn"
"""`load_predictor("default")` loads the shipped weights of this architecture."""


def model_checkpoint(model: SaliencyModel, extra: dict | None = None) -> dict:
    """A loadable saliency checkpoint: weights plus what rebuilds the architecture."""
    return {"type": CHECKPOINT_TYPE, "version": 1, "architecture": model.name, "settings": model.settings(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}, **(extra or {})}


def shipped_weights(name: str) -> Path:
    ref = resources.files("salclass").joinpath("weights", f"{name}.pt")
    return Path(str(ref))


def load_model(name_or_ckpt: str | Path) -> tuple[SaliencyModel, str]:
    """(model in eval mode, display name) for a model name, "default", or a checkpoint path."""
    text = str(name_or_ckpt)
    if text == "default":
        path = shipped_weights(DEFAULT_MODEL)
        if not path.is_file():
            raise UserError(f"the default saliency weights are missing from this install ({path})")
        return _from_checkpoint(path), f"default ({DEFAULT_MODEL})"
    path = Path(text)
    if path.suffix == ".pt" or "/" in text or path.is_file() or path.is_dir():
        if path.is_dir():
            path = path / "best.pt"
        return _from_checkpoint(path), str(path)
    cls = model_class(text)
    if cls.trainable:
        shipped = shipped_weights(text)
        if shipped.is_file():
            return _from_checkpoint(shipped), text
        raise UserError(f"saliency model '{text}' needs trained weights: pass a checkpoint path "
                        f"(train one with `salclass saliency train --model {text}`)")
    return cls().eval(), text


def _from_checkpoint(path: Path) -> SaliencyModel:
    ckpt = load_checkpoint(path, CHECKPOINT_TYPE)
    for key in ("architecture", "settings", "state_dict"):
        if key not in ckpt:
            raise UserError(f"{path}: saliency checkpoint lacks '{key}'")
    arch = ckpt["architecture"]
    if arch not in list_models():
        raise UserError(f"{path}: unknown saliency architecture '{arch}' (known: {', '.join(list_models())})")
    model = create(arch, **ckpt["settings"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit architecture '{arch}' ({str(e).splitlines()[0][:160]})") from None
    return model.eval()


def load_predictor(name_or_ckpt: str | Path = "default", batch_size: int = 32, precision: str = "fp32") -> Predictor:
    model, name = load_model(name_or_ckpt)
    return Predictor(model, name, batch_size=batch_size, precision=precision)


__all__ = ["CHECKPOINT_TYPE", "DEFAULT_MODEL", "Predictor", "SaliencyModel", "create", "describe_models",
           "list_models", "load_model", "load_predictor", "model_checkpoint", "register", "shipped_weights"]
