"""How long would a study take? Its work in floating-point operations, divided by
the rate at which another, finished study's runs did that work on the same
machine.

Per-run images/s of short runs on a shared machine are noisy, so the rate is
pooled: every run's images (from its per-epoch metrics, train and validation separately)
times its network's FLOPs per image, over every run's seconds. The work of the
target study is each experiment's epochs x images x FLOPs per image of its
network (counted by torch's FLOP counter: forward and backward for training,
forward for validation).

    salclass study --config configs/study/thesis-128.yaml --out X --estimate-from out/quick
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from salclass.errors import UserError
from salclass.say import warn
from salclass.study.config import StudyConfig
from salclass.study.folder import StudyFolder, load_study_config
from salclass.study.subset import choose


@cache
def gflop_per_image(model: str, crop: int, num_classes: int, train: bool) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from salclass.models import create

    net = create(model, num_classes, input_size=crop)
    net.train(train)
    x, s = torch.zeros(2, 3, crop, crop), torch.zeros(2, 1, crop, crop)
    with FlopCounterMode(display=False) as counter:
        if train:
            net(x, s).sum().backward()
        else:
            with torch.no_grad():
                net(x, s)
    return counter.get_total_flops() / 2 / 1e9


def _crop(size: int) -> int:
    from salclass.data import default_crop

    return default_crop(size)


SHARED_SPREAD = 2.0  # runs' training rates further apart than this say the machine was shared while they ran


def measured_rate(root: Path, size: int) -> tuple[float, float, float, list[float]]:
    """(train GFLOP/s, validation GFLOP/s, seconds measured) pooled over every
    epoch of every run of study `root`, and each run's own training GFLOP/s."""
    cfg = load_study_config(root)
    if cfg.data.size != size:
        raise UserError(f"{root} measured images of {cfg.data.size} px, this study uses {size} px; "
                        "estimate from a study at the same size")
    study = StudyFolder(root, cfg)
    from salclass.data import Store

    n_classes = len(Store.open(study.val_split).classes)
    work = {True: 0.0, False: 0.0}
    seconds = {True: 0.0, False: 0.0}
    per_run = []
    for e in cfg.experiments:
        for seed in cfg.seeds:
            run_work = run_seconds = 0.0
            for row in study.run_folder(e, seed).read_metrics():
                for train, part in ((True, row.get("train")), (False, row.get("val"))):
                    if not isinstance(part, dict) or not {"images", "seconds"} <= set(part):
                        raise UserError(f"{study.run_dir(e, seed)}: epoch {row['epoch']}'s metrics lack images/seconds")
                    g = gflop_per_image(e.model, _crop(cfg.data.size), n_classes, train)
                    work[train] += part["images"] * g
                    seconds[train] += part["seconds"]
                    if train:
                        run_work += part["images"] * g
                        run_seconds += part["seconds"]
            if run_seconds > 0:
                per_run.append(run_work / run_seconds)
    if not seconds[True] or not seconds[False]:
        raise UserError(f"{root}: no finished epochs to measure speed from")
    return work[True] / seconds[True], work[False] / seconds[False], seconds[True] + seconds[False], per_run


def image_counts(cfg: StudyConfig) -> tuple[int, int]:
    """Train and validation images the study would use (before any the store rejects)."""
    if cfg.data.store is not None:
        from salclass.data import Store

        return Store.open(cfg.data.store / "train").count, Store.open(cfg.data.store / "val").count
    chosen = choose(cfg.data)
    return tuple(sum(len(f) for f in chosen.get(split, {}).values()) for split in ("train", "val"))


def estimate(cfg: StudyConfig, train_rate: float, val_rate: float) -> tuple[list[list[str]], float, float, int, int]:
    """Rows per experiment, total seconds, total PFLOP, and the image counts."""
    n_train, n_val = image_counts(cfg)
    crop = _crop(cfg.data.size)
    n_classes = len(choose(cfg.data)["train"]) if cfg.data.source is not None else 1000
    rows, total, total_gflop = [], 0.0, 0.0
    for e in cfg.experiments:
        epochs, _ = cfg.schedule(e)
        evals = epochs + 1 + (1 if e.init_from else 0)  # every epoch, the final evaluation, a fine-tune's start
        g_train = gflop_per_image(e.model, crop, n_classes, True)
        g_val = gflop_per_image(e.model, crop, n_classes, False)
        work_train = len(cfg.seeds) * epochs * n_train * g_train
        work_val = len(cfg.seeds) * evals * n_val * g_val
        seconds = work_train / train_rate + work_val / val_rate
        total += seconds
        total_gflop += work_train + work_val
        rows.append([e.name, e.model, str(epochs), str(len(cfg.seeds)), f"{g_train:.2f}",
                     f"{(work_train + work_val) / 1e6:.2f}", f"{seconds / 3600:.1f}"])
    return rows, total, total_gflop / 1e6, n_train, n_val


def estimate_cli(cfg: StudyConfig, speeds_root: str) -> int:
    train_rate, val_rate, measured, per_run = measured_rate(Path(speeds_root), cfg.data.size)
    rows, total, pflop, n_train, n_val = estimate(cfg, train_rate, val_rate)
    header = ["experiment", "model", "epochs", "seeds", "train GFLOP/img", "PFLOP", "hours"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    low, high = min(per_run), max(per_run)
    print(f"{cfg.name}: {n_train} train / {n_val} val images; rate measured by the runs of {speeds_root} "
          f"({measured:.0f} s): training {train_rate:.1f} GFLOP/s (runs from {low:.1f} to {high:.1f}), "
          f"validation {val_rate:.1f} GFLOP/s")
    if high > SHARED_SPREAD * low:
        # The networks differ little in GFLOP/s on one machine (docs/training.md), so a wide
        # spread is the load of other jobs, and the pooled rate carries it into every hour below.
        warn(f"the runs of {speeds_root} trained at rates {high / low:.1f}x apart: the machine was "
             "probably shared while they ran, and these hours are only as good as that rate")
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"total: {pflop:.1f} PFLOP, {total / 3600:.0f} hours ({total / 86400:.1f} days) of training and "
          "evaluation at that rate, not counting packing and saliency prediction")
    return 0
