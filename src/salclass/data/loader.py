"""Batches of (image, saliency map, label, index) from a store.

Everything random about an epoch -- the order, each image's crop offset and
flip -- is drawn from one generator seeded with (seed, epoch) and indexed by
the image's position in that epoch's permutation. So the batches depend on
nothing else: not on the number of workers, not on whether the run was resumed,
and under DDP the ranks share one permutation and take disjoint strided shards
of it, each the same number of batches.

On a CPU device the loader workers copy just each image's crop window out of
the memory-mapped store (rows visited in sorted order, so reads go forward
through the file) and mirror the flipped ones; the map gets the very same
windows and flips. The conversion to float then also makes the batch
channel-first, in one pass, which leaves `Batch.image` with channels_last
strides (its shape is (B,3,C,C); convolutions take it as is, `.contiguous()`
gives NCHW strides). On the 2-core VM this costs about half the CPU of one
fancy-index gather of whole rows, a batched crop and a separate transpose:
fewer bytes are copied, fewer times, and 128 Python iterations cost less than a
batched gather's per-element index arithmetic. On an accelerator the whole
uint8 rows are gathered (one sorted fancy index), sent over, and cropped there
with one batched gather (`crop_flip`), which moves fewer bytes than floats.
"""

from __future__ import annotations

import os
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from salclass.data.store import IMAGES, LABELS, SALIENCY, Store, default_crop
from salclass.errors import UserError


class Batch(NamedTuple):
    image: torch.Tensor              # (B,3,C,C) float32, 0..1 (minus the means with mean_subtract)
    saliency: torch.Tensor | None    # (B,1,C,C) float32 or None
    label: torch.Tensor              # (B,) int64
    index: torch.Tensor              # (B,) int64, row in the store

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.image), move(self.saliency), move(self.label), move(self.index))


def _epoch_draws(seed: int, epoch: int, n: int, size: int, crop: int) -> tuple[np.ndarray, ...]:
    """Permutation, crop offsets (y, x) and flips of one training epoch."""
    g = np.random.default_rng([seed, epoch])
    perm = g.permutation(n)
    oy = g.integers(0, size - crop + 1, n)
    ox = g.integers(0, size - crop + 1, n)
    flip = g.random(n) < 0.5
    return perm, oy, ox, flip


