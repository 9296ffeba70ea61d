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

Integrity: meta.json and saliency.json carry a checksum of their own
(salclass.checksum), checked on every open: an edited mean or count is one line,
never a run trained with it. A store from before that opens as unverified
(`meta_verified` False). The sha256 of every array (and of ids.txt) is recorded beside the
complete flag. `Store.verify()` compares the small files (labels, ids: what a
training run checks when it starts); `verify(full=True)` also the images and
maps (`salclass inspect --verify`). Damaged or hand-edited maps do not stop the
store from opening: they count as absent, with the reason kept for whoever
needs them, so a run without maps never depends on them and
`saliency predict --overwrite` can rebuild them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from salclass import checksum
from salclass.errors import UserError
from salclass.io import allocated_bytes, check_free_space, file_sha256, preallocate, read_json

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


def _check_fields(meta: dict, path: Path, fields: dict[str, tuple[type | tuple[type, ...], bool]]) -> None:
    """One line for a hand-edited file: the first key that is missing or of the wrong type."""
    for key, (types, required) in fields.items():
        if key not in meta:
            if required:
                raise UserError(f"{path}: missing '{key}'")
            continue
        value = meta[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise UserError(f"{path}: '{key}' has the wrong type ({type(value).__name__}: {str(value)[:60]!r})")


_REBUILD = "rebuild the store: salclass prepare SRC {path} --overwrite (with its original options)"


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


_NUMBER = (int, float)
_META_FIELDS = {"count": (int, True), "size": (int, True), "classes": (list, True), "mean": (list, True),
                "split": (str, False), "source": (str, False), "seed": ((int, type(None)), False),
                "found": (int, False), "rejected": (int, False), "fingerprint": (str, False),
                "checksums": (dict, False)}
_SALIENCY_FIELDS = {"model": (str, True), "done": (int, False), "count": (int, False), "complete": (bool, True),
                    "mean": (_NUMBER, False), "sha256": (str, False)}


def _check_meta(meta: dict, path: Path) -> None:
    _check_fields(meta, path, _META_FIELDS)
    if meta["count"] < 0 or meta["size"] < 1:
        raise UserError(f"{path}: count {meta['count']} / size {meta['size']} out of range")
    for i, c in enumerate(meta["classes"]):
        if not (isinstance(c, dict) and isinstance(c.get("wnid"), str) and isinstance(c.get("name"), str)):
            raise UserError(f"{path}: classes[{i}] is not {{'wnid': text, 'name': text}}")
    if len(meta["mean"]) != 3 or not all(isinstance(m, _NUMBER) and not isinstance(m, bool) for m in meta["mean"]):
        raise UserError(f"{path}: 'mean' is not three numbers")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.get("checksums", {}).items()):
        raise UserError(f"{path}: 'checksums' is not a mapping of file name to text")


def _check_saliency_meta(meta: dict, path: Path) -> None:
    _check_fields(meta, path, _SALIENCY_FIELDS)
    if meta["complete"] and "mean" not in meta:
        raise UserError(f"{path}: complete maps without a 'mean'")


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
        self.saliency_meta = saliency_meta
        # Why maps marked complete could not be used (damaged files), for whoever needs them.
        self.saliency_problem: str | None = None
        # Whether meta.json carried a checksum (and matched it: a mismatch does not open).
        self.meta_verified = False

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
        meta, meta_verified = checksum.check(meta, meta_path, _REBUILD.format(path=path))
        if meta.get("complete") is not True:
            raise UserError(f"{path}: store is incomplete (an interrupted prepare?); re-run salclass prepare to finish it")
        _check_meta(meta, meta_path)
        n, s = meta["count"], meta["size"]
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
        saliency, sal_meta, problem = None, None, None
        sal_meta_path = path / SALIENCY_META
        if sal_meta_path.is_file():
            try:
                candidate = read_saliency_meta(path)
                if candidate["complete"]:
                    saliency = _open_npy(path / SALIENCY, (n, s, s))
                    sal_meta = candidate
            except UserError as e:
                problem = str(e)
        store = cls(path, meta, images, labels, ids, saliency, sal_meta)
        store.saliency_problem = problem
        store.meta_verified = meta_verified
        return store

    def no_maps_reason(self) -> str:
        """Why this split has no usable maps, with what to run, for an error line."""
        if self.saliency_problem is not None:
            return (f"{self.saliency_problem}: the saliency maps are damaged; rebuild them with "
                    f"salclass saliency predict {self.path} --overwrite")
        return f"{self.path}: has no complete saliency maps (run: salclass saliency predict {self.path})"

    def verify(self, full: bool = False) -> list[str]:
        """Compare files with the checksums recorded when they were written:
        labels.npy and ids.txt (small: what a run checks at its start), with
        `full` also images.npy and saliency.npy (a read of the whole store).
        Returns the names checked (meta.json first when its own checksum was
        checked on opening); UserError naming the first damaged file and how to
        rebuild it. A store from before checksums were recorded has none to
        compare, and [] is returned."""
        recorded = dict(self.meta.get("checksums", {}))
        names = [LABELS, IDS] + ([IMAGES] if full else [])
        checked = [META] if self.meta_verified else []
        for name in names:
            if name not in recorded:
                continue
            if file_sha256(self.path / name) != recorded[name]:
                raise UserError(f"{self.path / name}: damaged (its sha256 differs from the one recorded when it "
                                f"was written); rebuild the store: salclass prepare {self.source or 'SRC'} "
                                f"{self.path.parent} --size {self.size} --overwrite (with its original options)")
            checked.append(name)
        if full and self.saliency_problem is not None:
            raise UserError(self.no_maps_reason())
        if full and self.has_saliency and "sha256" in self.saliency_meta:
            if file_sha256(self.path / SALIENCY) != self.saliency_meta["sha256"]:
                self.saliency_problem = f"{self.path / SALIENCY}: its sha256 differs from the one recorded"
                raise UserError(self.no_maps_reason())
            checked.append(SALIENCY)
        return checked

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
            "saliency_problem": self.saliency_problem,
            "saliency_model": self.saliency_model,
            "saliency_mean": self.saliency_mean,
            "mean": [round(float(m), 6) for m in self.mean],
            "found": self.found,
            "rejected": self.rejected,
            "source": self.source,
            "seed": self.seed,
            "bytes": self.disk_bytes(),
        }


