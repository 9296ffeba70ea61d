"""Saliency checkpoints: what a trained model is saved as, and every way to load one.

    load_model("default")      # the shipped weights of DEFAULT_MODEL
    load_model("fcn")          # a name: its shipped weights, or a weight-free model
    load_model("runs/x")       # a checkpoint file, or a run folder's best checkpoint
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from salclass.errors import UserError
from salclass.io import load_checkpoint
from salclass.saliency.models.base import Predictor, SaliencyModel
from salclass.saliency.models.registry import create, list_models, model_class
from salclass.run_folder import RunFolder

CHECKPOINT_TYPE = "salclass.saliency_model"
TRUNK_CHECKPOINT_TYPE = "salclass.saliency_trunk"
DEFAULT_MODEL = "ensemble"
"""`load_predictor("default")` loads the shipped weights of this architecture."""


def model_checkpoint(model: SaliencyModel, extra: dict | None = None) -> dict:
    """A loadable saliency checkpoint: weights plus what rebuilds the architecture."""
    return {"type": CHECKPOINT_TYPE, "version": 1, "architecture": model.name, "settings": model.settings(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}, **(extra or {})}


def trunk_checkpoint(model: SaliencyModel, extra: dict | None = None) -> dict:
    """The weights of `model`'s trunk alone (`salclass saliency pretrain`), for `load_trunk`."""
    return {"type": TRUNK_CHECKPOINT_TYPE, "version": 1, "architecture": model.name, "settings": model.settings(),
            "state_dict": model.trunk_state(), **(extra or {})}


def load_trunk(model: SaliencyModel, path: str | Path) -> dict:
    """Start `model`'s trunk from a trunk checkpoint (the rest keeps its fresh
    initialisation); returns the checkpoint's other fields."""
    ckpt = load_checkpoint(path, TRUNK_CHECKPOINT_TYPE)
    if not model.trunk:
        raise UserError(f"saliency model '{model.name}' has no trunk to start from {path}")
    if ckpt.get("architecture") != model.name:
        raise UserError(f"{path}: holds a trunk of '{ckpt.get('architecture')}', not of '{model.name}'")
    state = ckpt.get("state_dict")
    expected = model.trunk_state()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise UserError(f"{path}: its weights are not the trunk of '{model.name}' (other layers)")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(f"{path}: a trunk of '{model.name}' {ckpt.get('settings')}, which does not fit "
                            f"{model.settings()} ({key} is {tuple(state[key].shape)}, not {tuple(value.shape)})")
    model.load_state_dict(state, strict=False)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


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
            path = RunFolder(path).best
        return _from_checkpoint(path), str(path)
    cls = model_class(text)
    if cls.needs_weights:
        shipped = shipped_weights(text)
        if shipped.is_file():
            return _from_checkpoint(shipped), text
        how = (f"train one with `salclass saliency train --model {text}`" if cls.trainable
               else "make one with `salclass saliency ensemble CKPT CKPT ... --out FILE`")
        raise UserError(f"saliency model '{text}' needs trained weights: pass a checkpoint path ({how})")
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

