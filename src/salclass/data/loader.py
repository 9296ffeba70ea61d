"""Batches of (image, saliency map, label, index) from a store.

Everything random about an epoch -- the order, each image's crop offset and
flip -- is drawn from one generator seeded with (seed, epoch) and indexed by
the image's position in that epoch's permutation. So the batches depend on
nothing else: not on the number of workers, not on whether the run was resumed,
and under DDP the ranks share one permutation and take disjoint strided shards
of it, each the same number of batches. Within a batch the images come in
sorted row order, the mirrored ones after the others.

Workers are threads of this process, not processes. A store needs no
decoding: what is left is copying bytes and converting them to floats, which
numpy and torch do with the GIL released, so threads run side by side, and a
finished batch stays where it was made. Worker processes had to send every
batch through shared memory and map it again on arrival, which cost more than
the work they took off the training process on two cores.

On a CPU device a worker copies just each image's crop window out of the
memory-mapped store, mirrors the flipped ones in one batched flip, and converts
to float in the layout of the store, (B,C,C,3), which makes `Batch.image` a
(B,3,C,C) view with channels_last strides (convolutions take it as is,
`.contiguous()` gives NCHW strides). The large arrays come from a small pool
and are reused once no tensor refers to them any more: a fresh 25 MB array
costs the kernel a page fault per 4 KB, which measured as much as the
conversion itself. On an accelerator the whole uint8 rows are gathered (one
sorted fancy index), pinned, sent over, and cropped there with one batched
gather (`crop_flip`), which moves a quarter of the bytes that floats would.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from salclass.data.store import Store, default_crop
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


def rank_batches(n: int, batch_size: int, train: bool, rank: int, world_size: int) -> list[np.ndarray]:
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


class _ArrayPool:
    """numpy arrays for batches, each handed out again once nothing refers to it.

    A tensor made with `torch.from_numpy` keeps its array alive until the last
    tensor sharing its memory is gone, so an array whose only reference is the
    pool's own is free, whatever the caller did with the batch. Arrays beyond
    `keep` per shape are not pooled."""

    def __init__(self, keep: int):
        self.keep = keep
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._unheld = _refcount([np.empty(0)], 0)

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        with self._lock:
            arrays = self._arrays.setdefault((shape, np.dtype(dtype).str), [])
            for i in range(len(arrays)):
                if _refcount(arrays, i) == self._unheld:
                    return arrays[i]
            array = np.empty(shape, dtype)
            if len(arrays) < self.keep:
                arrays.append(array)
            return array


def _refcount(arrays: list, i: int) -> int:
    # Always called the same way, so the count of an array held by nothing but
    # the list is a constant, measured once per pool.
    return sys.getrefcount(arrays[i])


class _Crops(NamedTuple):
    rows: np.ndarray      # store rows, sorted, mirrored ones last
    oy: np.ndarray
    ox: np.ndarray
    flip: np.ndarray      # bool per image
    mirrored: int         # how many are flipped (the last ones)


class _BatchSource:
    """Batch i of an epoch for one rank: which rows, crops and flips, and the CPU work of making it."""

    def __init__(self, store: Store, batch_size: int, train: bool, crop: int, seed: int, with_saliency: bool,
                 rank: int, world_size: int, crop_here: bool, mean: np.ndarray | None, saliency_mean: float | None):
        # Plain ndarray views of the memory maps: slicing a np.memmap costs more per call.
        self.images = np.asarray(store.images)
        self.saliency = np.asarray(store.saliency) if with_saliency else None
        self.labels = np.asarray(store.labels, dtype=np.int64)
        self.n, self.size = store.count, store.size
        self.train, self.crop, self.seed, self.crop_here = train, crop, seed, crop_here
        self.mean = None if mean is None else torch.from_numpy(np.asarray(mean, dtype=np.float32))
        self.saliency_mean = saliency_mean
        self.batches = rank_batches(self.n, batch_size, train, rank, world_size)
        self._draws_lock = threading.Lock()
        self._epoch_draws: tuple[int, tuple] | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def _draws(self, epoch: int) -> tuple:
        with self._draws_lock:
            if self._epoch_draws is None or self._epoch_draws[0] != epoch:
                self._epoch_draws = (epoch, _epoch_draws(self.seed, epoch, self.n, self.size, self.crop))
            return self._epoch_draws[1]

    def crops_for(self, epoch: int, i: int) -> _Crops:
        positions = self.batches[i]
        if not self.train:
            oy = np.full(len(positions), (self.size - self.crop) // 2)
            return _Crops(positions, oy, oy.copy(), np.zeros(len(positions), dtype=bool), 0)
        perm, oy, ox, flip = self._draws(epoch)
        rows, mirrored = perm[positions], flip[positions]
        pos = positions[np.lexsort((rows, mirrored))]
        return _Crops(perm[pos], oy[pos], ox[pos], flip[pos], int(mirrored.sum()))

    def make(self, epoch: int, i: int, pool: _ArrayPool) -> dict:
        """A finished float batch (crop_here) or the uint8 rows to crop on the device."""
        p = self.crops_for(epoch, i)
        out = {"label": torch.from_numpy(self.labels[p.rows]), "index": torch.from_numpy(p.rows.astype(np.int64))}
        if self.crop_here:
            out["image"] = self._floats(self.images, p, pool, self.mean)
            out["saliency"] = None if self.saliency is None else self._floats(self.saliency, p, pool,
                                                                               self.saliency_mean)
            return out
        out.update(image=torch.from_numpy(self.images[p.rows]),
                   saliency=None if self.saliency is None else torch.from_numpy(self.saliency[p.rows]),
                   oy=torch.from_numpy(p.oy.astype(np.int64)), ox=torch.from_numpy(p.ox.astype(np.int64)),
                   flip=torch.from_numpy(p.flip))
        return out

    def _floats(self, array: np.ndarray, p: _Crops, pool: _ArrayPool,
                mean: torch.Tensor | float | None) -> torch.Tensor:
        """The crop windows of p's rows as float32 in [0, 1] (minus `mean`), the
        mirrored ones flipped: (B,3,C,C) with channels_last strides, or (B,1,C,C).

        A few images at a time, so that their pixels are still in the cache when
        they are converted and scaled: over whole batches the scaling pass alone
        went back to memory for 260 KB per image."""
        c = self.crop
        out = torch.from_numpy(pool.take((len(p.rows), c, c) + array.shape[3:], np.float32))
        crops = pool.take((_CHUNK, c, c) + array.shape[3:], np.uint8)
        for start, stop in _chunks(len(p.rows), p.mirrored):
            part = crops[:stop - start]
            for j, i in enumerate(range(start, stop)):
                part[j] = array[p.rows[i], p.oy[i]:p.oy[i] + c, p.ox[i]:p.ox[i] + c]
            src = torch.from_numpy(part)
            dst = out[start:stop]
            # Chunks never mix mirrored and plain images, and one flip of a whole
            # chunk measured 3-4x cheaper than flipping image by image.
            dst.copy_(src.flip(2) if p.flip[start] else src)
            dst.div_(255.0)
            if mean is not None:
                dst.sub_(mean)
        return out.permute(0, 3, 1, 2) if out.dim() == 4 else out.unsqueeze(1)


_CHUNK = 16


def _chunks(count: int, mirrored: int) -> list[tuple[int, int]]:
    """(start, stop) of runs of at most _CHUNK images, none crossing from the
    plain images to the mirrored ones (the last `mirrored`)."""
    plain = count - mirrored
    return ([(s, min(s + _CHUNK, plain)) for s in range(0, plain, _CHUNK)]
            + [(s, min(s + _CHUNK, count)) for s in range(plain, count, _CHUNK)])


class StoreLoader:
    """Iterate a store split in batches (see docs/ARCHITECTURE.md section 1)."""

    def __init__(self, store: Store | str | os.PathLike, batch_size: int, train: bool, crop: int | None = None,
                 seed: int = 0, mean_subtract: bool = False, with_saliency: bool = True, rank: int = 0,
                 world_size: int = 1, device: str | torch.device = "cpu", workers: int = 0,
                 mean: Sequence[float] | None = None, saliency_mean: float | None = None):
        """`workers` threads make batches ahead of the caller (0: made on demand in the
        caller's thread). `mean` / `saliency_mean` are what `mean_subtract` subtracts; by
        default this store's own. Validation loaders should be given the training split's
        values, so both splits are shifted alike."""
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
        if workers < 0:
            raise UserError(f"workers {workers}: must be 0 or more")
        if with_saliency and store.saliency_problem is not None:
            raise UserError(store.no_maps_reason())
        if with_saliency and not store.has_saliency:
            raise UserError(f"{store.path}: has no (complete) saliency maps; run `salclass saliency predict` "
                            "or load without saliency")
        if store.count < world_size:
            raise UserError(f"{store.path}: {store.count} images cannot be shared by {world_size} ranks")
        mean = store.mean if mean is None else mean
        if len(mean) != 3:
            raise UserError(f"mean {list(mean)}: expected one value per RGB channel")
        sal_mean = float((store.saliency_mean if saliency_mean is None else saliency_mean) or 0.0)
        self.store, self.batch_size, self.train, self.crop, self.seed = store, batch_size, train, crop, seed
        self.mean_subtract, self.with_saliency = mean_subtract, with_saliency
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.device = torch.device(device)
        self.epoch = 0
        crop_here = self.device.type == "cpu"
        self._source = _BatchSource(store, batch_size, train, crop, seed, with_saliency, rank, world_size, crop_here,
                                    mean if mean_subtract else None, sal_mean if mean_subtract else None)
        self._mean = torch.tensor(np.asarray(mean, dtype=np.float32), device=self.device).view(1, 3, 1, 1)
        self._sal_mean = sal_mean

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch {epoch} < 0")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self) -> Iterator[Batch]:
        for raw in self._raw():
            yield self._finish(raw)

    def _raw(self) -> Iterator[dict]:
        epoch, source, count = self.epoch, self._source, len(self._source)
        # Room for the batches in flight, the one the caller has and the one before it.
        pool = _ArrayPool(keep=2 * self.workers + 3)
        if self.workers == 0:
            for i in range(count):
                yield source.make(epoch, i, pool)
            return
        pin = self.device.type == "cuda"
        with ThreadPoolExecutor(self.workers, thread_name_prefix="salclass-loader") as threads:
            ahead: deque[Future] = deque()
            try:
                for i in range(count):
                    while len(ahead) < 2 * self.workers and i + len(ahead) < count:
                        ahead.append(threads.submit(_make, source, epoch, i + len(ahead), pool, pin))
                    yield ahead.popleft().result()
            finally:
                for f in ahead:
                    f.cancel()

    def _finish(self, raw: dict) -> Batch:
        if "oy" not in raw:  # made on the CPU, finished
            return Batch(raw["image"], raw["saliency"], raw["label"], raw["index"])
        dev = self.device
        nb = dev.type == "cuda"
        image = raw["image"].to(dev, non_blocking=nb)
        sal = None if raw["saliency"] is None else raw["saliency"].to(dev, non_blocking=nb)
        image, sal = crop_flip(image, sal, raw["oy"], raw["ox"], raw["flip"], self.crop)
        # (B,C,C,3) uint8 -> (B,3,C,C) float32 without a separate transpose (channels_last strides).
        image = image.permute(0, 3, 1, 2).float().div_(255.0)
        if self.mean_subtract:
            image.sub_(self._mean)
        if sal is not None:
            sal = sal.unsqueeze(1).float().div_(255.0)
            if self.mean_subtract:
                sal.sub_(self._sal_mean)
        return Batch(image, sal, raw["label"].to(dev, non_blocking=nb), raw["index"].to(dev, non_blocking=nb))


def _make(source: _BatchSource, epoch: int, i: int, pool: _ArrayPool, pin: bool) -> dict:
    raw = source.make(epoch, i, pool)
    if pin:
        raw = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in raw.items()}
    return raw
