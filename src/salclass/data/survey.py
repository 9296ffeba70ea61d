"""The survey before packing: which files of an ImageNet-layout folder become a store, under
which labels, in which shuffled order, and which are refused before decoding (names that are
not valid UTF-8 or hold line breaks, files outside a class folder).

The order depends only on the seed and the names, so the same inputs give the same store and a
resumed `prepare` finds its place (`SplitSurvey.fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salclass.errors import UserError

SPLITS = ("train", "val")
MIN_SIZE = 8
# Where a source folder may name its classes: (wnid, name) rows, or ImageNet's synonym list.
NAME_FILES = ("classes.tsv", "words.txt")


@dataclass
class SplitSurvey:
    split: str
    items: list[tuple[str, int]]                     # (id relative to SRC, label) in shuffled order
    prerejected: list[tuple[str, str]] = field(default_factory=list)
    fingerprint: str = ""


@dataclass
class Survey:
    src: Path
    size: int
    seed: int
    classes: list[tuple[str, str]]
    splits: list[SplitSurvey]


def _read_class_names(src: Path) -> dict[str, str]:
    """wnid -> name from SRC/classes.tsv (wnid, name) or ImageNet's SRC/words.txt."""
    for fname in NAME_FILES:
        path = src / fname
        if not path.is_file():
            continue
        names = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.rstrip("\n").split("\t", 1)
            if len(parts) != 2 or parts[0] == "wnid":
                continue
            name = parts[1].strip()
            # words.txt lists synonyms ("tench, Tinca tinca"); the first is the usual name.
            names[parts[0].strip()] = name.split(",")[0].strip() if fname == "words.txt" else name
        return names
    return {}


def _files_under(folder: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in files if not f.startswith("."))
    return sorted(out)


def _class_dirs(split_dir: Path) -> list[str]:
    dirs = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    for d in dirs:
        why = _bad_name(d)
        if why is not None:
            raise UserError(f"{split_dir}: class folder {_printable(d)}: its {why}; rename it")
    return dirs


# Characters that would split a line of ids.txt or a field of rejected.tsv.
_BREAKS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _bad_name(rel: str) -> str | None:
    """Why a path (as os.walk gives it: undecodable bytes as surrogates) cannot
    be an id of the store, or None."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if any(c in rel for c in _BREAKS):
        return "name holds a line break or tab"
    return None


def _printable(rel: str) -> str:
    """A path as one field of one line: undecodable bytes as \\xNN, breaks as \\n, \\r, \\t."""
    text = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    for c, shown in _BREAKS.items():
        text = text.replace(c, shown)
    return text


def _fingerprint(src: Path, size: int, seed: int, classes: list, sp: SplitSurvey) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([str(src), size, seed, classes, sp.split, sp.items, sp.prerejected]).encode())
    return h.hexdigest()


def survey(src: str | os.PathLike, size: int, seed: int = 0, limit_per_class: int | None = None,
           classes: list[str] | None = None) -> Survey:
    """Scan SRC and fix, for each split, the shuffled list of files to pack."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise UserError(f"{src}: no such folder")
    if size < MIN_SIZE:
        raise UserError(f"--size {size}: must be at least {MIN_SIZE}")
    if limit_per_class is not None and limit_per_class < 1:
        raise UserError(f"--limit-per-class {limit_per_class}: must be at least 1")
    present = [s for s in SPLITS if (src / s).is_dir()]
    if not present:
        raise UserError(f"{src}: not an image folder (expected train/<class>/ and/or val/<class>/ inside)")
    per_split = {}
    for split in present:
        dirs = _class_dirs(src / split)
        if not dirs:
            raise UserError(f"{src / split}: no class folders (expected {split}/<class>/<images>)")
        per_split[split] = dirs
    # Labels are indices into the sorted train classes; a val-only SRC indexes its own.
    wnids = per_split["train"] if "train" in per_split else per_split["val"]
    if "train" in per_split and "val" in per_split:
        extra = sorted(set(per_split["val"]) - set(wnids))
        if extra:
            raise UserError(f"{src / 'val' / extra[0]}: class missing from the train split "
                            f"({len(extra)} val class(es) not in train)")
    if classes:
        unknown = [c for c in classes if c not in wnids]
        if unknown:
            raise UserError(f"--classes: {unknown[0]!r} is not a class folder of {src} (e.g. {wnids[0]})")
        wnids = sorted(set(classes))
    names = _read_class_names(src)
    class_list = [(w, names.get(w, w)) for w in wnids]
    label_of = {w: i for i, w in enumerate(wnids)}

    splits = []
    for split in present:
        items: list[tuple[str, int]] = []
        prerejected = []
        split_dir = src / split
        for entry in sorted(split_dir.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                prerejected.append((_printable(str(entry.relative_to(src))), "not inside a class folder"))
        for wnid in per_split[split]:
            if wnid not in label_of:
                continue
            files = _files_under(split_dir / wnid)
            if not files:
                raise UserError(f"{split_dir / wnid}: empty class folder")
            named = []
            for f in files:
                why = _bad_name(os.path.relpath(f, src))
                if why is None:
                    named.append(f)
                else:
                    prerejected.append((_printable(os.path.relpath(f, src)), f"file {why}"))
            files = named
            if limit_per_class is not None and len(files) > limit_per_class:
                # Seeded per class name, so the choice does not depend on which other classes were picked.
                rng = np.random.default_rng([seed, zlib.crc32(wnid.encode())])
                keep = np.sort(rng.choice(len(files), size=limit_per_class, replace=False))
                files = [files[i] for i in keep]
            label = label_of[wnid]
            items.extend((os.path.relpath(f, src), label) for f in files)
        rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
        items = [items[i] for i in rng.permutation(len(items))]
        sp = SplitSurvey(split, items, prerejected)
        sp.fingerprint = _fingerprint(src, size, seed, class_list, sp)
        splits.append(sp)
    if sum(len(sp.items) for sp in splits) == 0:
        raise UserError(f"{src}: no images found")
    return Survey(src, size, seed, class_list, splits)
