"""One training epoch and one evaluation pass, free of files and settings.

Both loops keep their running sums on the device and synchronise with the host
only every `Runtime.check_every` batches (every batch on CPU, where it is free),
which is also when a stop request or a non-finite loss is noticed. Under a
process group those checks are all-reduced so every rank stops at the same
batch and none waits forever in a collective.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from salclass.errors import Interrupted, UserError
from salclass.precision import Precision, autocast
from salclass.training.distributed import World, all_reduce_max, all_reduce_sum


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops without saving."""


class TrainingInterrupted(Interrupted):
    """A stop was requested by SIGINT or SIGTERM (`signum`) during training."""


class StopFlag:
    """Set from a signal handler; the loops poll it at their checks."""

    def __init__(self) -> None:
        self.signum = 0

    def request(self, signum: int) -> None:
        self.signum = signum


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    world: World
    precision: Precision = "fp32"
    channels_last: bool = False
    progress: bool = True
    check_every: int = 1

    def autocast(self):
        return autocast(self.device, self.precision)

    def inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        image = batch.image.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        saliency = batch.saliency
        if saliency is not None:
            saliency = saliency.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        label = batch.label.to(self.device, non_blocking=True)
        return image, saliency, label


class AttentionLoss:
    """beta * || Q_s/||Q_s|| - Q_t/||Q_t|| ||_2, averaged over the batch.

    Q_s is the student's attention map at `layer` (squared activations averaged
    over channels, caught by a forward hook); Q_t is the saliency map, already
    cropped and flipped like the image, average-pooled to the layer's size.
    `offset` undoes the loader's mean subtraction of the maps so the teacher
    map is non-negative.
    """

    def __init__(self, model: nn.Module, layer: str, beta: float, offset: float = 0.0):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise UserError(f"attention.layer: the model has no submodule {layer!r} (has: {', '.join(names[:20])})") from None
        self.layer = layer
        self.beta = beta
        self.offset = offset
        self._activation: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self._activation = output if module.training else None

    def __call__(self, saliency: torch.Tensor) -> torch.Tensor:
        a, self._activation = self._activation, None
        if not isinstance(a, torch.Tensor) or a.dim() != 4:
            raise UserError(f"attention.layer: the output of {self.layer!r} is not a (B, C, H, W) tensor")
        q_s = a.float().pow(2).mean(dim=1).flatten(1)
        q_t = F.adaptive_avg_pool2d(saliency.float() + self.offset, a.shape[-2:]).flatten(1)
        diff = F.normalize(q_s, dim=1) - F.normalize(q_t, dim=1)
        return self.beta * diff.norm(dim=1).mean()

    def close(self) -> None:
        self._handle.remove()


def _topk_hits(logits: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(label[:, None])
    return top, hit[:, 0], hit.any(dim=1)


def _check(loss_sum: torch.Tensor, stop: StopFlag | None, rt: Runtime) -> tuple[int, bool]:
    """(stop signal or 0, whether `loss_sum` went non-finite), agreed by all ranks."""
    flags = torch.tensor(
        [float(stop.signum if stop else 0), 0.0 if bool(torch.isfinite(loss_sum)) else 1.0],
        device=rt.device,
    )
    all_reduce_max(flags, rt.world)
    return int(flags[0].item()), bool(flags[1].item())


def _bar(loader, desc: str, rt: Runtime):
    total = len(loader) if hasattr(loader, "__len__") else None
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True,
                disable=not (rt.progress and rt.world.is_primary()))


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, rt: Runtime, *,
                    epoch: int, epochs: int, attention: AttentionLoss | None = None,
                    stop: StopFlag | None = None) -> dict:
    """One pass over `loader` with SGD steps; returns this epoch's training
    metrics summed over all ranks."""
    model.train()
    # loss sum, top-1 hits, top-5 hits, images, attention loss sum
    sums = torch.zeros(5, dtype=torch.float64, device=rt.device)
    start = time.perf_counter()
    with _bar(loader, f"epoch {epoch}/{epochs} train", rt) as bar:
        for i, batch in enumerate(loader, 1):
            image, saliency, label = rt.inputs(batch)
            with rt.autocast():
                logits = model(image, saliency)
            ce = F.cross_entropy(logits.float(), label)
            loss = ce
            at = None
            if attention is not None:
                at = attention(saliency)
                loss = ce + at
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                _, hit1, hit5 = _topk_hits(logits.detach(), label)
                n = label.shape[0]
                sums[0] += ce.detach().double() * n
                sums[1] += hit1.sum()
                sums[2] += hit5.sum()
                sums[3] += n
                if at is not None:
                    sums[4] += at.detach().double() * n
            bar.update(1)
            if i % rt.check_every == 0:
                signum, bad = _check(sums[0] + sums[4], stop, rt)
                if bad:
                    raise NonFiniteLoss(f"the training loss became non-finite in epoch {epoch} (batch {i})")
                if signum:
                    raise TrainingInterrupted(signum)
                bar.set_postfix(loss=f"{sums[0].item() / max(sums[3].item(), 1):.3f}",
                                top1=f"{sums[1].item() / max(sums[3].item(), 1):.3f}")
    # Again after the last batch: on CUDA the last checks may be up to check_every - 1 batches back.
    signum, bad = _check(sums[0] + sums[4], stop, rt)
    if bad:
        raise NonFiniteLoss(f"the training loss became non-finite in epoch {epoch}")
    if signum:
        raise TrainingInterrupted(signum)
    all_reduce_sum(sums, rt.world)
    seconds = time.perf_counter() - start
    out = _summary(sums, seconds)
    if attention is not None:
        out["attention_loss"] = sums[4].item() / max(sums[3].item(), 1)
    return out


