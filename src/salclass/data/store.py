"""The packed store: one folder per split, memory-mapped numpy arrays.

Layout (docs/ARCHITECTURE.md, section 1): `meta.json`, `images.npy` uint8
(N,S,S,3), `labels.npy` int16 (N,), `ids.txt`, `rejected.tsv`, and optionally
`saliency.npy` uint8 (N,S,S) with `saliency.json`.

Plain .npy files are used because the raw layout needs no decoding at training
time, any process can memory-map them read-only (loader threads and DDP ranks
share the page cache instead of each holding a copy), row i sits at a fixed
byte offset so random access by index is one seek, and numpy can create them
preallocated on disk (`open_memmap`) so writing needs constant memory.

A split is a store only once `meta.json` says `complete: true`, and maps count
only once `saliency.json` says so: both flags are written last and atomically,
so an interrupted writer can never leave something that looks finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from salclass.errors import UserError
from salclass.io import atomic_write_json, read_json

STORE_TYPE = "salclass.store"
STORE_VERSION = 1
SALIENCY_TYPE = "salclass.saliency_maps"
SALIENCY_VERSION = 1

META = "meta.json"
IMAGES = "images.npy"
LABELS = "labels.npy"
IDS = "ids.txt"
REJECTED = "rejected.tsv"
SALIENCY = "saliency.npy"
SALIENCY_META = "saliency.json"

# Rows per step when scanning a whole array (means): bounded memory at any N.
_SCAN_ROWS = 1024


def default_crop(size: int) -> int:
    """The thesis's training crop: 128 for S=144, 227 for S=256, else S."""
    return {144: 128, 256: 227}.get(size, size)


