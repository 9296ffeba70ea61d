"""Pre-train a saliency model's trunk as an image classifier.

    salclass saliency pretrain STORE --out RUN [--model fcn] [--config configs/saliency/pretrain.yaml]

OSIE's 450 training images are too few for a net to learn what objects look
like; the DeepGaze family borrows that from features trained on ImageNet. Here
the trunk of the saliency model (`SaliencyModel.trunk`: for fcn, the layers up
to 1/8 resolution) learns to tell the classes of a store's train split apart,
through a global average pool and one linear layer that are then thrown away;
`salclass saliency train --set init_trunk=TRUNK` starts from it.

Only the train split is read: the store's val split judges the classifiers
that later see this model's maps. The final epoch's accuracy on it is printed
and recorded for information and chooses nothing.

RUN is a run folder (salclass.run_folder): resolved settings, a
metrics line per epoch, the finished-run record and the trunk (TRUNK,
`RunFolder.trunk`), a typed checkpoint (`salclass.saliency_trunk`) written at
the end. An interrupted pre-training is started again in a new folder; there
is no --resume.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from salclass.data import Store
from salclass.errors import UserError
from salclass.io import atomic_torch_save
from salclass.lock import folder_lock
from salclass.saliency.models import create, trunk_checkpoint
from salclass.saliency.models.base import to_input
from salclass.run_folder import RunFolder
from salclass.saliency.trainer import lr_factor
from salclass.say import say
from salclass.settings import load_settings, save_settings, to_dict


@dataclass
class PretrainConfig:
    store: Path                   # a store folder (its train split is read) or one split of it
    out: Path
    model: str = "fcn"
    model_settings: dict = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.8    # one-cycle-like: a short warm-up, then cosine decay
    size: int = 128               # images resized to this square side...
    crop: int = 112               # ...then a random crop of this side, and a flip
    seed: int = 0
    threads: int = 1              # as in saliency training: one thread is faster on a shared 2-core machine

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (batch normalisation), got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 16 <= self.crop <= self.size:
            raise ValueError(f"crop must be between 16 and size ({self.size}), got {self.crop}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


def _open_train_split(path: Path) -> tuple[Store, Store | None]:
    """The store's train split, and its val split when there is one."""
    if (path / "train").is_dir():
        val = Store.open(path / "val") if (path / "val").is_dir() else None
        return Store.open(path / "train"), val
    split = Store.open(path)
    if split.split != "train":
        raise UserError(f"{path}: is the store's '{split.split}' split; pre-training reads the train split "
                        "(pass the store folder or its train split)")
    return split, None


def _batch(store: Store, idx: np.ndarray, size: int) -> torch.Tensor:
    """Rows `idx` of the store as float (B, 3, size, size) in [0, 1]."""
    order = np.argsort(idx)  # sorted reads from the memory map, then back to the drawn order
    rows = np.empty((len(idx), *store.images.shape[1:]), dtype=np.uint8)
    rows[order] = store.images[idx[order]]
    return to_input(rows, (size, size))


def _crop_flip(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """One random crop position for the batch (cheap), a flip per image."""
    i, j = (int(torch.randint(0, x.shape[-1] - crop + 1, (1,), generator=gen)) for _ in range(2))
    x = x[..., i:i + crop, j:j + crop]
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class _Classifier(nn.Module):
    def __init__(self, model, classes: int):
        super().__init__()
        self.model = model
        with torch.no_grad():
            channels = model.trunk_features(torch.zeros(2, 3, 32, 32)).shape[1]
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.trunk_features(x).mean(dim=(2, 3)))


def _accuracy(net: _Classifier, store: Store, cfg: PretrainConfig) -> float:
    """Top-1 on a split, centre crop of the resized images."""
    net.eval()
    correct = 0
    lo = (cfg.size - cfg.crop) // 2
    with torch.inference_mode():
        for start in tqdm(range(0, store.count, 256), desc=f"accuracy on {store.split}", unit="batch", leave=False):
            idx = np.arange(start, min(start + 256, store.count))
            x = _batch(store, idx, cfg.size)[..., lo:lo + cfg.crop, lo:lo + cfg.crop]
            correct += int((net(x).argmax(1).numpy() == np.asarray(store.labels[idx])).sum())
    return correct / store.count


