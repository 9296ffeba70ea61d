"""`train(cfg, resume)`: one classifier run, resumable, single- or multi-process.

The run folder is written by rank 0 only, through its owner
(salclass.run_folder, which says in what order its files are written).

Resuming equals never stopping (on CPU): the loader's order and augmentation
depend only on (seed, epoch), and the checkpoint restores weights, optimizer
momentum, the learning-rate schedule and every RNG state at an epoch boundary.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from salclass.errors import UserError, signal_number
from salclass.io import CHECKSUM_KEY, atomic_torch_save, atomic_write_json, atomic_write_text
from salclass.lock import LOCK_NAME, folder_lock
from salclass.precision import Precision, resolve_precision
from salclass.settings import load_settings, save_settings, to_dict
from salclass.training import distributed
from salclass.training.checkpoint import (CHECKPOINT_TYPE, CHECKPOINT_VERSION, block_order_of, load_classifier,
                                          rng_state, set_rng_state, trained_precision)
from salclass.training.config import TrainConfig
from salclass.training.distributed import World
from salclass.training.engine import (AttentionLoss, NonFiniteLoss, Runtime, StopFlag, TrainingInterrupted,
                                      evaluate, train_one_epoch)
from salclass.training.layout import cpu_channels_last
from salclass.training.optim import sgd
from salclass.run_folder import CONFIG_NAME, DONE_NAME, LOG_NAME, RunFolder, settings_difference


def _log(msg: str, world: World) -> None:
    if world.is_primary():
        tqdm.write(msg, file=sys.stderr)


def resolve_device(name: str, world: World) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device: cuda was asked for, but this PyTorch sees no CUDA GPU (use device=cpu or auto)")
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def default_workers(device_type: str, threads: int) -> int:
    """Loader threads when the config leaves `workers` unset. On CPU one
    thread makes the next batch during the step (measured on the 2-core VM,
    RGBS: 0.2-0.3% of each epoch waiting for data with it, 0.4-0.7% without).
    On CUDA the threads gather and pin uint8 rows; a few keep ahead of the GPU."""
    return min(6, threads) if device_type == "cuda" else 1


def _store_identity(train_store, val_store, needs_saliency: bool) -> dict:
    return {
        "train_count": train_store.count, "val_count": val_store.count, "size": train_store.size,
        "classes": [w for w, _ in train_store.classes],
        "train_fingerprint": train_store.meta.get("fingerprint"), "val_fingerprint": val_store.meta.get("fingerprint"),
        "saliency_model": train_store.saliency_model if needs_saliency else None,
    }


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch metrics of a run folder (UserError if it has none)."""
    folder = RunFolder(run_dir)
    if not folder.metrics.is_file():
        raise UserError(f"{run_dir}: no {folder.metrics.name} (not a training run, or no epoch finished yet)")
    return folder.read_metrics()


@contextmanager
def _stop_on_signals(stop: StopFlag):
    """SIGINT/SIGTERM ask the loops to stop at the next batch boundary; a second
    signal stops at once. Outside the main thread (no handlers allowed) this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if stop.signum:
            raise TrainingInterrupted(signum)
        stop.request(signum)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _existing(cfg: TrainConfig, folder: RunFolder, resume: bool) -> tuple[dict | None, dict | None]:
    """(done.json, checkpoint) found in the run folder, after checking they
    belong to this config. Raises UserError for a folder that is not a run
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


def _precision(cfg: TrainConfig, ckpt: dict | None, device: torch.device, world: World) -> Precision:
    """A new run's precision from the config; a resumed run's from its
    checkpoint, which an explicit other setting may not change."""
    say = lambda msg: _log(msg, world)  # noqa: E731
    if ckpt is None:
        return resolve_precision(cfg.precision, device, say=say)
    trained = trained_precision(ckpt, device)
    if cfg.precision not in ("auto", trained):
        raise UserError(f"precision: the run in {cfg.out} was trained in {trained}; resume it with precision "
                        f"{trained} or auto (a run mixing precisions would match neither)")
    return resolve_precision(trained, device, say=say)


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
        _log(f"note: the checkpoint holds RNG states of {len(states)} processes, this run has "
             f"{world.world_size}; dropout draws differ from the uninterrupted run", world)
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


