"""Evaluate a trained classifier on a store split and keep every prediction.

The evaluation (salclass.run_folder.write_evaluation, in the run folder's
eval/ by default) is a summary (top-1, top-5, loss, per-class accuracy with
class names, confusion matrix) and the predictions, one row per image (store
row `index`, `label`, `top5`, `correct1`, `correct5`), sorted by index, so two
runs evaluated on the same store line up image by image. The summary names the
checkpoint it was made from by its content checksum (`checkpoint_sha256`), so
a study can tell an evaluation of the final weights from one of an earlier
epoch. Evaluating into a run folder (the default) holds that folder's lock:
never while a training process holds it.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from salclass.errors import UserError
from salclass.io import CHECKSUM_KEY, content_digest
from salclass.lock import folder_lock
from salclass.precision import resolve_precision
from salclass.run_folder import EVAL_NAME, PREDICTIONS_NAME, RunFolder, write_evaluation
from salclass.say import say
from salclass.training.checkpoint import block_order_of, checkpoint_path, load_classifier, trained_precision
from salclass.training.distributed import World, resolve_device
from salclass.training.engine import Runtime, evaluate
from salclass.training.memory_format import cpu_channels_last


def _open_split(store_split: str | Path):
    from salclass.data import Store

    path = Path(store_split)
    if not (path / "meta.json").is_file() and (path / "val" / "meta.json").is_file():
        path = path / "val"
    return Store.open(path)


def _default_out(run_or_ckpt: str | Path) -> Path:
    path = Path(run_or_ckpt)
    return RunFolder(path if path.is_dir() else path.parent).eval_dir


def evaluate_run(run_or_ckpt: str | Path, store_split: str | Path, out: str | Path | None = None, *,
                 batch_size: int = 128, device: str = "auto", progress: bool = True) -> dict:
    """Evaluate the checkpoint of a run folder (or a checkpoint file) on a store
    split (or a store root, meaning its val/), write the evaluation into `out`
    (default the run folder's eval/) and return the summary.
    The forward passes use the precision the run trained in, as its validation did."""
    out_dir = Path(out) if out is not None else _default_out(run_or_ckpt)
    run_dir = Path(run_or_ckpt) if Path(run_or_ckpt).is_dir() else Path(run_or_ckpt).parent
    with ExitStack() as held:
        if run_dir.resolve() in out_dir.resolve().parents:
            # Writing into a run folder: not while its training (or another evaluation) holds it,
            # and no checkpoint is replaced while this one is read.
            held.enter_context(folder_lock(run_dir, exclusive=True))
        return _evaluate(run_or_ckpt, store_split, out_dir, batch_size, device, progress)


def _evaluate(run_or_ckpt, store_split, out_dir: Path, batch_size: int, device: str, progress: bool) -> dict:
    from salclass.data import StoreLoader
    from salclass.models import create

    ckpt = load_classifier(run_or_ckpt)
    store = _open_split(store_split)
    wnids = [c[0] for c in ckpt.get("classes", [])]
    if wnids and wnids != [w for w, _ in store.classes]:
        raise UserError(f"{store.path}: its classes differ from the ones the checkpoint was trained on")
    if store.num_classes != ckpt["num_classes"]:
        raise UserError(f"{store.path}: has {store.num_classes} classes, the checkpoint {ckpt['num_classes']}")
    size = int(ckpt["input_size"])
    if size > store.size:
        raise UserError(f"{store.path}: images are {store.size}px, smaller than the model's input {size}px")
    world = World()
    dev = resolve_device(device, world)
    net = create(ckpt["model_name"], ckpt["num_classes"], input_size=size,
                 dropout=float(ckpt["config"].get("dropout", 0.5)), block_order=block_order_of(ckpt))
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{checkpoint_path(run_or_ckpt)}: weights do not fit model {ckpt['model_name']} "
                        f"({str(e).splitlines()[0][:160]})") from None
    if net.uses_saliency and store.saliency_problem is not None:
        raise UserError(store.no_maps_reason())
    if net.uses_saliency and not store.has_saliency:
        raise UserError(f"{store.path}: has no complete saliency maps, which model {net.variant} needs "
                        "(run: salclass saliency predict)")
    on_cuda = dev.type == "cuda"
    precision = resolve_precision(trained_precision(ckpt, dev), dev, say=say)
    channels_last = not on_cuda and cpu_channels_last(net.variant, precision)
    net = net.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loader = StoreLoader(store, batch_size, False, crop=size, mean_subtract=bool(ckpt.get("mean_subtract", False)),
                         with_saliency=net.uses_saliency, device=str(dev) if on_cuda else "cpu",
                         mean=ckpt.get("input_mean"), saliency_mean=ckpt.get("saliency_mean"))
    rt = Runtime(dev, world, precision, channels_last=channels_last, progress=progress)
    # Taken before the pass: a folder that cannot be written is refused before the computing, not after.
    with folder_lock(out_dir, exclusive=True):
        metrics, pred = evaluate(net, loader, rt, keep_predictions=True, desc="evaluate")

        order = np.argsort(pred["index"], kind="stable")
        pred = {k: v[order] for k, v in pred.items()}
        c = store.num_classes
        confusion = np.zeros((c, c), dtype=np.int64)
        np.add.at(confusion, (pred["label"], pred["top5"][:, 0]), 1)
        per_class = []
        for k, (wnid, name) in enumerate(store.classes):
            mine = pred["label"] == k
            n = int(mine.sum())
            per_class.append({"index": k, "wnid": wnid, "name": name, "count": n,
                              "top1": float(pred["correct1"][mine].mean()) if n else None,
                              "top5": float(pred["correct5"][mine].mean()) if n else None})
        summary = {
            "checkpoint": str(checkpoint_path(run_or_ckpt)),
            "checkpoint_sha256": ckpt.get(CHECKSUM_KEY) or content_digest(ckpt),
            "model": ckpt["model_name"], "epoch": int(ckpt["epoch"]),
            "precision": precision,
            "store": str(store.path), "count": int(len(pred["index"])),
            "top1": metrics["top1"], "top5": metrics["top5"], "loss": metrics["loss"],
            "per_class": per_class,
            "confusion": confusion.tolist(),
            "confusion_axes": "rows: true class, columns: predicted class (class order of per_class)",
        }
        result = write_evaluation(out_dir, summary, pred)
        result["out"] = str(out_dir)
    return result


def evaluate_cli(run: str, store: str, out: str | None = None, as_json: bool = False) -> int:
    r = evaluate_run(run, store, out)
    if as_json:
        print(json.dumps(r))
        return 0
    print(f"model {r['model']} (epoch {r['epoch']}) on {r['store']}: {r['count']} images")
    print(f"top-1 {r['top1']:.2%}   top-5 {r['top5']:.2%}   loss {r['loss']:.4f}")
    print(f"{'class':<32} {'images':>6} {'top-1':>7}")
    for c in r["per_class"]:
        acc = f"{c['top1']:.2%}" if c["top1"] is not None else "-"
        print(f"{c['name'][:32]:<32} {c['count']:>6} {acc:>7}")
    print(f"wrote {r['out']}/{EVAL_NAME} and {PREDICTIONS_NAME}")
    return 0
