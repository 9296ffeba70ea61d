"""Write a saliency map for every image of a packed store.

`salclass saliency predict STORE --model CKPT_OR_NAME` runs the predictor over
the store's images in order, at the store's resolution, and writes the maps
through `salclass.data.SaliencyMapWriter`, which records progress only after
the rows are on disk and marks the maps complete only at the end. Interrupted,
a second run with the same model continues from the last recorded row; the
maps are the same as those of an uninterrupted run because each map depends on
its own image alone. Maps are computed in the `precision` setting's format
(salclass.precision; `auto` is bf16 only on a CPU with native bf16), and a bf16
model's name says so: a run resumes only in the precision it started in, and
complete maps of the same model in either precision are kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from salclass.errors import UserError
from salclass.io import file_sha256
from salclass.lock import folder_lock
from salclass.precision import resolve_precision
from salclass.saliency.models import DEFAULT_MODEL, Predictor, load_model, shipped_weights
from salclass.saliency.models.base import BF16_SUFFIX
from salclass.run_folder import RunFolder
from salclass.say import quiet as say_nothing, say


def model_identity(name_or_ckpt: str | Path, precision: str = "fp32") -> str:
    """The name recorded with the maps: a weight-free model's name, or the
    architecture with the weights' hash, so that a resumed run can only
    continue with exactly the same model; " bf16" after it for bf16 maps."""
    return _identity(name_or_ckpt) + (BF16_SUFFIX if precision == "bf16" else "")


def same_model(a: str | None, b: str) -> bool:
    """Whether two map identities name the same model, in either precision."""
    return a is not None and a.removesuffix(BF16_SUFFIX) == b.removesuffix(BF16_SUFFIX)


def cpu_precision(setting: str, quiet: bool = False) -> str:
    """The precision saliency prediction runs in for `setting` (it runs on the CPU);
    `quiet` drops the fallback note where the output names the precision anyway."""
    return resolve_precision(setting, torch.device("cpu"), say=say_nothing if quiet else say)


def _precision_for(net, setting: str) -> str:
    # Weight-free models compute in float32 (mostly numpy) whatever the setting.
    return cpu_precision(setting) if any(True for _ in net.parameters()) else "fp32"


def _identity(name_or_ckpt: str | Path) -> str:
    text = str(name_or_ckpt)
    if text == "default":
        path = shipped_weights(DEFAULT_MODEL)
    else:
        path = Path(text)
        if path.is_dir():
            path = RunFolder(path).best
        if not path.is_file():
            if shipped_weights(text).is_file():
                path = shipped_weights(text)
            else:
                return text
    return f"{path.name} sha256:{file_sha256(path)[:16]}"


def split_dirs(store: str | Path) -> list[Path]:
    """A store split folder, or the splits (train, val) of a store root."""
    root = Path(store)
    if not root.exists():
        raise UserError(f"{root}: store not found")
    if (root / "meta.json").is_file():
        return [root]
    found = [root / s for s in ("train", "val") if (root / s / "meta.json").is_file()]
    if not found:
        raise UserError(f"{root}: not a store split (no meta.json) and no train/ or val/ split inside")
    return found


def predict_into_store(split_dir: str | Path, model: str | Path | Predictor = "default", batch_size: int = 64,
                       overwrite: bool = False, progress: bool = True,
                       on_batch: Callable[[int], None] | None = None, precision: str = "auto") -> dict:
    """Fill `split_dir`'s saliency maps. Returns {"split", "model", "count",
    "computed", "seconds"}. `on_batch(done)` is called after each batch is
    durably recorded (tests use it to interrupt a run). A Predictor brings its
    own precision; `precision` applies to a model given by name or checkpoint."""
    from salclass.data import Store

    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    split_dir = Path(split_dir)
    Store.open(split_dir)  # not a store: say so before loading a model
    if isinstance(model, Predictor):
        predictor, identity = model, model.name
    else:
        net, _ = load_model(model)
        used = _precision_for(net, precision)
        identity = model_identity(model, used)
        predictor = Predictor(net, model_identity(model), batch_size=batch_size, precision=used)
    with folder_lock(split_dir, exclusive=True):
        return _predict_locked(split_dir, predictor, identity, batch_size, overwrite, progress, on_batch)


def _predict_locked(split_dir: Path, predictor: Predictor, identity: str, batch_size: int, overwrite: bool,
                    progress: bool, on_batch: Callable[[int], None] | None) -> dict:
    from salclass.data import SaliencyMapWriter, Store

    t0 = time.time()
    store = Store.open(split_dir)
    if store.has_saliency and not overwrite and same_model(store.saliency_model, identity):
        return {"split": str(split_dir), "model": store.saliency_model, "count": store.count, "computed": 0,
                "seconds": 0.0}
    writer = SaliencyMapWriter(split_dir, identity, overwrite=overwrite)
    start = writer.done
    images = writer.store.images
    bar = tqdm(total=writer.count, initial=start, desc=f"saliency {split_dir.name}", unit="img",
               disable=not progress)
    with bar:
        for b0 in range(start, writer.count, batch_size):
            maps = predictor.predict(np.asarray(images[b0:b0 + batch_size]))
            writer.write(b0, to_uint8(maps))
            writer.checkpoint()
            bar.update(len(maps))
            if on_batch is not None:
                on_batch(writer.done)
    writer.finish()
    return {"split": str(split_dir), "model": identity, "count": writer.count, "computed": writer.count - start,
            "seconds": round(time.time() - t0, 2)}


def to_uint8(maps: np.ndarray) -> np.ndarray:
    """float maps with maximum 1 -> uint8 with maximum 255 (the store's format)."""
    return np.clip(np.rint(maps * 255.0), 0, 255).astype(np.uint8)


def predict_cli(store: str, model: str = "default", batch_size: int = 64, overwrite: bool = False,
                precision: str = "auto") -> int:
    dirs = split_dirs(store)
    precision = _precision_for(load_model(model)[0], precision)  # once, so a fallback note is printed once
    for d in dirs:
        r = predict_into_store(d, model=model, batch_size=batch_size, overwrite=overwrite, precision=precision)
        if r["computed"] == 0:
            print(f"{d}: already has complete maps of {r['model']} (pass --overwrite to recompute)")
        else:
            print(f"{d}: {r['computed']} maps of {r['model']} written in {r['seconds']:.1f} s "
                  f"({r['count']} in the store)")
    return 0
