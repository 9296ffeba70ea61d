"""One reader per layout of fixation data, and `open_fixation_data`, which finds the reader of a folder."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np

from salclass.errors import UserError
from salclass.saliency.fixations.blur import OSIE_SIGMA, SALICON_SIGMA
from salclass.saliency.fixations.dataset import FixationDataset, MapData, PointData
from salclass.saliency.fixations.files import (IMAGE_EXTENSIONS, POINT_EXTENSIONS, files_by_stem, load_mat,
                                               load_points_file)
from salclass.saliency.fixations.points import Fixations, ReadOptions, fixations_from
from salclass.saliency.fixations.splits import osie_split

_READERS: dict[str, type[FixationDataset]] = {}


def register(name: str) -> Callable[[type[FixationDataset]], type[FixationDataset]]:
    """`@register("name")` on a FixationDataset subclass: the reader of one layout; readers
    are asked in registration order, so a specific layout comes before a generic one."""
    def deco(cls: type[FixationDataset]) -> type[FixationDataset]:
        cls.kind = name
        _READERS[name] = cls
        return cls

    return deco


@functools.lru_cache(maxsize=4)
def _osie_records(path: str, mtime: float) -> dict[str, Fixations] | None:
    """OSIE's fixations.mat read into points, or None if the file holds
    something else (e.g. a cell array of images x subjects)."""
    mat = load_mat(Path(path))
    recs = np.atleast_1d(mat.get("fixations", np.zeros(0)))
    if recs.size == 0 or not all(hasattr(r, "img") and hasattr(r, "subjects") for r in recs.ravel()):
        return None
    out: dict[str, Fixations] = {}
    for rec in recs.ravel():
        xs, ys, ss = [], [], []
        for s, subj in enumerate(np.atleast_1d(rec.subjects)):
            # MATLAB pixel 1 is our pixel 0.
            x = np.atleast_1d(np.asarray(subj.fix_x, dtype=np.float64)) - 1.0
            y = np.atleast_1d(np.asarray(subj.fix_y, dtype=np.float64)) - 1.0
            xs.append(x)
            ys.append(y)
            ss.append(np.full(x.shape, s, dtype=np.int64))
        out[str(rec.img)] = Fixations(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss))
    return out


def _osie_file(root: Path) -> dict[str, Fixations] | None:
    mat = root / "fixations.mat"
    if not (mat.is_file() and (root / "stimuli").is_dir()):
        return None
    return _osie_records(str(mat.resolve()), mat.stat().st_mtime)


@register("osie")
class OsieDataset(PointData):
    """OSIE (or data in its format): 15 subjects' fixations per image."""

    layout = "stimuli/ + fixations.mat with OSIE's records (img, subjects with fix_x, fix_y)"
    ppd_source = "OSIE's set-up: its authors blur their maps with 24 px"

    @classmethod
    def detect(cls, root):
        return _osie_file(root) is not None

    @classmethod
    def open(cls, root, opts):
        points = _osie_file(root)
        stim = root / "stimuli"
        absent = [n for n in sorted(points) if not (stim / n).is_file()]
        if absent:
            raise UserError(f"{stim}: missing stimulus '{absent[0]}' named in fixations.mat")
        return cls(root, {n: stim / n for n in points}, points, opts, order_is_users=False)

    @functools.cached_property
    def is_osie(self) -> bool:
        """OSIE itself, not other data in its format: its recorded split and viewing geometry apply."""
        return set(self._images) == set(sum(osie_split().values(), []))

    @property
    def default_ppd(self):
        return OSIE_SIGMA if self.is_osie else None

    def split_names(self):
        return osie_split() if self.is_osie else super().split_names()


def _mit1003_folders(root: Path) -> tuple[Path, Path] | None:
    stim = root / "ALLSTIMULI" if (root / "ALLSTIMULI").is_dir() else root
    maps = root / "ALLFIXATIONMAPS" if (root / "ALLFIXATIONMAPS").is_dir() else stim
    if not any(p.stem.endswith("_fixMap") for p in maps.iterdir() if p.is_file()):
        return None
    return stim, maps