def pretrain(cfg: PretrainConfig) -> Path:
    """Pre-train `cfg.model`'s trunk on the classes of `cfg.store`; returns the run folder."""
    with folder_lock(cfg.out, exclusive=True):
        return _pretrain_locked(cfg)


def _pretrain_locked(cfg: PretrainConfig) -> Path:
    out = Path(cfg.out)
    folder = RunFolder(out)
    if folder.config.exists():
        raise UserError(f"{out}: already holds a run (pre-training does not resume; use another --out)")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = create(cfg.model, **cfg.model_settings)
    if not model.trunk:
        raise UserError(f"saliency model '{cfg.model}' has no trunk to pre-train")
    train_split, val_split = _open_train_split(Path(cfg.store))
    if train_split.count < cfg.batch_size:
        raise UserError(f"{train_split.path}: {train_split.count} images, fewer than one batch ({cfg.batch_size})")
    with contextlib.ExitStack() as held:
        # Read-locked like classifier training's store: a `prepare --overwrite` of it is refused meanwhile.
        for split in (train_split, val_split):
            if split is not None:
                held.enter_context(folder_lock(split.path, exclusive=False))
        return _pretrain_net(cfg, model, train_split, val_split, folder)


def _pretrain_net(cfg: PretrainConfig, model, train_split: Store, val_split: Store | None, folder: RunFolder) -> Path:
    out = folder.path
    net = _Classifier(model, train_split.num_classes)
    save_settings(cfg, folder.config)

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = train_split.count // cfg.batch_size   # whole batches only: batch norm needs company
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total, round(cfg.warmup_epochs * steps_per_epoch)))
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = torch.from_numpy(np.asarray(train_split.labels, dtype=np.int64))
    for epoch in range(cfg.epochs):
        t0 = time.time()
        net.train()
        perm = torch.randperm(train_split.count, generator=gen).numpy()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for step in bar:
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = _crop_flip(_batch(train_split, idx, cfg.size), cfg.crop, gen)
            y = labels[idx]
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        if not math.isfinite(loss_sum):
            raise UserError(f"{out}: the loss became {loss_sum} in epoch {epoch + 1}; start again in another --out "
                            "with a lower lr")
        record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                  "train": {"loss": loss_sum / seen, "accuracy": correct / seen, "seconds": round(time.time() - t0, 2)}}
        folder.append_metrics(record)
        say(f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f}  accuracy {correct / seen:.3f}  "
                   f"({record['train']['seconds']:.0f} s)")
    result = {"epochs": cfg.epochs, "train_accuracy": correct / seen,
              "classes": [wnid for wnid, _ in train_split.classes], "store": str(train_split.path)}
    if val_split is not None:
        result["val_accuracy"] = _accuracy(net, val_split, cfg)
    atomic_torch_save(trunk_checkpoint(model, extra={"pretraining": result, "config": to_dict(cfg)}), folder.trunk)
    folder.write_done({"epochs": cfg.epochs, "result": result})
    return out


def pretrain_cli(store: str, out: str, model: str, config: str | None, sets: list[str]) -> int:
    cfg = load_settings(PretrainConfig, config, [f"store={store}", f"out={out}", f"model={model}", *sets])
    run = RunFolder(pretrain(cfg))
    result = run.read_done()["result"]
    val = f", val accuracy {result['val_accuracy']:.3f} (for information)" if "val_accuracy" in result else ""
    print(f"{run.path}: train accuracy {result['train_accuracy']:.3f}{val}; trunk in {run.trunk} "
          f"(train with --set init_trunk={run.trunk})")
    return 0


__all__ = ["PretrainConfig", "pretrain", "pretrain_cli"]