def _run(cfg: TrainConfig, world: World, device: torch.device, resume: bool) -> Path:
    """The whole life of one run: check the folder, build, restore, loop, finish."""
    from salclass.data import default_crop

    folder, out = RunFolder(cfg.out), Path(cfg.out)
    done, ckpt = _existing(cfg, folder, resume)
    if done is not None and ckpt is not None and ckpt["epoch"] >= cfg.epochs:
        _log(f"{out}: finished earlier ({ckpt['epoch']} epochs, {DONE_NAME}); nothing to do", world)
        return out
    if done is not None and ckpt is None:
        # A record (its checkpoint dropped or never copied): training again would overwrite its metrics.
        if int(done.get("epochs", 0)) >= cfg.epochs:
            _log(f"{out}: finished earlier ({done.get('epochs')} epochs, {DONE_NAME}; no checkpoint kept); "
                 "nothing to do", world)
            return out
        raise UserError(f"out: {out} is a finished run of {done.get('epochs')} epochs without its checkpoint; "
                        f"it cannot be continued to {cfg.epochs} (choose another out folder)")
    if ckpt is not None and ckpt["epoch"] > cfg.epochs:
        raise UserError(f"epochs: the run in {out} already trained {ckpt['epoch']} epochs, more than {cfg.epochs}")
    if ckpt is not None:
        folder.check_metrics_cover(int(ckpt["epoch"]))
    distributed.barrier(world)
    if cfg.batch_size % world.world_size:
        raise UserError(f"batch_size: {cfg.batch_size} is not divisible by the {world.world_size} processes")

    train_store, val_store = _open_stores(cfg)
    crop = cfg.crop or default_crop(train_store.size)
    if crop > train_store.size or crop > val_store.size:
        raise UserError(f"crop: {crop} is larger than the store's images ({train_store.size}px)")
    num_classes = train_store.num_classes
    net, report = _build_model(cfg, num_classes, crop, ckpt, folder.checkpoint, train_store)
    needs_saliency, identity = _check_stores(cfg, train_store, val_store, net, ckpt)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world.local_world_size)
    torch.set_num_threads(threads)
    precision = _precision(cfg, ckpt, device, world)
    net, model, rt = _place(net, cfg, world, device, precision)
    optimizer, scheduler, start_epoch = _restore(net, cfg, ckpt, world)
    train_loader, val_loader = _loaders(cfg, train_store, val_store, crop, needs_saliency, world, device, threads)
    attention = None
    if cfg.attention.enabled:
        offset = float(train_store.saliency_mean or 0.0) if cfg.mean_subtract else 0.0
        attention = AttentionLoss(net, cfg.attention.layer, cfg.attention.beta, offset)
    writer = _open_folder(cfg, folder, world, start_epoch, done, report, precision)

    where = f"{device.type}" + (f" x{world.world_size} processes" if world.distributed else "")
    _log(f"training {net.variant} on {cfg.store} ({train_store.count} train / {val_store.count} val images, "
         f"{num_classes} classes, crop {crop}) for epochs {start_epoch + 1}..{cfg.epochs} on {where} "
         f"({threads} threads, {precision}{', channels-last' if rt.channels_last else ''}) -> {out}", world)
    stop = StopFlag()
    began = time.perf_counter()
    completed = start_epoch
    # What done.json names as the final checkpoint: the resumed one, until an epoch replaces it.
    final_sha = ckpt.get(CHECKSUM_KEY) if ckpt is not None else None
    try:
        with _stop_on_signals(stop):
            if cfg.init_from is not None and start_epoch == 0 and not folder.start.is_file():
                start_val, _ = evaluate(model, val_loader, rt, stop=stop, desc="val before training")
                if world.is_primary():
                    atomic_write_json(folder.start, {"type": "salclass.start_eval", "version": 1,
                                                     "init_from": str(cfg.init_from), "val": start_val})
                _log(f"before training: val top1 {start_val['top1']:.2%} top5 {start_val['top5']:.2%} "
                     f"loss {start_val['loss']:.4f}", world)
            for epoch in range(start_epoch + 1, cfg.epochs + 1):
                train_loader.set_epoch(epoch)
                lr = optimizer.param_groups[0]["lr"]
                try:
                    tr = train_one_epoch(model, train_loader, optimizer, rt, epoch=epoch, epochs=cfg.epochs,
                                         attention=attention, stop=stop)
                except NonFiniteLoss as e:
                    last = epoch - 1
                    kept = f"the checkpoint of epoch {last} is kept in {out}" if last else "no epoch was saved"
                    raise NonFiniteLoss(f"{e}; stopped, {kept} (try a lower lr)") from None
                va, _ = evaluate(model, val_loader, rt, stop=stop, desc=f"epoch {epoch}/{cfg.epochs} val")
                scheduler.step()
                record = {"epoch": epoch, "lr": lr, "train": tr, "val": va}
                states = distributed.all_gather_objects(rng_state(), world)
                if world.is_primary():
                    folder.append_metrics(record)
                    if writer is not None:
                        _tensorboard(writer, record)
                    final_sha = atomic_torch_save(_checkpoint(cfg, net, optimizer, scheduler, epoch, crop,
                                                              train_store, identity, states, precision),
                                                  folder.checkpoint)
                completed = epoch
                _log(_epoch_line(record, cfg.epochs), world)
            # The loops poll the flag only between batches: a stop asked for
            # after the last one (during the final checkpoint write) ends here,
            # on every rank alike.
            signum = max(distributed.all_gather_objects(stop.signum, world))
            if signum:
                raise TrainingInterrupted(signum)
    except TrainingInterrupted as e:
        e.run_dir = out
        e.epoch = completed
        raise
    finally:
        if writer is not None:
            writer.close()
        if attention is not None:
            attention.close()

    distributed.barrier(world)
    if world.is_primary():
        final = folder.read_metrics()
        folder.write_done({
            "epochs": cfg.epochs, "model": net.variant, "precision": precision, "checkpoint_sha256": final_sha,
            "val": final[-1]["val"] if final else None,
            "best_val_top1": max((m["val"]["top1"] for m in final), default=None),
            "seconds_this_session": time.perf_counter() - began,
        })
        _log(f"finished: {out}", world)
    return out