def batch_plan(n: int, batch_size: int, train: bool, rank: int, world_size: int) -> list[np.ndarray]:
    """Positions (into the epoch's order) of this rank's batches.

    Train: each rank takes every world_size-th position of the first
    world_size * (n // world_size), then full batches only (a short last batch
    is dropped, unless it is the only one), so every rank has the same number of
    equal batches. Eval: every row exactly once; with several ranks each rank's
    shard is cut into the same number of batches of near-equal size."""
    if train:
        per_rank = n // world_size
        mine = np.arange(rank, per_rank * world_size, world_size)
        if per_rank == 0:
            return []
        if per_rank < batch_size:
            return [mine]
        full = per_rank // batch_size
        return [mine[i * batch_size:(i + 1) * batch_size] for i in range(full)]
    mine = np.arange(rank, n, world_size)
    if world_size == 1:
        return [mine[i:i + batch_size] for i in range(0, n, batch_size)]
    longest = -(-n // world_size)
    count = -(-longest // batch_size)
    return [part for part in np.array_split(mine, count)]


def crop_flip(image: torch.Tensor, saliency: torch.Tensor | None, oy: torch.Tensor, ox: torch.Tensor,
              flip: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample crop (top-left oy, ox; size crop) and horizontal flip of
    image (B,S,S,3) and saliency (B,S,S), in one gather with shared indices."""
    b = image.shape[0]
    dev = image.device
    steps = torch.arange(crop, device=dev)
    rows = oy.to(dev)[:, None] + steps                                                     # (B,C)
    cols = ox.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], crop - 1 - steps, steps)  # (B,C)
    bi = torch.arange(b, device=dev)[:, None, None]
    r, c = rows[:, :, None], cols[:, None, :]
    return image[bi, r, c], (None if saliency is None else saliency[bi, r, c])


class _EpochBatches(Dataset):
    """Item (epoch, i) = raw uint8 batch i of this rank in that epoch. Holds
    paths, not arrays, so workers map the store themselves."""

    def __init__(self, store: Store, batch_size: int, train: bool, crop: int, seed: int, with_saliency: bool,
                 rank: int, world_size: int, crop_here: bool):
        self.path = store.path
        self.n, self.size = store.count, store.size
        self.batch_size, self.train, self.crop, self.seed = batch_size, train, crop, seed
        self.with_saliency, self.rank, self.world_size, self.crop_here = with_saliency, rank, world_size, crop_here
        self.plan = batch_plan(self.n, batch_size, train, rank, world_size)
        self._arrays = None
        self._epoch_cache: tuple[int, tuple] | None = None

    def __len__(self) -> int:
        return len(self.plan)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        state["_epoch_cache"] = None
        return state

    def _open(self) -> tuple:
        if self._arrays is None:
            images = np.load(self.path / IMAGES, mmap_mode="r")
            labels = np.load(self.path / LABELS).astype(np.int64)
            sal = np.load(self.path / SALIENCY, mmap_mode="r") if self.with_saliency else None
            self._arrays = (images, labels, sal)
        return self._arrays

    def _draws(self, epoch: int) -> tuple:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, _epoch_draws(self.seed, epoch, self.n, self.size, self.crop))
        return self._epoch_cache[1]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        images, labels, sal = self._open()
        positions = self.plan[i]
        if self.train:
            perm, oy, ox, flip = self._draws(epoch)
            rows = perm[positions]
            order = np.argsort(rows, kind="stable")
            rows, pos = rows[order], positions[order]
            oy, ox, flip = oy[pos], ox[pos], flip[pos]
        else:
            rows = positions
            oy = np.full(len(rows), (self.size - self.crop) // 2)
            ox = oy.copy()
            flip = np.zeros(len(rows), dtype=bool)
        out = {"label": torch.from_numpy(labels[rows]), "index": torch.from_numpy(rows.astype(np.int64)),
               "cropped": self.crop_here}
        if self.crop_here:
            out["image"] = crop_rows(images, rows, oy, ox, flip, self.crop)
            out["saliency"] = None if sal is None else crop_rows(sal, rows, oy, ox, flip, self.crop)
        else:
            out.update(image=torch.from_numpy(images[rows]),
                       saliency=None if sal is None else torch.from_numpy(sal[rows]),
                       oy=torch.from_numpy(oy.astype(np.int64)), ox=torch.from_numpy(ox.astype(np.int64)),
                       flip=torch.from_numpy(flip))
        return out


def crop_rows(array: np.ndarray, rows: np.ndarray, oy: np.ndarray, ox: np.ndarray, flip: np.ndarray,
              crop: int) -> torch.Tensor:
    """Rows of a (N,S,S,3) or (N,S,S) uint8 array, cropped at (oy, ox) and mirrored
    where flip: (B,C,C,3) or (B,C,C) uint8. Reads only the crop windows."""
    out = torch.from_numpy(np.empty((len(rows), crop, crop) + array.shape[3:], dtype=np.uint8))
    view = out.numpy()
    for i, r in enumerate(rows):
        view[i] = array[r, oy[i]:oy[i] + crop, ox[i]:ox[i] + crop]
    # Per image, because a masked batch flip (index, flip, index_put) measured ~8x slower here.
    for i in np.flatnonzero(flip):
        out[i] = out[i].flip(1)
    return out


class _EpochSampler(Sampler):
    def __init__(self, count: int):
        self.count = count
        self.epoch = 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in range(self.count)])


def _no_collate(x):
    return x


class StoreLoader:
    """Iterate a store split in batches (see docs/ARCHITECTURE.md section 1)."""

    def __init__(self, store: Store | str | os.PathLike, batch_size: int, train: bool, crop: int | None = None,
                 seed: int = 0, mean_subtract: bool = False, with_saliency: bool = True, rank: int = 0,
                 world_size: int = 1, device: str | torch.device = "cpu", workers: int = 0,
                 mean: Sequence[float] | None = None, saliency_mean: float | None = None):
        """`mean` / `saliency_mean` are what `mean_subtract` subtracts; by default this store's own. Validation
        loaders should be given the training split's values, so both splits are shifted alike."""
        store = store if isinstance(store, Store) else Store.open(store)
        crop = default_crop(store.size) if crop is None else int(crop)
        if not 1 <= crop <= store.size:
            raise UserError(f"crop {crop}: must be between 1 and the store's size {store.size}")
        if batch_size < 1:
            raise UserError(f"batch size {batch_size}: must be at least 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank {rank} of world size {world_size}: not a valid shard")
        if seed < 0:
            raise UserError(f"seed {seed}: must be 0 or more")
        if with_saliency and not store.has_saliency:
            raise UserError(f"{store.path}: has no (complete) saliency maps; run `salclass saliency predict` "
                            "or load without saliency")
        if store.count < world_size:
            raise UserError(f"{store.path}: {store.count} images cannot be shared by {world_size} ranks")
        self.store, self.batch_size, self.train, self.crop, self.seed = store, batch_size, train, crop, seed
        self.mean_subtract, self.with_saliency = mean_subtract, with_saliency
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.device = torch.device(device)
        self.epoch = 0
        self._source = _EpochBatches(store, batch_size, train, crop, seed, with_saliency, rank, world_size,
                                     crop_here=self.device.type == "cpu")
        self._sampler = _EpochSampler(len(self._source))
        self._loader: DataLoader | None = None
        mean = store.mean if mean is None else mean
        if len(mean) != 3:
            raise UserError(f"mean {list(mean)}: expected one value per RGB channel")
        self._mean = torch.tensor(np.asarray(mean, dtype=np.float32), device=self.device).view(1, 3, 1, 1)
        self._sal_mean = float((store.saliency_mean if saliency_mean is None else saliency_mean) or 0.0)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch {epoch} < 0")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._source)

    def _raw(self) -> Iterator[dict]:
        self._sampler.epoch = self.epoch
        if self.workers <= 0:
            for key in self._sampler:
                yield self._source[key]
            return
        if self._loader is None:
            self._loader = DataLoader(self._source, batch_size=None, sampler=self._sampler, num_workers=self.workers,
                                      collate_fn=_no_collate, persistent_workers=True,
                                      pin_memory=self.device.type == "cuda", prefetch_factor=4)
        yield from self._loader

    def __iter__(self) -> Iterator[Batch]:
        for raw in self._raw():
            yield self._finish(raw)

    def _finish(self, raw: dict) -> Batch:
        dev = self.device
        nb = dev.type == "cuda"
        image = raw["image"].to(dev, non_blocking=nb)
        sal = None if raw["saliency"] is None else raw["saliency"].to(dev, non_blocking=nb)
        if not raw["cropped"]:  # whole rows: crop on the device
            image, sal = crop_flip(image, sal, raw["oy"], raw["ox"], raw["flip"], self.crop)
        # (B,C,C,3) uint8 -> (B,3,C,C) float32 without a separate transpose: the result keeps
        # channels_last strides. Converting first and dividing in place measured faster than
        # one promoting division.
        image = image.permute(0, 3, 1, 2).float().div_(255.0)
        if self.mean_subtract:
            image.sub_(self._mean)
        if sal is not None:
            sal = sal.unsqueeze(1).float().div_(255.0)
            if self.mean_subtract:
                sal.sub_(self._sal_mean)
        return Batch(image, sal, raw["label"].to(dev, non_blocking=nb), raw["index"].to(dev, non_blocking=nb))