def _check_type(meta: dict, path: Path, expected: str, max_version: int) -> None:
    if not isinstance(meta, dict) or meta.get("type") != expected:
        found = meta.get("type") if isinstance(meta, dict) else None
        raise UserError(f"{path}: is not a {expected} file (type {found!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > max_version:
        raise UserError(f"{path}: version {version!r} is not supported (this salclass reads up to {max_version})")


def _open_npy(path: Path, shape: tuple[int, ...], mode: str = "r") -> np.memmap:
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:
        arr = np.load(path, mmap_mode=mode)
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: not a readable .npy file ({e})") from None
    if arr.shape != shape or arr.dtype != np.uint8:
        raise UserError(f"{path}: expected uint8 {shape}, found {arr.dtype} {arr.shape}")
    return arr


def channel_mean(array: np.ndarray) -> np.ndarray:
    """Mean over all axes but the last (or over everything for 3-D maps), in 0..1,
    computed in row blocks so memory stays bounded."""
    rows = array.shape[0]
    channels = array.shape[-1] if array.ndim == 4 else 1
    total = np.zeros(channels, dtype=np.float64)
    for start in range(0, rows, _SCAN_ROWS):
        block = np.asarray(array[start:start + _SCAN_ROWS])
        total += block.reshape(-1, channels).sum(axis=0, dtype=np.float64)
    pixels = max(1, array.size // channels)
    return total / pixels / 255.0


class Store:
    """One complete split of a store, memory-mapped read-only."""

    def __init__(self, path: Path, meta: dict, images: np.ndarray, labels: np.ndarray, ids: list[str],
                 saliency: np.ndarray | None, saliency_meta: dict | None):
        self.path = path
        self.meta = meta
        self.split: str = meta.get("split", path.name)
        self.count: int = int(meta["count"])
        self.size: int = int(meta["size"])
        self.classes: list[tuple[str, str]] = [(c["wnid"], c["name"]) for c in meta["classes"]]
        self.num_classes = len(self.classes)
        self.source: str = meta.get("source", "")
        self.seed = meta.get("seed")
        self.found: int = int(meta.get("found", self.count))
        self.rejected: int = int(meta.get("rejected", 0))
        self.mean = np.asarray(meta["mean"], dtype=np.float64)
        self.images = images
        self.labels = labels
        self.ids = ids
        self.saliency = saliency
        self.has_saliency = saliency is not None
        self.saliency_mean: float | None = float(saliency_meta["mean"]) if saliency_meta else None
        self.saliency_model: str | None = saliency_meta.get("model") if saliency_meta else None

    @classmethod
    def open(cls, split_dir: str | os.PathLike) -> "Store":
        path = Path(split_dir)
        meta_path = path / META
        if not meta_path.is_file():
            if (path / "train" / META).is_file() or (path / "val" / META).is_file():
                raise UserError(f"{path}: is a store root; name a split, e.g. {path / 'train'}")
            if not path.exists():
                raise UserError(f"{path}: no such store")
            raise UserError(f"{path}: not a salclass store (no {META})")
        meta = read_json(meta_path)
        _check_type(meta, meta_path, STORE_TYPE, STORE_VERSION)
        if meta.get("complete") is not True:
            raise UserError(f"{path}: store is incomplete (an interrupted prepare?); re-run salclass prepare to finish it")
        try:
            n, s = int(meta["count"]), int(meta["size"])
            meta["classes"], meta["mean"]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{meta_path}: missing or bad count/size/classes/mean") from None
        images = _open_npy(path / IMAGES, (n, s, s, 3))
        try:
            labels = np.load(path / LABELS).astype(np.int64)
        except (FileNotFoundError, ValueError, OSError) as e:
            raise UserError(f"{path / LABELS}: not readable ({e})") from None
        if labels.shape != (n,):
            raise UserError(f"{path / LABELS}: expected {n} labels, found {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= len(meta["classes"])):
            raise UserError(f"{path / LABELS}: labels outside 0..{len(meta['classes']) - 1}")
        try:
            ids = (path / IDS).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"{path / IDS}: missing") from None
        if len(ids) != n:
            raise UserError(f"{path / IDS}: expected {n} ids, found {len(ids)}")
        saliency, sal_meta = None, None
        sal_meta_path = path / SALIENCY_META
        if sal_meta_path.is_file():
            candidate = read_json(sal_meta_path)
            _check_type(candidate, sal_meta_path, SALIENCY_TYPE, SALIENCY_VERSION)
            if candidate.get("complete") is True:
                saliency = _open_npy(path / SALIENCY, (n, s, s))
                sal_meta = candidate
        return cls(path, meta, images, labels, ids, saliency, sal_meta)

    def rejected_entries(self) -> list[tuple[str, str]]:
        """(path, reason) of every input that was not stored."""
        rej = self.path / REJECTED
        if not rej.is_file():
            return []
        return [tuple(line.split("\t", 1)) for line in rej.read_text(encoding="utf-8").splitlines() if line]

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "split": self.split,
            "count": self.count,
            "size": self.size,
            "num_classes": self.num_classes,
            "classes": [{"wnid": w, "name": n} for w, n in self.classes],
            "has_saliency": self.has_saliency,
            "saliency_model": self.saliency_model,
            "saliency_mean": self.saliency_mean,
            "mean": [round(float(m), 6) for m in self.mean],
            "found": self.found,
            "rejected": self.rejected,
            "source": self.source,
            "seed": self.seed,
            "bytes": self.disk_bytes(),
        }


def maps_to_uint8(maps: np.ndarray) -> np.ndarray:
    """Float maps (B,H,W) -> uint8 with each map's maximum scaled to 255 (all-zero maps stay 0)."""
    maps = np.asarray(maps, dtype=np.float32)
    peak = maps.reshape(maps.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, 255.0 / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
    return np.clip(np.rint(maps * scale[:, None, None]), 0, 255).astype(np.uint8)


class SaliencyMapWriter:
    """Writes one uint8 map per store row into `saliency.npy`, resumably.

    Progress (`done`) is recorded in `saliency.json` only after the rows it
    covers were flushed to disk, so after a crash `done` never overstates what
    is there; `complete: true` is written by `finish()` alone.
    """

    def __init__(self, split_dir: str | os.PathLike, model_name: str, overwrite: bool = False):
        self.store = Store.open(split_dir)
        self.path = self.store.path
        self.model = str(model_name)
        n, s = self.store.count, self.store.size
        meta_path = self.path / SALIENCY_META
        npy = self.path / SALIENCY
        existing = read_json(meta_path) if meta_path.is_file() else None
        if existing is not None:
            _check_type(existing, meta_path, SALIENCY_TYPE, SALIENCY_VERSION)
        resume = False
        if existing is not None and not overwrite:
            if existing.get("complete") is True:
                raise UserError(f"{self.path}: already has saliency maps (model {existing.get('model')!r}); "
                                "pass overwrite to replace them")
            if existing.get("model") != self.model:
                raise UserError(f"{self.path}: holds unfinished maps of model {existing.get('model')!r}, "
                                f"not {self.model!r}; pass overwrite to start over")
            resume = True
        self._maps = None
        if resume:
            try:
                self._maps = _open_npy(npy, (n, s, s), mode="r+")
            except UserError:
                resume = False
        if resume:
            self._done = min(int(existing.get("done", 0)), n)
        else:
            # Withdraw any claim before touching the array: from here until
            # finish() the maps on disk are not to be trusted.
            self._done = 0
            self._write_meta(complete=False)
            self._maps = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, s, s))
        self._durable = self._done

    @property
    def done(self) -> int:
        """Rows written so far (after construction: the resume point)."""
        return self._done

    @property
    def count(self) -> int:
        return self.store.count

    def _write_meta(self, complete: bool, mean: float | None = None) -> None:
        meta = {"type": SALIENCY_TYPE, "version": SALIENCY_VERSION, "model": self.model,
                "done": self._done, "count": self.store.count, "complete": complete}
        if mean is not None:
            meta["mean"] = mean
        atomic_write_json(self.path / SALIENCY_META, meta)

    def write(self, start: int, maps: np.ndarray) -> None:
        """Store maps for rows start..start+B-1 (uint8 (B,S,S)); rows must follow on from `done`."""
        maps = np.asarray(maps)
        s = self.store.size
        if maps.dtype != np.uint8 or maps.ndim != 3 or maps.shape[1:] != (s, s):
            raise ValueError(f"maps must be uint8 (B,{s},{s}), got {maps.dtype} {maps.shape}")
        if not 0 <= start <= self._done:
            raise ValueError(f"write at row {start} would leave a gap: rows 0..{self._done - 1} are done")
        end = start + maps.shape[0]
        if end > self.store.count:
            raise ValueError(f"rows {start}..{end - 1} exceed the store's {self.store.count} rows")
        self._maps[start:end] = maps
        self._done = max(self._done, end)

    def checkpoint(self) -> None:
        """Flush the written rows, then record them as done."""
        self._maps.flush()
        self._write_meta(complete=False)
        self._durable = self._done

    def finish(self) -> None:
        """Compute the maps' mean and mark them complete; every row must be written."""
        if self._done != self.store.count:
            raise ValueError(f"only {self._done} of {self.store.count} maps written")
        self._maps.flush()
        mean = float(channel_mean(self._maps)[0])
        self._write_meta(complete=True, mean=mean)
        self._durable = self._done


def inspect_cli(store: str, as_json: bool = False) -> int:
    s = Store.open(store)
    info = s.describe()
    if as_json:
        print(json.dumps(info))
        return 0
    names = ", ".join(n for _, n in s.classes[:10]) + (", ..." if s.num_classes > 10 else "")
    mean = ", ".join(f"{m:.4f}" for m in s.mean)
    if s.has_saliency:
        sal = f"yes (model {s.saliency_model}, mean {s.saliency_mean:.4f})"
    else:
        sal = "no"
    print(f"store     {s.path} (split {s.split})")
    print(f"images    {s.count} of {s.size}x{s.size}x3 uint8, {info['bytes'] / 1e9:.3f} GB on disk")
    print(f"classes   {s.num_classes}: {names}")
    print(f"saliency  {sal}")
    print(f"mean RGB  {mean}")
    print(f"found     {s.found} = stored {s.count} + rejected {s.rejected}")
    print(f"source    {s.source} (seed {s.seed})")
    return 0