@register("mit1003")
class Mit1003Dataset(MapData):
    """MIT1003 as distributed: each stimulus with its `_fixMap` and `_fixPts` images."""

    layout = "MIT1003: ALLSTIMULI/ + ALLFIXATIONMAPS/ (NAME_fixMap.jpg, NAME_fixPts.jpg), or all in one folder"
    points_hint = "the NAME_fixPts images hold them"

    @classmethod
    def detect(cls, root):
        return _mit1003_folders(root) is not None

    @classmethod
    def open(cls, root, opts):
        stim, folder = _mit1003_folders(root)
        images = {p.name: p for p in files_by_stem(stim, IMAGE_EXTENSIONS).values()
                  if not p.stem.endswith(("_fixMap", "_fixPts"))}
        found = files_by_stem(folder, IMAGE_EXTENSIONS)
        by_image = {n: {kind: found.get(f"{Path(n).stem}_{kind}") for kind in ("fixMap", "fixPts")} for n in images}
        maps = {n: f["fixMap"] for n, f in by_image.items() if f["fixMap"]}
        fix = {n: f["fixPts"] for n, f in by_image.items() if f["fixPts"]}
        return cls(root, images, maps, opts, folder, folder, fix_maps=fix)


def _cat2000_folder(root: Path) -> Path | None:
    for base in (root, root / "trainSet"):
        if (base / "Stimuli").is_dir() and (base / "FIXATIONMAPS").is_dir():
            return base
    return None


@register("cat2000")
class Cat2000Dataset(MapData):
    """CAT2000 as distributed: 20 categories, maps and fixation locations per image."""

    layout = "CAT2000: Stimuli/CATEGORY/ + FIXATIONMAPS/CATEGORY/ (+ FIXATIONLOCS/CATEGORY/*.mat), or trainSet/ holding them"
    points_hint = "FIXATIONLOCS/CATEGORY/NAME.mat hold them"

    @classmethod
    def detect(cls, root):
        return _cat2000_folder(root) is not None

    @classmethod
    def open(cls, root, opts):
        base = _cat2000_folder(root)
        images, maps, fix = {}, {}, {}
        for cat in sorted(p for p in (base / "Stimuli").iterdir() if p.is_dir()):
            found_maps = files_by_stem(base / "FIXATIONMAPS" / cat.name, IMAGE_EXTENSIONS)
            found_fix = files_by_stem(base / "FIXATIONLOCS" / cat.name, (".mat",))
            for stem, path in files_by_stem(cat, IMAGE_EXTENSIONS).items():
                name = f"{cat.name}/{path.name}"
                images[name] = path
                if stem in found_maps:
                    maps[name] = found_maps[stem]
                if stem in found_fix:
                    fix[name] = found_fix[stem]
        return cls(root, images, maps, opts, base / "FIXATIONMAPS", base / "FIXATIONLOCS", fix_maps=fix)


def _salicon_files(root: Path) -> list[Path]:
    if not (root / "images").is_dir():
        return []
    return sorted(p for folder in (root, root / "fixations") if folder.is_dir()
                  for p in folder.glob("fixations*.json") if p.is_file())


@register("salicon")
class SaliconDataset(PointData):
    """SALICON: images with mouse-tracked fixations in COCO-style JSON."""

    layout = ("SALICON: images/ (any depth) + fixations*.json (images with file_name; annotations with "
              "image_id, worker_id and 1-based (row, column) fixations)")
    default_ppd = SALICON_SIGMA
    ppd_source = "the SALICON API's blur of 19 px"

    @classmethod
    def detect(cls, root):
        return bool(_salicon_files(root))

    @classmethod
    def open(cls, root, opts):
        on_disk = {p.name: p for p in sorted((root / "images").rglob("*"))
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
        images, rows, cols, workers = {}, {}, {}, {}
        worker_index: dict = {}
        for path in _salicon_files(root):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                ids = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
                for ann in data["annotations"]:
                    name = ids[int(ann["image_id"])]
                    pts = np.asarray(ann["fixations"], dtype=np.float64).reshape(-1, 2)
                    subject = worker_index.setdefault(ann["worker_id"], len(worker_index))
                    rows.setdefault(name, []).append(pts[:, 0] - 1.0)
                    cols.setdefault(name, []).append(pts[:, 1] - 1.0)
                    workers.setdefault(name, []).append(np.full(len(pts), subject, dtype=np.int64))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"{path}: not SALICON fixations ({type(e).__name__}: {e})") from None
            for name in ids.values():
                if name in on_disk:
                    images[name] = on_disk[name]
        if not images:
            raise UserError(f"{root / 'images'}: none of the images named in the fixation files")
        points = {n: Fixations(np.concatenate(cols[n]), np.concatenate(rows[n]), np.concatenate(workers[n]))
                  for n in images if n in rows}
        return cls(root, images, points, opts, order_is_users=False)


