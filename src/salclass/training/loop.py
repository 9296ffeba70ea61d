"""`train(cfg, resume)`: one classifier run, resumable, single- or multi-process,
from its folder's check through the epochs to the finished marker.

The run folder is written by rank 0 only, through its owner
(salclass.run_folder, which says in what order its files are written).

Resuming equals never stopping (on CPU): the loader's order and augmentation
depend only on (seed, epoch), and the checkpoint restores weights, optimizer
momentum, the learning-rate schedule and every RNG state at an epoch boundary.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from salclass.errors import UserError, signal_number
from salclass.io import CHECKSUM_KEY, atomic_torch_save, atomic_write_json
from salclass.lock import folder_lock
from salclass.run_folder import DONE_NAME, RunFolder
from salclass.say import counted, say
from salclass.settings import load_settings, to_dict
from salclass.training import distributed
from salclass.training.checkpoint import CHECKPOINT_TYPE, CHECKPOINT_VERSION, rng_state
from salclass.training.config import TrainConfig
from salclass.training.distributed import World, resolve_device
from salclass.training.engine import NonFiniteLoss, StopFlag, TrainingInterrupted, evaluate, train_one_epoch
from salclass.training.setup import Session, existing_run, prepare


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train one run into `cfg.out` and return that folder.

    A finished run is not retrained. With `resume`, an unfinished run
    continues from its last epoch checkpoint; without it, an unfinished run
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
    """`salclass train`: with --resume and no --config, the run's own saved
    settings (found through `--set out=DIR`) are the base the overrides apply to."""
    outs = [s.split("=", 1)[1] for s in sets if s.startswith("out=")]
    base = RunFolder(outs[-1]).settings_base(config, resume) if outs else config
    cfg = load_settings(TrainConfig, base, sets)
    try:
        train(cfg, resume=resume)
    except KeyboardInterrupt as e:
        # Also a stop outside the loops (SIGTERM while the finished marker is written): the run resumes alike.
        signum = signal_number(e)
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        epoch = getattr(e, "epoch", None)
        after = f" after {counted(epoch, 'completed epoch')}" if epoch is not None else ""
        say(f"salclass: stopped by {name}{after}; resume with: salclass train --set out={cfg.out} --resume")
        return 128 + signum
    return 0


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


def _run(cfg: TrainConfig, world: World, device: torch.device, resume: bool) -> Path:
    """The whole life of one run: check the folder, build, restore, loop, finish."""
    folder = RunFolder(cfg.out)
    done, ckpt = existing_run(cfg, folder, resume)
    if _finished_earlier(cfg, folder.path, done, ckpt):
        return folder.path
    if ckpt is not None:
        folder.check_metrics_cover(int(ckpt["epoch"]))
    distributed.barrier(world)
    if cfg.batch_size % world.world_size:
        raise UserError(f"batch_size: {cfg.batch_size} is not divisible by the {world.world_size} processes")
    session = prepare(cfg, world, device, folder, done, ckpt)
    began = time.perf_counter()
    # What the finished marker names as the final checkpoint: the resumed one, until an epoch replaces it.
    final_sha = ckpt.get(CHECKSUM_KEY) if ckpt is not None else None
    try:
        final_sha = _epochs(session, final_sha)
    finally:
        if session.writer is not None:
            session.writer.close()
        if session.attention is not None:
            session.attention.close()
    distributed.barrier(world)
    if world.is_primary():
        _finish(session, final_sha, time.perf_counter() - began)
    return folder.path


def _finished_earlier(cfg: TrainConfig, out: Path, done: dict | None, ckpt: dict | None) -> bool:
    """Whether the run in `out` has already trained `cfg.epochs` (then there is
    nothing to do); UserError where it trained more, or cannot go on."""
    if done is not None and ckpt is not None and ckpt["epoch"] >= cfg.epochs:
        say(f"{out}: finished earlier ({ckpt['epoch']} epochs, {DONE_NAME}); nothing to do")
        return True
    if done is not None and ckpt is None:
        # A record (its checkpoint dropped or never copied): training again would overwrite its metrics.
        if int(done.get("epochs", 0)) >= cfg.epochs:
            say(f"{out}: finished earlier ({done.get('epochs')} epochs, {DONE_NAME}; no checkpoint kept); "
                "nothing to do")
            return True
        raise UserError(f"out: {out} is a finished run of {done.get('epochs')} epochs without its checkpoint; "
                        f"it cannot be continued to {cfg.epochs} (choose another out folder)")
    if ckpt is not None and ckpt["epoch"] > cfg.epochs:
        raise UserError(f"epochs: the run in {out} already trained {ckpt['epoch']} epochs, more than {cfg.epochs}")
    return False


def _epochs(s: Session, final_sha: str | None) -> str | None:
    """Train the remaining epochs, each one's metrics line before its checkpoint;
    returns the final checkpoint's checksum. A stop by signal raises
    TrainingInterrupted naming the last completed epoch."""
    cfg, folder = s.cfg, s.folder
    stop = StopFlag()
    completed = s.start_epoch
    try:
        with _stop_on_signals(stop):
            if cfg.init_from is not None and s.start_epoch == 0 and not folder.start.is_file():
                _evaluate_start(s, stop)
            for epoch in range(s.start_epoch + 1, cfg.epochs + 1):
                record = _one_epoch(s, epoch, stop)
                states = distributed.all_gather_objects(rng_state(), s.world)
                if s.world.is_primary():
                    folder.append_metrics(record)
                    if s.writer is not None:
                        _tensorboard(s.writer, record)
                    final_sha = atomic_torch_save(_checkpoint(s, epoch, states), folder.checkpoint)
                completed = epoch
                say(_epoch_line(record, cfg.epochs))
            # The loops poll the flag only between batches: a stop asked for
            # after the last one (during the final checkpoint write) ends here,
            # on every rank alike.
            signum = max(distributed.all_gather_objects(stop.signum, s.world))
            if signum:
                raise TrainingInterrupted(signum)
    except TrainingInterrupted as e:
        e.run_dir = folder.path
        e.epoch = completed
        raise
    return final_sha


def _evaluate_start(s: Session, stop: StopFlag) -> None:
    """A fine-tune's validation before its first step, the start of its curve."""
    start_val, _ = evaluate(s.model, s.val_loader, s.rt, stop=stop, desc="val before training")
    if s.world.is_primary():
        atomic_write_json(s.folder.start, {"type": "salclass.start_eval", "version": 1,
                                           "init_from": str(s.cfg.init_from), "val": start_val})
    say(f"before training: val top1 {start_val['top1']:.2%} top5 {start_val['top5']:.2%} "
        f"loss {start_val['loss']:.4f}")


