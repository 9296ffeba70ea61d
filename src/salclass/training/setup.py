"""Everything a classifier run needs before its first epoch: the run folder
checked against the config, the stores, the network (fresh, resumed or grown
by weight surgery), its placement on the device, the optimizer and schedule
restored, the loaders, and the run folder opened for writing.

`prepare` puts them together into a `Session`, which salclass.training.loop
trains.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from salclass.errors import UserError
from salclass.io import atomic_write_text
from salclass.lock import LOCK_NAME
from salclass.precision import Precision
from salclass.run_folder import CONFIG_NAME, LOG_NAME, RunFolder, run_precision, settings_difference
from salclass.say import say
from salclass.settings import save_settings, to_dict
from salclass.training.checkpoint import block_order_of, load_classifier, set_rng_state, trained_precision
from salclass.training.config import TrainConfig
from salclass.training.distributed import World
from salclass.training.engine import AttentionLoss, Runtime
from salclass.training.memory_format import cpu_channels_last
from salclass.training.optim import sgd


@dataclass
class Session:
    """One run, set up: what its epochs read and write."""
    cfg: TrainConfig
    world: World
    folder: RunFolder
    net: torch.nn.Module          # the network whose weights are saved
    model: torch.nn.Module        # the module called: `net`, wrapped for DDP or compiled where asked
    rt: Runtime
    optimizer: torch.optim.Optimizer
    scheduler: object
    start_epoch: int              # the last completed epoch (0 for a new run)
    train_loader: object
    val_loader: object
    attention: AttentionLoss | None
    writer: object | None         # the TensorBoard writer (rank 0, when asked for)
    crop: int
    train_store: object
    identity: dict                # the stores' identity, kept in every checkpoint
    precision: Precision


def default_workers(device_type: str, threads: int) -> int:
    """Loader threads when the config leaves `workers` unset. On CPU one
    thread makes the next batch during the step (measured on the 2-core VM,
    RGBS: 0.2-0.3% of each epoch waiting for data with it, 0.4-0.7% without).
    On CUDA the threads gather and pin uint8 rows; a few keep ahead of the GPU."""
    return min(6, threads) if device_type == "cuda" else 1


def existing_run(cfg: TrainConfig, folder: RunFolder, resume: bool) -> tuple[dict | None, dict | None]:
    """(the finished marker, checkpoint) found in the run folder, after checking
    they belong to this config. Raises UserError for a folder that is not a run
    or a run this config cannot continue."""
    out = folder.path
    if out.exists() and not out.is_dir():
        raise UserError(f"out: {out} exists and is not a folder")
    # A parallel study opens the run's log before training starts.
    foreign = any(p.name not in (LOCK_NAME, LOG_NAME) for p in out.iterdir()) if out.is_dir() else False
    if foreign and not folder.config.is_file():
        raise UserError(f"out: {out} is not empty and holds no run ({CONFIG_NAME} missing); choose another folder")
    done = folder.read_done() if folder.done.is_file() else None
    ckpt = load_classifier(folder.checkpoint) if folder.checkpoint.is_file() else None
    saved = ckpt["config"] if ckpt is not None else None
    if saved is not None:
        diff = settings_difference(saved, to_dict(cfg))
        if diff:
            raise UserError(f"out: {out} holds a run with other settings ({diff}); choose another out folder")
    if ckpt is not None and done is None and not resume:
        raise UserError(f"out: {out} holds an unfinished run (epoch {ckpt['epoch']} of {saved['epochs']}); "
                        "pass --resume to continue it, or choose another out folder")
    return done, ckpt


def prepare(cfg: TrainConfig, world: World, device: torch.device, folder: RunFolder, done: dict | None,
            ckpt: dict | None) -> Session:
    """Build, place and restore the run; open its folder for writing (rank 0)."""
    from salclass.data import default_crop

    train_store, val_store = _open_stores(cfg)
    crop = cfg.crop or default_crop(train_store.size)
    if crop > train_store.size or crop > val_store.size:
        raise UserError(f"crop: {crop} is larger than the store's images ({train_store.size}px)")
    net, report = _build_model(cfg, train_store.num_classes, crop, ckpt, folder.checkpoint, train_store)
    needs_saliency, identity = _check_stores(cfg, train_store, val_store, net, ckpt)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world.local_world_size)
    torch.set_num_threads(threads)
    precision = run_precision(cfg.precision, trained_precision(ckpt, device) if ckpt is not None else None, device,
                              f"the run in {cfg.out}")
    net, model, rt = _place(net, cfg, world, device, precision)
    optimizer, scheduler, start_epoch = _restore(net, cfg, ckpt, world)
    train_loader, val_loader = _loaders(cfg, train_store, val_store, crop, needs_saliency, world, device, threads)
    attention = None
    if cfg.attention.enabled:
        offset = float(train_store.saliency_mean or 0.0) if cfg.mean_subtract else 0.0
        attention = AttentionLoss(net, cfg.attention.layer, cfg.attention.beta, offset)
    writer = _open_folder(cfg, folder, world, start_epoch, done, report, precision)
    where = f"{device.type}" + (f" x{world.world_size} processes" if world.distributed else "")
    say(f"training {net.variant} on {cfg.store} ({train_store.count} train / {val_store.count} val images, "
        f"{train_store.num_classes} classes, crop {crop}) for epochs {start_epoch + 1}..{cfg.epochs} on {where} "
        f"({threads} threads, {precision}{', channels-last' if rt.channels_last else ''}) -> {folder.path}")
    return Session(cfg, world, folder, net, model, rt, optimizer, scheduler, start_epoch, train_loader, val_loader,
                   attention, writer, crop, train_store, identity, precision)


def _store_identity(train_store, val_store, needs_saliency: bool) -> dict:
    return {
        "train_count": train_store.count, "val_count": val_store.count, "size": train_store.size,
        "classes": [w for w, _ in train_store.classes],
        "train_fingerprint": train_store.meta.get("fingerprint"), "val_fingerprint": val_store.meta.get("fingerprint"),
        "saliency_model": train_store.saliency_model if needs_saliency else None,
    }


def _open_stores(cfg: TrainConfig):
    from salclass.data import Store

    root = Path(cfg.store)
    if not root.is_dir():
        raise UserError(f"store: {root}: no such store folder (expected a store root with train/ and val/)")
    train, val = Store.open(root / "train"), Store.open(root / "val")
    for s in (train, val):
        s.verify()
    if [w for w, _ in train.classes] != [w for w, _ in val.classes]:
        raise UserError(f"store: {root}: train/ and val/ have different classes")
    return train, val


def _build_model(cfg: TrainConfig, num_classes: int, crop: int, ckpt: dict | None, ckpt_path: Path, train_store):
    """The network: fresh, from the run's checkpoint, or grown from `init_from`
    by weight surgery (then also the surgery's report)."""
    from salclass.models import create, transplant

    torch.manual_seed(cfg.seed)
    net = create(cfg.model, num_classes, input_size=crop, dropout=cfg.dropout, block_order=cfg.block_order)
    if ckpt is not None:
        _check_compatible(ckpt, net, num_classes, crop, ckpt_path)
        net.load_state_dict(ckpt["model"])
        return net, None
    if cfg.init_from is None:
        return net, None
    base = load_classifier(cfg.init_from)
    if base["num_classes"] != num_classes or base["input_size"] != crop:
        raise UserError(f"init_from: {cfg.init_from} was trained for {base['num_classes']} classes at "
                        f"{base['input_size']}px; this run has {num_classes} classes at {crop}px")
    base_classes = base.get("classes")
    if base_classes is not None and [c[0] for c in base_classes] != [w for w, _ in train_store.classes]:
        raise UserError(f"init_from: {cfg.init_from} was trained on other classes than {cfg.store}")
    if block_order_of(base) != cfg.block_order:
        raise UserError(f"init_from: {cfg.init_from} was trained with block order {block_order_of(base)}, "
                        f"this run uses {cfg.block_order}; its weights would not mean the same")
    return net, transplant(base["model"], net, init=cfg.init_new, seed=cfg.seed)


def _check_compatible(ckpt: dict, net, num_classes: int, crop: int, path: Path) -> None:
    if ckpt["model_name"] != net.variant:
        raise UserError(f"{path}: is a checkpoint of model {ckpt['model_name']}, this run builds {net.variant}")
    if ckpt["num_classes"] != num_classes or ckpt["input_size"] != crop:
        raise UserError(f"{path}: was trained for {ckpt['num_classes']} classes at {ckpt['input_size']}px, "
                        f"this run has {num_classes} classes at {crop}px")


def _check_stores(cfg: TrainConfig, train_store, val_store, net, ckpt: dict | None) -> tuple[bool, dict]:
    """(whether the run reads maps, the stores' identity), after checking the maps
    exist where needed and that a resumed run has the store it began with."""
    needs_saliency = bool(net.uses_saliency or cfg.attention.enabled)
    for s in (train_store, val_store):
        if needs_saliency and not s.has_saliency:
            why = f"model {net.variant}" if net.uses_saliency else "attention transfer"
            if s.saliency_problem is not None:
                raise UserError(f"store: {s.no_maps_reason()} ({why} needs them)")
            raise UserError(f"store: {s.path} has no complete saliency maps, which {why} needs "
                            f"(run: salclass saliency predict {cfg.store})")
    identity = _store_identity(train_store, val_store, needs_saliency)
    if ckpt is not None and ckpt.get("store_identity", identity) != identity:
        was = ckpt["store_identity"]
        key = next(k for k in identity if identity[k] != was.get(k))
        raise UserError(f"store: {cfg.store} is not the store this run was trained on ({key} differs); "
                        "resume with the same store")
    return needs_saliency, identity


def _place(net, cfg: TrainConfig, world: World, device: torch.device, precision: Precision):
    """(the network on its device, the module to call: wrapped for DDP or
    compiled where asked, the engine's Runtime)."""
    on_cuda = device.type == "cuda"
    if on_cuda:
        # Fixed input shapes: let cuDNN pick its fastest kernels once.
        torch.backends.cudnn.benchmark = True
    channels_last = cfg.channels_last if on_cuda else cpu_channels_last(net.variant, precision)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    model = net
    if world.distributed:
        if on_cuda and cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            net = model
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if cfg.compile:
        model = torch.compile(model)
    rt = Runtime(device, world, precision, channels_last=channels_last, progress=cfg.progress,
                 check_every=25 if on_cuda else 1)
    return net, model, rt


def _restore(net, cfg: TrainConfig, ckpt: dict | None, world: World):
    """(optimizer, scheduler, the last completed epoch), with momentum, schedule
    and RNG states restored from the checkpoint when resuming."""
    optimizer = sgd(net, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.decay_on)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.lr_gamma)
    if ckpt is None:
        # Same initial weights on every rank (seeded when built), different dropout masks.
        torch.manual_seed(cfg.seed + world.rank)
        return optimizer, scheduler, 0
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    start_epoch = int(ckpt["epoch"])
    states = ckpt.get("rng") or []
    if len(states) == world.world_size:
        set_rng_state(states[world.rank])
    else:
        torch.manual_seed(cfg.seed + 1000003 * (start_epoch + 1) + world.rank)
        say(f"note: the checkpoint holds RNG states of {len(states)} processes, this run has "
            f"{world.world_size}; dropout draws differ from the uninterrupted run")
    return optimizer, scheduler, start_epoch


