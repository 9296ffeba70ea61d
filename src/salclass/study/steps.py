"""The study's calls into the other stages, through their public functions only.

Each function here does one step of a study and is a no-op when that step's
result is already complete in the study folder. What each step does is said
with `note`, the study's notice line.
"""

from __future__ import annotations

from pathlib import Path

from salclass.errors import UserError
from salclass.io import atomic_write_json
from salclass.say import say
from salclass.study.config import StudyConfig
from salclass.study.folder import PARAMS_TYPE, STORE_SUMMARY_TYPE, StudyFolder
from salclass.study.subset import make_subset


def note(msg: str) -> None:
    """One notice of the study on stderr, through salclass.say, marked as the study's."""
    say(f"[study] {msg}")


def _open(split_dir: Path):
    """The split, or None where there is none yet to use (absent, incomplete);
    an edited one stops the study rather than being packed again."""
    from salclass.checksum import ChecksumMismatch
    from salclass.data import Store

    try:
        return Store.open(split_dir)
    except ChecksumMismatch:
        raise
    except UserError:
        return None


def ensure_store(cfg: StudyConfig, study: StudyFolder) -> None:
    if cfg.data.store is not None:
        for split in (study.train_split, study.val_split):
            if _open(split) is None:
                raise UserError(f"data.store: {split} is not a complete store split (run salclass prepare)")
        note(f"store: using {study.store}")
        return
    if _open(study.train_split) is not None and _open(study.val_split) is not None:
        note(f"store: {study.store} is complete, reused")
        return
    from salclass.data.prepare import prepare

    src = cfg.data.source
    if cfg.data.is_subset:
        src = make_subset(cfg.data, study.source)
        note(f"store: packing a subset of {cfg.data.source} (links in {src})")
    else:
        note(f"store: packing {src}")
    for r in prepare(src, study.store, cfg.data.size, seed=cfg.data.seed, workers=cfg.data.workers):
        note(f"store: {r['split']}: found {r['found']} = stored {r['stored']} + rejected {r['rejected']}")
    for split in (study.train_split, study.val_split):
        if _open(split) is None:
            raise UserError(f"{split}: no such split after packing (the source needs train/ and val/)")


def ensure_maps(cfg: StudyConfig, study: StudyFolder) -> None:
    from salclass.saliency.predict import cpu_precision, model_identity, predict_into_store, same_model

    identity = model_identity(cfg.saliency.model)
    precision = None
    for split in (study.train_split, study.val_split):
        s = _open(split)
        if s is not None and s.has_saliency and same_model(s.saliency_model, identity):
            note(f"saliency: {split} has complete maps of {s.saliency_model}, reused")
            continue
        precision = precision or cpu_precision(cfg.saliency.precision)
        note(f"saliency: predicting maps for {split} with {cfg.saliency.model} in {precision}")
        predict_into_store(split, model=cfg.saliency.model, batch_size=cfg.saliency.batch_size, overwrite=False,
                           precision=precision)


def record_store(study: StudyFolder) -> None:
    """What the report says of the store (counts, classes), kept in the study
    folder so a copy of its records reports it without the store."""
    from salclass import checksum

    splits = {}
    for name, split in (("train", study.train_split), ("val", study.val_split)):
        s = _open(split)
        splits[name] = {"count": s.count, "size": s.size, "classes": [[w, n] for w, n in s.classes],
                        "mean": [float(m) for m in s.mean], "fingerprint": s.meta.get("fingerprint"),
                        "saliency_model": s.saliency_model}
    checksum.write_json(study.store_summary, {"type": STORE_SUMMARY_TYPE, "version": 1, **splits})


def record_params(cfg: StudyConfig, study: StudyFolder) -> None:
    """The parameter counts of the study's networks at its input size and class count."""
    from salclass.data import default_crop
    from salclass.models import describe_models, get_variant
    from salclass.models.params import BASELINE, params_report

    store = _open(study.train_split)
    size = default_crop(cfg.data.size)
    rep = params_report(size, len(store.classes))
    used: dict[str, list[str]] = {}
    for e in cfg.experiments:
        used.setdefault(get_variant(e.model).name, []).append(e.name)
    about = dict(describe_models())
    models = {}
    for name in [BASELINE] + [n for n in used if n != BASELINE]:
        models[name] = {"total": rep["variants"][name]["total"], "used_by": used.get(name, []),
                        "description": about.get(name, "")}
    atomic_write_json(study.params, {
        "type": PARAMS_TYPE, "version": 1, "input_size": size, "num_classes": len(store.classes),
        "baseline": BASELINE, "models": models, "thesis": rep.get("thesis", []),
    })


def record_saliency_metrics(cfg: StudyConfig, study: StudyFolder) -> None:
    """Score the saliency model on fixation data once (the table is kept in the study folder)."""
    if cfg.saliency.eval_data is None or study.saliency.is_file():
        return
    from salclass.study.saliency_eval import score

    note(f"saliency: scoring {cfg.saliency.model} on {cfg.saliency.eval_data} ({cfg.saliency.eval_split})")
    atomic_write_json(study.saliency, score(cfg.saliency))


def train_config(settings: dict):
    from salclass.settings import settings_from_dict
    from salclass.training import TrainConfig

    return settings_from_dict(TrainConfig, settings)


def train(settings: dict) -> None:
    from salclass.training import train as train_run

    train_run(train_config(settings), resume=True)


def evaluate(run_dir: Path, val_split: Path, device: str = "auto") -> None:
    from salclass.training import evaluate_run

    evaluate_run(run_dir, val_split, device=device)
