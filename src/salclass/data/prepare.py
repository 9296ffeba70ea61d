"""`salclass prepare`: pack an ImageNet-layout folder into a shuffled store.

Each split is written straight into its final folder, with `meta.json` saying
`complete: false` from the first byte on. Worker processes decode chunks of
files; the parent writes their pixels in order into a preallocated memory-mapped
`images.npy`, so memory stays constant at any dataset size. Every few seconds
the written rows are flushed and then `progress.json` records how far the
shuffled list was processed, so a re-run with the same inputs resumes from
there and one with other inputs starts over. Rejected files take no row; at the
end the array's header is rewritten to the stored count and the file truncated
(no copy), labels/ids/rejected.tsv are written, and only then `complete: true`.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from tqdm import tqdm

from salclass.data.decode import Rejected, load_square_rgb
from salclass.data.survey import SplitSurvey, Survey, survey
from salclass.data.store import (IDS, IMAGES, LABELS, META, REJECTED, SALIENCY, SALIENCY_META, STORE_TYPE,
                                 STORE_VERSION, Store)
from salclass.errors import UserError
from salclass import checksum
from salclass.io import (allocated_bytes, atomic_write_bytes, atomic_write_json, atomic_write_text, check_free_space,
                         WRITE_ERRNOS, file_sha256, preallocate, read_json, write_error)
from salclass.lock import LOCK_NAME, folder_lock
from salclass.say import say

PROGRESS = "progress.json"
PROGRESS_TYPE = "salclass.store_progress"
CHUNK = 32                  # files per worker task
CHECKPOINT_SECONDS = 5.0    # how much decoding an interruption may cost at most


def _decode_chunk(args: tuple[str, list[str], int]) -> tuple[np.ndarray, list[str | None]]:
    """Worker: decode a chunk; returns the good images stacked and a reason (or None) per file."""
    src, rels, size = args
    good, reasons = [], []
    for rel in rels:
        try:
            good.append(load_square_rgb(os.path.join(src, rel), size))
            reasons.append(None)
        except Rejected as e:
            reasons.append(str(e))
    arr = np.stack(good) if good else np.zeros((0, size, size, 3), np.uint8)
    return arr, reasons


def _shrink_npy(path: Path, rows: int) -> None:
    """Cut a C-order .npy to its first `rows` rows in place: rewrite the shape in
    the header (padded to the same length, as the format allows) and truncate."""
    with open(path, "r+b") as f:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
        assert not fortran and rows <= shape[0]
        new_shape = (rows,) + tuple(shape[1:])
        text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": new_shape})
        prefix = 6 + 2 + (2 if major == 1 else 4)
        room = offset - prefix
        if len(text) + 1 > room:
            raise RuntimeError(f"{path}: new header does not fit")
        try:
            f.seek(prefix)
            f.write((text.ljust(room - 1) + "\n").encode("latin1"))
            f.truncate(offset + rows * int(np.prod(shape[1:])) * dtype.itemsize)
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise write_error(path, e) from None
            raise
        f.flush()
        os.fsync(f.fileno())


def _status(split_dir: Path) -> tuple[str, dict | None]:
    """'absent' | 'foreign' | 'incomplete' | 'complete', and the meta if ours."""
    if not split_dir.exists():
        return "absent", None
    if not split_dir.is_dir():
        return "foreign", None
    meta_path = split_dir / META
    if not meta_path.is_file():
        return ("foreign" if any(p.name != LOCK_NAME for p in split_dir.iterdir()) else "absent"), None
    try:
        meta = read_json(meta_path)
    except UserError:
        return "foreign", None
    if not isinstance(meta, dict) or meta.get("type") != STORE_TYPE:
        return "foreign", None
    return ("complete" if meta.get("complete") is True else "incomplete"), meta


class _SplitWriter:
    def __init__(self, found: Survey, sp: SplitSurvey, out_dir: Path, workers: int, progress: bool):
        self.survey, self.sp, self.dir = found, sp, out_dir
        self.workers, self.progress = workers, progress
        self.n = len(sp.items)
        self.size = found.size

    def _meta(self, complete: bool, **extra) -> dict:
        return {"type": STORE_TYPE, "version": STORE_VERSION, "split": self.sp.split, **extra,
                "size": self.size, "classes": [{"wnid": w, "name": n} for w, n in self.survey.classes],
                "source": str(self.survey.src), "seed": self.survey.seed, "fingerprint": self.sp.fingerprint,
                "complete": complete}

    def _start_over(self) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Withdraw any earlier claim of completeness before removing anything.
        checksum.write_json(self.dir / META, self._meta(False))
        for name in (IMAGES, LABELS, IDS, REJECTED, SALIENCY, SALIENCY_META, PROGRESS):
            (self.dir / name).unlink(missing_ok=True)
        mm = np.lib.format.open_memmap(self.dir / IMAGES, mode="w+", dtype=np.uint8,
                                       shape=(self.n, self.size, self.size, 3))
        del mm
        preallocate(self.dir / IMAGES)
        state = {"position": 0, "stored": 0, "sums": [0.0, 0.0, 0.0], "rejected": []}
        self._save_progress(state)
        return state

    def _save_progress(self, state: dict) -> None:
        atomic_write_json(self.dir / PROGRESS, {"type": PROGRESS_TYPE, "fingerprint": self.sp.fingerprint, **state})

    def _resume_state(self) -> dict | None:
        try:
            prog = read_json(self.dir / PROGRESS)
            arr = np.load(self.dir / IMAGES, mmap_mode="r")
        except (UserError, OSError, ValueError):
            return None
        if (prog.get("type") != PROGRESS_TYPE or prog.get("fingerprint") != self.sp.fingerprint
                or arr.shape != (self.n, self.size, self.size, 3)):
            return None
        return {k: prog[k] for k in ("position", "stored", "sums", "rejected")}

    def run(self, resume: bool) -> dict:
        state = self._resume_state() if resume else None
        if state is None:
            state = self._start_over()
        elif state["position"] and self.progress:
            say(f"{self.sp.split}: resuming at {state['position']} of {self.n} files")
        images = np.load(self.dir / IMAGES, mmap_mode="r+")
        sums = np.asarray(state["sums"], dtype=np.float64)
        rejected_pos = {int(p): r for p, r in state["rejected"]}
        stored, position = int(state["stored"]), int(state["position"])
        src = str(self.survey.src)
        chunks = [(start, min(start + CHUNK, self.n)) for start in range(position, self.n, CHUNK)]
        tasks = ((src, [self.sp.items[i][0] for i in range(a, b)], self.size) for a, b in chunks)
        bar = tqdm(total=self.n, initial=position, desc=f"prepare {self.sp.split}", unit="img",
                   file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
        last = time.monotonic()
        try:
            for (a, b), (arr, reasons) in zip(chunks, _decoded(tasks, self.workers)):
                k = arr.shape[0]
                images[stored:stored + k] = arr
                sums += arr.reshape(-1, 3).sum(axis=0, dtype=np.float64)
                stored += k
                for i, reason in zip(range(a, b), reasons):
                    if reason is not None:
                        rejected_pos[i] = reason
                position = b
                bar.update(b - a)
                if time.monotonic() - last > CHECKPOINT_SECONDS:
                    images.flush()
                    self._save_progress({"position": position, "stored": stored, "sums": sums.tolist(),
                                         "rejected": sorted(rejected_pos.items())})
                    last = time.monotonic()
            images.flush()
            self._save_progress({"position": position, "stored": stored, "sums": sums.tolist(),
                                 "rejected": sorted(rejected_pos.items())})
        finally:
            bar.close()
            del images
        return self._finish(stored, sums, rejected_pos)

    def _finish(self, stored: int, sums: np.ndarray, rejected_pos: dict[int, str]) -> dict:
        sp = self.sp
        rejected = list(sp.prerejected) + [(sp.items[i][0], r) for i, r in sorted(rejected_pos.items())]
        kept = [item for i, item in enumerate(sp.items) if i not in rejected_pos]
        assert len(kept) == stored
        atomic_write_text(self.dir / REJECTED, "".join(f"{p}\t{r}\n" for p, r in rejected))
        found = len(sp.items) + len(sp.prerejected)
        if stored == 0:
            raise UserError(f"{self.survey.src / sp.split}: none of {found} files could be read "
                            f"(reasons in {self.dir / REJECTED})")
        _shrink_npy(self.dir / IMAGES, stored)
        labels = _npy_bytes(np.asarray([lab for _, lab in kept], dtype=np.int16))
        ids = "".join(f"{rel}\n" for rel, _ in kept).encode("utf-8")
        atomic_write_bytes(self.dir / LABELS, labels)
        atomic_write_bytes(self.dir / IDS, ids)
        # images.npy is hashed as it lies on disk (it was written through a memory map).
        checksums = {IMAGES: file_sha256(self.dir / IMAGES), LABELS: hashlib.sha256(labels).hexdigest(),
                     IDS: hashlib.sha256(ids).hexdigest()}
        mean = (sums / (stored * self.size * self.size) / 255.0).tolist()
        checksum.write_json(self.dir / META, self._meta(True, count=stored, found=found, rejected=len(rejected),
                                                      mean=[round(m, 6) for m in mean], checksums=checksums))
        (self.dir / PROGRESS).unlink(missing_ok=True)
        return {"split": sp.split, "found": found, "stored": stored, "rejected": len(rejected)}


def _bytes_needed(sp: SplitSurvey, size: int, split_dir: Path) -> int:
    """What a split takes on disk at most (no file rejected), less what its
    current images.npy holds already (kept when resuming, deleted when starting over)."""
    n = len(sp.items)
    ids = sum(len(rel.encode()) + 1 for rel, _ in sp.items)
    return n * size * size * 3 + 2 * n + ids + 65536 - allocated_bytes(split_dir / IMAGES)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _worker_signals() -> None:
    """Workers leave signals to the parent, which stops them (SIGTERM, by
    terminating the pool) without a traceback from each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _decoded(tasks, workers: int):
    """Decoded chunks in task order. With several workers at most a few chunks
    per worker are in flight, so results never pile up in memory."""
    if workers <= 1:
        yield from map(_decode_chunk, tasks)
        return
    with multiprocessing.Pool(workers, initializer=_worker_signals) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_decode_chunk, (task,)))
            if len(pending) >= 3 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def prepare(src: str | os.PathLike, out: str | os.PathLike, size: int, seed: int = 0, workers: int | None = None,
            overwrite: bool = False, limit_per_class: int | None = None, classes: list[str] | None = None,
            progress: bool = True) -> list[dict]:
    """Pack SRC into OUT/<split>/; returns per split {split, found, stored, rejected}.

    An interrupted earlier run with the same inputs is resumed; one with other
    inputs is started over. A complete OUT is replaced only with `overwrite`;
    if only some splits are complete (and from these same inputs) the rest are
    finished and the complete ones kept."""
    p = survey(src, size, seed=seed, limit_per_class=limit_per_class, classes=classes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    with ExitStack() as held:
        # The root for the whole store (its splits belong together), each split
        # against `saliency predict` and runs reading it.
        held.enter_context(folder_lock(out, exclusive=True))
        for sp in p.splits:
            held.enter_context(folder_lock(out / sp.split, exclusive=True))
        return _prepare_locked(p, out, workers, overwrite, progress)


def _prepare_locked(p: Survey, out: Path, workers: int, overwrite: bool, progress: bool) -> list[dict]:
    statuses = {sp.split: _status(out / sp.split) for sp in p.splits}
    for split, (status, _) in statuses.items():
        if status == "foreign":
            raise UserError(f"{out / split}: exists and is not a salclass store; not writing into it")
    if not overwrite and all(st == "complete" for st, _ in statuses.values()):
        raise UserError(f"{out}: already holds a complete store; pass --overwrite to rebuild it")
    to_write = [sp for sp in p.splits if overwrite or statuses[sp.split][0] != "complete"]
    check_free_space(out, sum(_bytes_needed(sp, p.size, out / sp.split) for sp in to_write),
                     f"the store ({', '.join(sp.split for sp in to_write)})")
    results = []
    for sp in p.splits:
        status, meta = statuses[sp.split]
        if status == "complete" and not overwrite:
            if meta.get("fingerprint") != sp.fingerprint:
                raise UserError(f"{out / sp.split}: complete store from other inputs; pass --overwrite to rebuild it")
            s = Store.open(out / sp.split)
            results.append({"split": sp.split, "found": s.found, "stored": s.count, "rejected": s.rejected,
                            "kept": True})
            continue
        writer = _SplitWriter(p, sp, out / sp.split, workers, progress)
        results.append(writer.run(resume=not overwrite and status == "incomplete"))
    return results


def prepare_cli(src: str, out: str, size: int, seed: int = 0, workers: int | None = None, overwrite: bool = False,
                limit_per_class: int | None = None, classes: str | None = None) -> int:
    wanted = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    if classes is not None and not wanted:
        raise UserError("--classes: give at least one class folder name")
    results = prepare(src, out, size, seed=seed, workers=workers, overwrite=overwrite,
                      limit_per_class=limit_per_class, classes=wanted)
    for r in results:
        split_dir = Path(out) / r["split"]
        note = " (already complete, kept)" if r.get("kept") else ""
        see = f"; reasons in {split_dir / REJECTED}" if r["rejected"] else ""
        print(f"{r['split']}: found {r['found']} = stored {r['stored']} + rejected {r['rejected']}"
              f" -> {split_dir}{note}{see}")
    return 0