def _loaders(cfg: TrainConfig, train_store, val_store, crop: int, needs_saliency: bool, world: World,
             device: torch.device, threads: int):
    from salclass.data import StoreLoader

    on_cuda = device.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else default_workers(device.type, threads)
    per_rank = cfg.batch_size // world.world_size
    common = dict(crop=crop, seed=cfg.seed, mean_subtract=cfg.mean_subtract, with_saliency=needs_saliency,
                  rank=world.rank, world_size=world.world_size, device=str(device) if on_cuda else "cpu",
                  workers=workers, mean=train_store.mean, saliency_mean=train_store.saliency_mean)
    return StoreLoader(train_store, per_rank, True, **common), StoreLoader(val_store, per_rank, False, **common)


def _open_folder(cfg: TrainConfig, folder: RunFolder, world: World, start_epoch: int, done: dict | None,
                 report, precision: Precision) -> object | None:
    """Settings saved, metrics cut back to the checkpoint's epoch, a continued
    run no longer marked done; the TensorBoard writer (rank 0 only)."""
    if not world.is_primary():
        return None
    folder.path.mkdir(parents=True, exist_ok=True)
    # The precision used, not `auto`: the folder says what the run computed in.
    save_settings(dataclasses.replace(cfg, precision=precision), folder.config)
    folder.truncate_metrics(start_epoch)
    if done is not None:
        folder.done.unlink()
    if report is not None:
        atomic_write_text(folder.init_report, str(report) + "\n")
    if not cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder.tensorboard), purge_step=start_epoch + 1 if start_epoch else None)