def read_saliency_meta(split_dir: Path) -> dict:
    """saliency.json of a split, checked field by field (UserError naming the file)."""
    path = Path(split_dir) / SALIENCY_META
    meta = read_json(path)
    _check_type(meta, path, SALIENCY_TYPE, SALIENCY_VERSION)
    meta, _ = checksum.check(meta, path, f"rebuild the maps: salclass saliency predict {path.parent} --overwrite")
    _check_saliency_meta(meta, path)
    return meta


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
        existing = None
        if meta_path.is_file():
            try:
                existing = read_saliency_meta(self.path)
            except UserError:
                # Damaged maps are what overwrite is for; without it, say so.
                if not overwrite:
                    raise UserError(self.store.no_maps_reason() if self.store.saliency_problem else
                                    f"{meta_path}: damaged; rebuild the maps with salclass saliency predict "
                                    f"{self.path} --overwrite") from None
        resume = False
        if existing is not None and not overwrite:
            if self.store.saliency_problem is not None:
                raise UserError(self.store.no_maps_reason())
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
            check_free_space(self.path, n * s * s + 4096 - allocated_bytes(npy), f"{n} saliency maps")
            self._write_meta(complete=False)
            self._maps = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, s, s))
            preallocate(npy)
        self._durable = self._done

    @property
    def done(self) -> int:
        """Rows written so far (after construction: the resume point)."""
        return self._done

    @property
    def count(self) -> int:
        return self.store.count

    def _write_meta(self, complete: bool, mean: float | None = None, sha256: str | None = None) -> None:
        meta = {"type": SALIENCY_TYPE, "version": SALIENCY_VERSION, "model": self.model,
                "done": self._done, "count": self.store.count, "complete": complete}
        if mean is not None:
            meta["mean"] = mean
        if sha256 is not None:
            meta["sha256"] = sha256
        checksum.write_json(self.path / SALIENCY_META, meta)

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
        self._write_meta(complete=True, mean=mean, sha256=file_sha256(self.path / SALIENCY))
        self._durable = self._done


def inspect_cli(store: str, as_json: bool = False, verify: bool = False) -> int:
    s = Store.open(store)
    info = s.describe()
    if verify:
        info["verified"] = s.verify(full=True)
    if as_json:
        print(json.dumps(info))
        return 0
    names = ", ".join(n for _, n in s.classes[:10]) + (", ..." if s.num_classes > 10 else "")
    mean = ", ".join(f"{m:.4f}" for m in s.mean)
    if s.has_saliency:
        sal = f"yes (model {s.saliency_model}, mean {s.saliency_mean:.4f})"
    elif s.saliency_problem is not None:
        sal = f"damaged ({s.saliency_problem}); rebuild: salclass saliency predict {s.path} --overwrite"
    else:
        sal = "no"
    print(f"store     {s.path} (split {s.split})")
    print(f"images    {s.count} of {s.size}x{s.size}x3 uint8, {info['bytes'] / 1e9:.3f} GB on disk")
    print(f"classes   {s.num_classes}: {names}")
    print(f"saliency  {sal}")
    print(f"mean RGB  {mean}")
    print(f"found     {s.found} = stored {s.count} + rejected {s.rejected}")
    print(f"source    {s.source} (seed {s.seed})")
    if verify:
        print(f"verified  {', '.join(info['verified']) or 'nothing: no checksums recorded (an older store)'}")
        if not s.meta_verified:
            print(f"unverified {META}: written without a checksum (an older store)")
    return 0
