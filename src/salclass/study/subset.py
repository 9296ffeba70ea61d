"""A subset of an ImageNet-layout folder, made of symbolic links (no image is copied).

The store's `prepare` keeps one limit for both splits; a study wants its own
numbers of train and validation images per class, so it packs a folder of links
that holds exactly the chosen files, under the same relative paths (the store's
image ids stay the paths relative to the original folder).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from salclass.errors import UserError
from salclass.study.config import DataSettings

NAME_FILES = ("classes.tsv", "words.txt")


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _files(class_dir: Path) -> list[str]:
    return sorted(f.name for f in class_dir.iterdir() if f.is_file() and not f.name.startswith("."))


def choose(data: DataSettings) -> dict[str, dict[str, list[str]]]:
    """split -> class folder -> chosen file names, seeded per (split, class) so adding a class
    does not change the images picked for another."""
    src = data.source
    if src is None or not (src / "train").is_dir():
        raise UserError(f"{src}: not an image folder (expected train/<class>/ inside)")
    classes = _class_dirs(src / "train")
    if data.classes is not None:
        unknown = [c for c in data.classes if c not in classes]
        if unknown:
            raise UserError(f"data.classes: {unknown[0]!r} is not a class folder of {src / 'train'}")
        classes = sorted(set(data.classes))
    elif data.num_classes is not None:
        if data.num_classes > len(classes):
            raise UserError(f"data.num_classes = {data.num_classes}, but {src / 'train'} has {len(classes)} classes")
        classes = classes[: data.num_classes]
    limits = {"train": data.train_per_class, "val": data.val_per_class}
    out: dict[str, dict[str, list[str]]] = {}
    for split, limit in limits.items():
        if not (src / split).is_dir():
            continue
        out[split] = {}
        for wnid in classes:
            folder = src / split / wnid
            files = _files(folder) if folder.is_dir() else []
            if limit is not None and len(files) > limit:
                rng = np.random.default_rng([data.seed, zlib.crc32(f"{split}/{wnid}".encode())])
                files = [files[i] for i in np.sort(rng.choice(len(files), size=limit, replace=False))]
            out[split][wnid] = files
    return out


def make_subset(data: DataSettings, dest: Path) -> Path:
    """Fill `dest` with links to the chosen files (idempotent: existing right links are kept)."""
    src = data.source
    chosen = choose(data)
    for split, per_class in chosen.items():
        for wnid, files in per_class.items():
            folder = dest / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            want = set(files)
            for stale in (f for f in os.listdir(folder) if f not in want):
                (folder / stale).unlink()
            for f in files:
                _link(src / split / wnid / f, folder / f)
    for name in NAME_FILES:
        if (src / name).is_file():
            _link(src / name, dest / name)
    return dest


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