def _summary(sums: torch.Tensor, seconds: float) -> dict:
    n = max(sums[3].item(), 1.0)
    return {
        "loss": sums[0].item() / n,
        "top1": sums[1].item() / n,
        "top5": sums[2].item() / n,
        "images": int(sums[3].item()),
        "images_per_s": sums[3].item() / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader, rt: Runtime, *, keep_predictions: bool = False,
             stop: StopFlag | None = None, desc: str = "val") -> tuple[dict, dict | None]:
    """Loss, top-1 and top-5 over `loader` (summed over ranks); with
    `keep_predictions`, also this rank's per-image predictions as numpy arrays
    (index, label, top5 padded with -1, correct1, correct5)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)
    kept: dict[str, list] = {"index": [], "label": [], "top5": [], "correct1": [], "correct5": []}
    start = time.perf_counter()
    with _bar(loader, desc, rt) as bar:
        for batch in loader:
            image, saliency, label = rt.inputs(batch)
            with rt.autocast():
                logits = model(image, saliency)
            logits = logits.float()
            top, hit1, hit5 = _topk_hits(logits, label)
            sums[0] += F.cross_entropy(logits, label, reduction="sum").double()
            sums[1] += hit1.sum()
            sums[2] += hit5.sum()
            sums[3] += label.shape[0]
            if keep_predictions:
                padded = torch.full((top.shape[0], 5), -1, dtype=torch.int64, device=top.device)
                padded[:, : top.shape[1]] = top
                kept["index"].append(batch.index.cpu().numpy())
                kept["label"].append(label.cpu().numpy())
                kept["top5"].append(padded.cpu().numpy())
                kept["correct1"].append(hit1.cpu().numpy())
                kept["correct5"].append(hit5.cpu().numpy())
            bar.update(1)
            # Ranks may hold different numbers of validation batches, so no
            # collective here: a rank that stops ends the job through torchrun.
            if stop is not None and stop.signum:
                raise TrainingInterrupted(stop.signum)
    all_reduce_sum(sums, rt.world)
    metrics = _summary(sums, time.perf_counter() - start)
    if not keep_predictions:
        return metrics, None
    predictions = {
        "index": np.concatenate(kept["index"]).astype(np.int64) if kept["index"] else np.zeros(0, np.int64),
        "label": np.concatenate(kept["label"]).astype(np.int64) if kept["label"] else np.zeros(0, np.int64),
        "top5": np.concatenate(kept["top5"]) if kept["top5"] else np.zeros((0, 5), np.int64),
        "correct1": np.concatenate(kept["correct1"]).astype(bool) if kept["correct1"] else np.zeros(0, bool),
        "correct5": np.concatenate(kept["correct5"]).astype(bool) if kept["correct5"] else np.zeros(0, bool),
    }
    return metrics, predictions