def _image_folder(root: Path) -> Path | None:
    return next((root / d for d in ("images", "stimuli") if (root / d).is_dir()), None)


@register("folder")
class FolderDataset(MapData):
    """images/ + maps/ with same-named files, optionally fixations/."""

    layout = ("images/ + maps/ (same-named ground-truth maps), optionally fixations/ (binary maps, or "
              ".npy/.csv/.mat point lists)")
    points_hint = "put each image's fixations in fixations/: a binary map or an (N, 2) .npy/.csv/.mat of points"

    @classmethod
    def detect(cls, root):
        return (root / "images").is_dir() and (root / "maps").is_dir()

    @classmethod
    def open(cls, root, opts):
        found = files_by_stem(root / "images", IMAGE_EXTENSIONS)
        images = {p.name: p for p in found.values()}
        found_maps = files_by_stem(root / "maps", IMAGE_EXTENSIONS + (".npy",))
        maps = {p.name: found_maps[stem] for stem, p in found.items() if stem in found_maps}
        fix = files_by_stem(root / "fixations", IMAGE_EXTENSIONS + POINT_EXTENSIONS)
        by_name = {p.name: fix[stem] for stem, p in found.items() if stem in fix}
        return cls(root, images, maps, opts, root / "maps", root / "fixations",
                   fix_maps={n: f for n, f in by_name.items() if f.suffix.lower() in IMAGE_EXTENSIONS},
                   fix_points={n: f for n, f in by_name.items() if f.suffix in POINT_EXTENSIONS})


def _points_source(root: Path) -> Path | None:
    """fixations/ with a point file per image, or the one .mat beside or one folder below the images."""
    if files_by_stem(root / "fixations", POINT_EXTENSIONS):
        return root / "fixations"
    mats = sorted(p for folder in [root, *sorted(d for d in root.iterdir() if d.is_dir())]
                  for p in folder.glob("*.mat") if p.is_file())
    return mats[0] if len(mats) == 1 else None


@register("points")
class PointsDataset(PointData):
    """Images with fixation points in the coordinate order the user states (--points xy|yx)."""

    layout = ("images/ or stimuli/ + fixation points: fixations/NAME.npy|.csv|.mat (N x 2+ each), or one .mat "
              "(beside them or a folder below) with a cell array of images (sorted by name) x subjects")

    @classmethod
    def detect(cls, root):
        return _image_folder(root) is not None and _points_source(root) is not None

    @classmethod
    def open(cls, root, opts):
        found = files_by_stem(_image_folder(root), IMAGE_EXTENSIONS)
        images = {p.name: p for p in found.values()}
        source = _points_source(root)
        if source.is_dir():
            files = files_by_stem(source, POINT_EXTENSIONS)
            points = {p.name: fixations_from(load_points_file(files[stem]), opts.points, files[stem])
                      for stem, p in found.items() if stem in files}
        else:
            points = _cell_points(source, sorted(images), opts.points)
        return cls(root, images, points, opts, order_is_users=True)


def _cell_points(path: Path, names: list[str], order: str) -> dict[str, Fixations]:
    """Points from a .mat cell array of images x subjects, rows in the order of the sorted image names."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (OSError, ValueError, NotImplementedError, TypeError) as e:
        raise UserError(f"{path}: not a readable MATLAB file ({e})") from None
    cells = {k: v for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype == object}
    if len(cells) != 1:
        raise UserError(f"{path}: expected one cell array of images x subjects, found {sorted(cells) or 'none'}")
    (var, cell), = cells.items()
    cell = cell.reshape(cell.shape[0], -1)
    if cell.shape[0] != len(names):
        raise UserError(f"{path}: '{var}' has {cell.shape[0]} rows for {len(names)} images")
    out = {}
    for name, row in zip(names, cell):
        parts = [fixations_from(c, order, f"{path} ({var}, image {name})", subject=s) for s, c in enumerate(row)]
        out[name] = Fixations(*(np.concatenate([getattr(f, k) for f in parts]) for k in ("x", "y", "subject")))
    return out


def open_fixation_data(path: str | Path, opts: ReadOptions | None = None) -> FixationDataset:
    """The data in folder `path`, read by the first registered reader whose
    layout it has; anything else is a UserError that lists the layouts."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: fixation data folder not found")
    for cls in _READERS.values():
        if cls.detect(root):
            return cls.open(root, opts or ReadOptions())
    known = "; ".join(cls.layout for cls in _READERS.values())
    raise UserError(f"{root}: not fixation data in a known layout ({known})")