def _checkpoint(cfg: TrainConfig, net, optimizer, scheduler, epoch: int, crop: int, train_store,
                store_identity: dict, rng_states: list, precision: Precision) -> dict:
    return {
        "type": CHECKPOINT_TYPE,
        "version": CHECKPOINT_VERSION,
        "model_name": net.variant,
        "block_order": net.block_order,
        "num_classes": train_store.num_classes,
        "input_size": crop,
        "classes": [[w, n] for w, n in train_store.classes],
        "store_identity": store_identity,
        "uses_saliency": bool(net.uses_saliency),
        "mean_subtract": cfg.mean_subtract,
        # What mean subtraction removed in training, so evaluation on any split shifts inputs alike.
        "input_mean": [float(v) for v in train_store.mean],
        "saliency_mean": float(train_store.saliency_mean or 0.0),
        "epoch": epoch,
        "precision": precision,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states,
        "config": to_dict(dataclasses.replace(cfg, precision=precision)),
    }


def _check_compatible(ckpt: dict, net, num_classes: int, crop: int, path: Path) -> None:
    if ckpt["model_name"] != net.variant:
        raise UserError(f"{path}: is a checkpoint of model {ckpt['model_name']}, this run builds {net.variant}")
    if ckpt["num_classes"] != num_classes or ckpt["input_size"] != crop:
        raise UserError(f"{path}: was trained for {ckpt['num_classes']} classes at {ckpt['input_size']}px, "
                        f"this run has {num_classes} classes at {crop}px")


