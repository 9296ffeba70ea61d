"""Train a saliency model on eye-fixation data.

`salclass saliency train --data DIR --model NAME --out RUN` loads the
training and validation images of the fixed split into memory once (resized to
the model's input size, with their ground-truth densities), then trains with
random zoom/shift/flip (applied to image and map alike) and colour jitter.

RUN is a run folder like a classifier's, written through its owner
(salclass.run_folder): resolved settings, one metrics line per epoch,
the latest epoch's checkpoint with optimizer, scheduler and RNG state (for
--resume), the finished-run record, and here also the best model
(`RunFolder.best`: the model of the epoch with the best validation score,
loadable by `load_predictor`).

`precision` works as in classifier training (salclass.precision): bf16
autocast around the network where the CPU has native bf16, float32 weights,
optimizer state and loss; the saved settings and the checkpoint record the
precision used, and a resumed run keeps it. The best model holds float32 weights either way.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from salclass.errors import UserError
from salclass.io import atomic_torch_save, load_checkpoint
from salclass.lock import folder_lock
from salclass.precision import PrecisionSetting, autocast
from salclass.run_folder import RunFolder, run_precision, settings_difference
from salclass.saliency.fixations import FixationDataset, ReadOptions, open_fixation_data
from salclass.saliency.models import create, load_trunk, model_checkpoint
from salclass.saliency.models.base import SaliencyModel, area_preserving_size, to_input
from salclass.say import say
from salclass.settings import load_settings, save_settings, to_dict

RUN_CHECKPOINT_TYPE = "salclass.saliency_run"
RUN_CHECKPOINT_VERSION = 2  # 2: `epoch` is the number of completed epochs (1 stored it minus one)
CPU = torch.device("cpu")  # saliency training runs on the CPU


@dataclass
class Augment:
    flip: bool = True
    min_scale: float = 0.8        # zoom in to a crop of at least this fraction of each side
    aspect: float = 0.0           # stretch one side against the other by up to this factor (0.25: 4:3 <-> 1:1)
    brightness: float = 0.3       # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale: float = 0.1        # probability
    low_res: float = 0.0          # resample the image (not the map) through a side up to 1 + this times smaller
    scales: float = 0.0           # train each batch at a size up to 1 + this times smaller or larger

    def __post_init__(self):
        if not 0.1 <= self.min_scale <= 1.0:
            raise ValueError(f"augment.min_scale must be in [0.1, 1], got {self.min_scale}")
        if not 0.0 <= self.aspect <= 1.0:
            raise ValueError(f"augment.aspect must be in [0, 1], got {self.aspect}")
        for k in ("low_res", "scales"):
            if not 0.0 <= getattr(self, k) <= 3.0:
                raise ValueError(f"augment.{k} must be in [0, 3], got {getattr(self, k)}")
        for k in ("brightness", "contrast", "saturation", "grayscale"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"augment.{k} must be in [0, 1], got {getattr(self, k)}")


@dataclass
class SaliencyTrainConfig:
    data: Path
    model: str
    out: Path
    model_settings: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    seed: int = 0
    threads: int = 1   # on a shared 2-core machine one thread is faster than two fighting for it
    select_by: Literal["loss", "nss", "cc", "auc_judd"] = "nss"
    augment: Augment = field(default_factory=Augment)
    read: ReadOptions = field(default_factory=ReadOptions)
    precision: PrecisionSetting = "auto"
    init_trunk: Path | None = None   # a trunk checkpoint (salclass saliency pretrain) to start from

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


@dataclass
class _Split:
    images: torch.Tensor      # uint8 (N, h, w, 3)
    density: torch.Tensor     # float32 (N, 1, h, w), each summing to 1


@dataclass
class _Truth:
    """Validation ground truth at each image's own resolution, for the metrics."""
    density: list[np.ndarray]
    points: list[np.ndarray] | None   # None where the data has maps but no fixation points


def _training_size(model: SaliencyModel, ds: FixationDataset) -> tuple[int, int]:
    """One input size for the whole set: the model's size for the commonest image size."""
    sizes = Counter(ds.image_size(i) for i in range(len(ds)))
    (h, w), _ = sizes.most_common(1)[0]
    return model.input_size(h, w)