def _one_epoch(s: Session, epoch: int, stop: StopFlag) -> dict:
    """One epoch's training and validation, the schedule stepped; its metrics line."""
    epochs = s.cfg.epochs
    s.train_loader.set_epoch(epoch)
    lr = s.optimizer.param_groups[0]["lr"]
    try:
        tr = train_one_epoch(s.model, s.train_loader, s.optimizer, s.rt, epoch=epoch, epochs=epochs,
                             attention=s.attention, stop=stop)
    except NonFiniteLoss as e:
        last = epoch - 1
        kept = f"the checkpoint of epoch {last} is kept in {s.folder.path}" if last else "no epoch was saved"
        raise NonFiniteLoss(f"{e}; stopped, {kept} (try a lower lr)") from None
    va, _ = evaluate(s.model, s.val_loader, s.rt, stop=stop, desc=f"epoch {epoch}/{epochs} val")
    s.scheduler.step()
    return {"epoch": epoch, "lr": lr, "train": tr, "val": va}


def _finish(s: Session, final_sha: str | None, seconds: float) -> None:
    final = s.folder.read_metrics()
    s.folder.write_done({
        "epochs": s.cfg.epochs, "model": s.net.variant, "precision": s.precision, "checkpoint_sha256": final_sha,
        "val": final[-1]["val"] if final else None,
        "best_val_top1": max((m["val"]["top1"] for m in final), default=None),
        "seconds_this_session": seconds,
    })
    say(f"finished: {s.folder.path}")


def _checkpoint(s: Session, epoch: int, rng_states: list) -> dict:
    cfg, net, store = s.cfg, s.net, s.train_store
    return {
        "type": CHECKPOINT_TYPE,
        "version": CHECKPOINT_VERSION,
        "model_name": net.variant,
        "block_order": net.block_order,
        "num_classes": store.num_classes,
        "input_size": s.crop,
        "classes": [[w, n] for w, n in store.classes],
        "store_identity": s.identity,
        "uses_saliency": bool(net.uses_saliency),
        "mean_subtract": cfg.mean_subtract,
        # What mean subtraction removed in training, so evaluation on any split shifts inputs alike.
        "input_mean": [float(v) for v in store.mean],
        "saliency_mean": float(store.saliency_mean or 0.0),
        "epoch": epoch,
        "precision": s.precision,
        "model": net.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "rng": rng_states,
        "config": to_dict(dataclasses.replace(cfg, precision=s.precision)),
    }


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