def _tensorboard(writer, record: dict) -> None:
    epoch = record["epoch"]
    writer.add_scalar("lr", record["lr"], epoch)
    for split in ("train", "val"):
        for key, value in record[split].items():
            writer.add_scalar(f"{split}/{key}", value, epoch)
    writer.flush()


def _epoch_line(r: dict, epochs: int) -> str:
    t, v = r["train"], r["val"]
    return (f"epoch {r['epoch']}/{epochs} lr {r['lr']:.4g} | train loss {t['loss']:.4f} top1 {t['top1']:.2%} "
            f"top5 {t['top5']:.2%} | val loss {v['loss']:.4f} top1 {v['top1']:.2%} top5 {v['top5']:.2%} "
            f"| {t['images_per_s']:.0f} img/s, {t['seconds'] + v['seconds']:.1f} s")


@contextmanager
def _hold_folders(cfg: TrainConfig, world: World):
    """For the whole run: the store's splits for reading (every rank reads
    them), so no one rewrites images or maps under it, and the run folder for
    writing (rank 0 writes it). All ranks learn of a refusal, so none waits in a
    collective for a rank that stopped."""
    with ExitStack() as held:
        for split in ("train", "val"):
            held.enter_context(folder_lock(Path(cfg.store) / split, exclusive=False))
        refused = None
        if world.is_primary():
            try:
                held.enter_context(folder_lock(cfg.out, exclusive=True))
            except UserError as e:
                refused = str(e)
        refusals = [r for r in distributed.all_gather_objects(refused, world) if r]
        if refusals:
            raise UserError(refusals[0])
        yield


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train one run into `cfg.out` and return that folder.

    A finished run (done.json) is not retrained. With `resume`, an unfinished
    run continues from its last epoch checkpoint; without it, an unfinished run
    in `cfg.out` is an error. Raises TrainingInterrupted (a KeyboardInterrupt,
    with `signum`, `run_dir` and `epoch`) after SIGINT/SIGTERM, NonFiniteLoss (a
    UserError) when the loss diverges; the last completed epoch's checkpoint is
    on disk in both cases.
    """
    world = distributed.world_from_env()
    device = resolve_device(cfg.device, world)
    created = distributed.setup(world, device.type)
    threads_before = torch.get_num_threads()
    try:
        with _hold_folders(cfg, world):
            return _run(cfg, world, device, resume)
    finally:
        torch.set_num_threads(threads_before)
        distributed.teardown(created)


def train_cli(config: str | None, sets: list[str], resume: bool = False) -> int:
    """`salclass train`: with --resume and no --config, the run's own config.yaml
    (found through `--set out=DIR`) is the base the overrides apply to."""
    base = config
    if base is None and resume:
        outs = [s.split("=", 1)[1] for s in sets if s.startswith("out=")]
        if outs and (Path(outs[-1]) / CONFIG_NAME).is_file():
            base = str(Path(outs[-1]) / CONFIG_NAME)
    cfg = load_settings(TrainConfig, base, sets)
    try:
        train(cfg, resume=resume)
    except KeyboardInterrupt as e:
        # Also a stop outside the loops (SIGTERM while done.json is written): the run resumes alike.
        signum = signal_number(e)
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        epoch = getattr(e, "epoch", None)
        after = f" after {epoch} completed epoch(s)" if epoch is not None else ""
        print(f"salclass: stopped by {name}{after}; resume with: "
              f"salclass train --set out={cfg.out} --resume", file=sys.stderr)
        return 128 + signum
    return 0