def _preload(ds: FixationDataset, size: tuple[int, int], what: str) -> _Split:
    imgs = torch.empty((len(ds), size[0], size[1], 3), dtype=torch.uint8)
    dens = torch.empty((len(ds), 1, size[0], size[1]), dtype=torch.float32)
    for i in tqdm(range(len(ds)), desc=f"loading {what}", unit="img", leave=False):
        x = to_input(ds.image(i)[None], size)
        imgs[i] = (x[0].permute(1, 2, 0) * 255.0).round_().to(torch.uint8)
        d = torch.from_numpy(ds.density(i, size)).double()
        dens[i, 0] = (d / d.sum().clamp_min(1e-12)).float()
    return _Split(imgs, dens)


def _truth(ds: FixationDataset) -> _Truth:
    points = [ds.fixation_points(i) for i in range(len(ds))] if ds.has_fixations else None
    return _Truth([ds.density(i) for i in range(len(ds))], points)


def _augment(x: torch.Tensor, dens: torch.Tensor, aug: Augment, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Same random zoom, stretch, shift and flip for image and density; colour jitter on the image."""
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    s = uniform(aug.min_scale, 1.0)
    # A log-uniform stretch, applied as a narrower crop of one side, so the
    # net sees other aspect ratios than the training data's without padding.
    # Drawn only when asked for, so that runs without it keep their random stream.
    stretch = (torch.exp(uniform(-math.log1p(aug.aspect), math.log1p(aug.aspect))) if aug.aspect > 0
               else torch.ones(b))
    sx = s * torch.clamp(stretch, max=1.0)
    sy = s * torch.clamp(1.0 / stretch, max=1.0)
    tx = (1 - sx) * uniform(-1.0, 1.0)
    ty = (1 - sy) * uniform(-1.0, 1.0)
    flip = torch.where(torch.rand(b, generator=gen) < (0.5 if aug.flip else 0.0), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    both = torch.cat([x, dens], dim=1)
    grid = F.affine_grid(theta, list(both.shape), align_corners=False)
    both = F.grid_sample(both, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x, dens = both[:, :3], both[:, 3:]

    view = (b, 1, 1, 1)
    x = x * uniform(1 - aug.brightness, 1 + aug.brightness).view(view)
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    mean = gray.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * uniform(1 - aug.contrast, 1 + aug.contrast).view(view) + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    sat = uniform(1 - aug.saturation, 1 + aug.saturation)
    sat = torch.where(torch.rand(b, generator=gen) < aug.grayscale, torch.zeros_like(sat), sat)
    x = gray + (x - gray) * sat.view(view)
    if aug.low_res > 0:
        # Stores hold small images (ImageNet's, squashed to 128-227 px), far less
        # sharp than OSIE's 800 px photographs brought down to the training size:
        # a net that only knows crisp edges meets blur there.
        f = float(torch.exp(torch.rand(1, generator=gen) * math.log1p(aug.low_res)))
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(8, round(h / f)), max(8, round(w / f))), mode="bilinear",
                              align_corners=False, antialias=True)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0), dens


def _rescaled(x: torch.Tensor, scales: float, gen: torch.Generator) -> torch.Tensor:
    """The batch at one size drawn log-uniformly between 1 / (1 + scales) and
    1 + scales times its own, aspect kept (the model's stride respected), so
    that the net meets objects and the frame at the many sizes of real images."""
    if scales <= 0:
        return x
    f = float(torch.exp((2 * torch.rand(1, generator=gen) - 1) * math.log1p(scales)))
    h, w = x.shape[-2:]
    size = area_preserving_size(h, w, int(h * w * f * f), 8)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=f < 1)


def _target(dens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    t = F.interpolate(dens, size=size, mode="area")[:, 0]
    return t / t.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _validate(model: SaliencyModel, split: _Split, truth: _Truth, batch_size: int, precision: str) -> dict:
    from salclass.saliency import metrics

    model.eval()
    losses, nss, cc, auc = [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(truth.density), batch_size):
            imgs = split.images[start:start + batch_size]
            x = imgs.permute(0, 3, 1, 2).float().div_(255.0)
            with autocast(CPU, precision):
                out = model(x)
                maps = model.raw(x)
            target = _target(split.density[start:start + batch_size], model.target_size(*x.shape[-2:]))
            losses.append(float(model.loss(out.float(), target)) * len(x))
            maps = maps.float().unsqueeze(1)
            for j in range(len(x)):
                gt = truth.density[start + j]
                m = F.interpolate(maps[j:j + 1], size=gt.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
                cc.append(metrics.cc(m, gt))
                if truth.points is not None:
                    nss.append(metrics.nss(m, truth.points[start + j]))
                    auc.append(metrics.auc_judd(m, truth.points[start + j]))
    out = {"loss": sum(losses) / len(truth.density), "cc": float(np.mean(cc))}
    if truth.points is not None:
        out.update(nss=float(np.mean(nss)), auc_judd=float(np.mean(auc)))
    return out


def _rng_state(gen: torch.Generator) -> dict:
    # All randomness of training comes from torch (initialisation, order, augmentation).
    return {"torch": torch.get_rng_state(), "augment": gen.get_state()}


@dataclass
class _Fit:
    """The network and what steps it: optimizer, schedule, the augmentation's generator."""
    model: SaliencyModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator
    steps_per_epoch: int


@dataclass
class _Data:
    train: _Split
    val: _Split
    val_truth: _Truth


def train(cfg: SaliencyTrainConfig, resume: bool = False) -> Path:
    """Train `cfg.model` on `cfg.data`; returns the run folder (held with a
    folder lock while training: one writer per run folder)."""
    with folder_lock(cfg.out, exclusive=True):
        return _train_locked(cfg, resume)


def _train_locked(cfg: SaliencyTrainConfig, resume: bool) -> Path:
    folder = RunFolder(cfg.out)
    state = _resumed_state(folder, resume)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    trained = state.get("precision", "fp32") if state is not None else None  # runs before `precision`: fp32
    precision = run_precision(cfg.precision, trained, CPU, str(folder.checkpoint))
    cfg = dataclasses.replace(cfg, precision=precision)  # the run records what it used, not `auto`
    model, train_ds, val_ds = _model_and_data(cfg, resume)
    if state is not None:
        _check_same_run(state, cfg, model, folder)
    folder.path.mkdir(parents=True, exist_ok=True)
    save_settings(cfg, folder.config)
    size = _training_size(model, train_ds)
    data = _Data(_preload(train_ds, size, "train"), _preload(val_ds, size, "val"), _truth(val_ds))
    fit = _fit(cfg, model, len(train_ds))
    start_epoch, best = 0, None
    if state is not None:
        start_epoch, best = _restore(state, fit)
        folder.truncate_metrics(start_epoch)
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        record = _train_epoch(cfg, fit, data, epoch)
        best = _save_epoch(cfg, fit, folder, record, best)
        scores = "  ".join(f"{k} {v:.4f}" for k, v in record["val"].items())
        say(f"epoch {epoch}: train loss {record['train']['loss']:.4f}  val {scores}  ({record['seconds']:.0f} s)")
    folder.write_done({"epochs": cfg.epochs, "best": best})
    return folder.path


def _resumed_state(folder: RunFolder, resume: bool) -> dict | None:
    """The checkpoint a resumed run continues from (None for a new run), after
    checking the folder holds what the command expects."""
    if resume:
        if not folder.checkpoint.is_file():
            raise UserError(f"{folder.path}: nothing to resume (no {folder.checkpoint.name})")
        return load_checkpoint(folder.checkpoint, RUN_CHECKPOINT_TYPE, max_version=RUN_CHECKPOINT_VERSION)
    if folder.config.exists():
        raise UserError(f"{folder.path}: already holds a run (use --resume to continue it, or another --out)")
    return None


def _model_and_data(cfg: SaliencyTrainConfig, resume: bool) -> tuple[SaliencyModel, FixationDataset,
                                                                      FixationDataset]:
    """The network (a new run's from `init_trunk` where given) and the train and val splits, checked."""
    model = create(cfg.model, **cfg.model_settings)
    if not model.trainable:
        raise UserError(f"saliency model '{cfg.model}' has no weights to train")
    if cfg.init_trunk is not None and not resume:
        load_trunk(model, cfg.init_trunk)
    ds = open_fixation_data(cfg.data, cfg.read)
    train_ds, val_ds = ds.split("train"), ds.split("val")
    if cfg.select_by in ("nss", "auc_judd") and not ds.has_fixations:
        raise UserError(f"{cfg.data}: has no fixation points, so select_by={cfg.select_by} is impossible "
                        "(use cc or loss)")
    if cfg.augment.scales > 0 and cfg.model != "fcn":
        raise UserError(f"augment.scales needs a fully-convolutional model (fcn); '{cfg.model}' takes one input size")
    return model, train_ds, val_ds


def _check_same_run(state: dict, cfg: SaliencyTrainConfig, model: SaliencyModel, folder: RunFolder) -> None:
    if state["architecture"] != cfg.model or state["settings"] != model.settings():
        raise UserError(f"{folder.checkpoint}: was trained as '{state['architecture']}' {state['settings']}, "
                        f"the config asks for '{cfg.model}' {model.settings()}")
    # The run folder's one rule: anything but how fast, how long and where must match, the
    # schedule (lr, warm-up, batch size) included.
    diff = settings_difference(state["config"], to_dict(cfg))
    if diff:
        raise UserError(f"{folder.path}: holds a run with other settings ({diff}); use another --out")


def _fit(cfg: SaliencyTrainConfig, model: SaliencyModel, train_count: int) -> _Fit:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(train_count / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total, cfg.warmup_epochs * steps_per_epoch))
    return _Fit(model, opt, sched, torch.Generator().manual_seed(cfg.seed), steps_per_epoch)


def _restore(state: dict, fit: _Fit) -> tuple[int, dict | None]:
    """(the completed epochs, the best so far) of a resumed run, its weights,
    optimizer, schedule and random streams restored."""
    fit.model.load_state_dict(state["model"])
    fit.opt.load_state_dict(state["optimizer"])
    fit.sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    fit.gen.set_state(state["rng"]["augment"])
    # Version 1 counted epochs from 0; version 2 holds the number of completed epochs, like the classifier's.
    return state["epoch"] + (1 if state["version"] == 1 else 0), state["best"]


def _train_epoch(cfg: SaliencyTrainConfig, fit: _Fit, data: _Data, epoch: int) -> dict:
    """Epoch `epoch` (counted from 1) and its validation; its metrics line."""
    t0 = time.time()
    model, precision = fit.model, cfg.precision
    model.train()
    count = len(data.train.images)
    perm = torch.randperm(count, generator=fit.gen)
    total_loss = 0.0
    bar = tqdm(range(fit.steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
    for step in bar:
        idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        x = data.train.images[idx].permute(0, 3, 1, 2).float().div_(255.0)
        x, dens = _augment(x, data.train.density[idx], cfg.augment, fit.gen)
        x = _rescaled(x, cfg.augment.scales, fit.gen)
        with autocast(CPU, precision):
            output = model(x)
        loss = model.loss(output.float(), _target(dens, model.target_size(*x.shape[-2:])))
        fit.opt.zero_grad(set_to_none=True)
        loss.backward()
        fit.opt.step()
        fit.sched.step()
        total_loss += loss.item() * len(idx)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    train_seconds = time.time() - t0
    val = _validate(model, data.val, data.val_truth, cfg.batch_size, precision)
    return {"epoch": epoch, "lr": fit.opt.param_groups[0]["lr"],
            "train": {"loss": total_loss / count, "seconds": round(train_seconds, 2)},
            "val": val, "seconds": round(time.time() - t0, 2)}


def _save_epoch(cfg: SaliencyTrainConfig, fit: _Fit, folder: RunFolder, record: dict, best: dict | None) -> dict:
    """The model as the best one when it is, the metrics line, then the checkpoint
    (metrics before the checkpoint, as in every run folder); the best so far."""
    epoch, val = record["epoch"], record["val"]
    score = val[cfg.select_by]
    higher_better = cfg.select_by != "loss"
    if best is None or (score > best["score"] if higher_better else score < best["score"]):
        best = {"epoch": epoch, "score": score, "select_by": cfg.select_by, "val": val}
        atomic_torch_save(model_checkpoint(fit.model, extra={"epoch": epoch, "val": val, "config": to_dict(cfg)}),
                          folder.best)
    folder.append_metrics(record)
    atomic_torch_save({
        "type": RUN_CHECKPOINT_TYPE, "version": RUN_CHECKPOINT_VERSION, "architecture": cfg.model,
        "settings": fit.model.settings(), "model": fit.model.state_dict(), "optimizer": fit.opt.state_dict(),
        "scheduler": fit.sched.state_dict(), "rng": _rng_state(fit.gen), "epoch": epoch, "best": best,
        "config": to_dict(cfg), "precision": cfg.precision,
    }, folder.checkpoint)
    return best


def train_cli(data: str, model: str, out: str, config: str | None, sets: list[str], resume: bool) -> int:
    overrides = [f"data={data}", f"model={model}", f"out={out}", *sets]
    cfg = load_settings(SaliencyTrainConfig, RunFolder(out).settings_base(config, resume), overrides)
    run = RunFolder(train(cfg, resume=resume))
    best = run.read_done()["best"]
    print(f"{run.path}: best epoch {best['epoch']} ({best['select_by']} {best['score']:.4f}), model in {run.best}")
    return 0


__all__ = ["Augment", "SaliencyTrainConfig", "lr_factor", "train", "train_cli"]
