"""Eye-fixation data: one reader per layout, ground-truth maps, the fixed OSIE split.

Each reader is a `FixationDataset` subclass registered with `@reader(name)`;
`open_fixation_data` asks them in registration order whether a folder is theirs.
Readers of data that brings its own ground-truth maps (MIT1003, CAT2000, the
generic images/ + maps/ folder) use those maps; readers of fixation points
(OSIE, SALICON, the generic points reader) blur the points themselves.

Ground truth from points is made the way the benchmark makes it: fixation
counts blurred with a Gaussian whose sigma is one degree of visual angle, so
the blur follows the viewing geometry (pixels per degree, `ReadOptions.ppd`),
with a per-data-set default:

* OSIE: 24 px per degree at 800x600, the value the OSIE authors use for their
  own fixation maps (``params.eye.radius = 24`` in their released MATLAB
  configuration);
* SALICON: 19 px at 640x480, the blur of the SALICON API's fixation maps
  (``buildFixMap(..., sigma=19)``); its points come from mouse movements, so
  this is the data set's convention rather than a measured viewing distance;
* anything else: unknown, so the image's width is taken to span
  ``VIEW_DEGREES`` = 33.3 degrees, as OSIE's 800 px do at 24 px per degree.

Maps made at another resolution scale the blur with the image, so they stay
one degree wide. Points outside their image are counted on reading and
rejected (`ReadOptions.outside`), never moved to the border.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from salclass.errors import UserError

OSIE_SIGMA = 24.0
"""Ground-truth blur for OSIE in pixels at 800x600: one degree of visual angle."""
SALICON_SIGMA = 19.0
"""Ground-truth blur of the SALICON API at 640x480."""
VIEW_DEGREES = 800 / OSIE_SIGMA
"""Visual angle assumed for an image's width when the viewing geometry is unknown."""

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
POINT_EXTENSIONS = (".npy", ".csv", ".mat")

# The published OSIE protocol: 500 train / 200 test from a RandomState(42)
# shuffle of the sorted names; validation is carved from the 500 with its own seed.
TEST_SEED = 42
VAL_SEED = 1

# Truncating the Gaussian at 3.5 sigma matches a 7-sigma-wide kernel window.
_TRUNCATE = 3.5


@dataclass
class ReadOptions:
    """What a data set's files leave open, stated by the user."""

    points: Literal["xy", "yx"] = "xy"            # column order of point files: (x, y) or (row, column)
    outside: Literal["error", "drop"] = "error"   # points outside their image
    ppd: float | None = None                      # pixels per degree at the image's own size; None: the data's default

    def __post_init__(self):
        if self.ppd is not None and not self.ppd > 0:
            raise ValueError(f"ppd must be positive, got {self.ppd}")


def read_options(given: dict | None) -> ReadOptions:
    """ReadOptions from command-line values; a bad one is a one-line UserError."""
    try:
        return ReadOptions(**(given or {}))
    except ValueError as e:
        raise UserError(str(e)) from None


@dataclass(frozen=True)
class Fixations:
    """Fixation points of one image, 0-based continuous pixel coordinates
    (the centre of pixel column c is x = c), with the subject of each point."""

    x: np.ndarray        # (K,) float64
    y: np.ndarray        # (K,) float64
    subject: np.ndarray  # (K,) int64, -1 where unknown

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def inside(self, native: tuple[int, int]) -> np.ndarray:
        """bool (K,): the point lies on a pixel of an image of `native` (H, W) size."""
        h, w = native
        return (self.x >= -0.5) & (self.x < w - 0.5) & (self.y >= -0.5) & (self.y < h - 0.5)

    def pixels(self, shape: tuple[int, int], native: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) int64 of every fixation in a map of `shape` (h, w) made
        from an image of `native` (H, W) size; points rescale with the image."""
        h, w = shape
        H, W = native
        cols = np.floor((self.x + 0.5) * (w / W)).astype(np.int64)
        rows = np.floor((self.y + 0.5) * (h / H)).astype(np.int64)
        # Readers keep only points inside the image; the clip only absorbs rounding at the far edge.
        return np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)

    def of_subjects(self, subjects: np.ndarray | list[int]) -> "Fixations":
        keep = np.isin(self.subject, np.asarray(subjects))
        return Fixations(self.x[keep], self.y[keep], self.subject[keep])

    def where(self, keep: np.ndarray) -> "Fixations":
        return Fixations(self.x[keep], self.y[keep], self.subject[keep])


def _fixations_from(columns: np.ndarray, order: str, where: Path | str, subject: int = -1) -> Fixations:
    """Fixations from an (N, 2+) array whose first two columns are a point in
    `order` ("xy" or "yx"); later columns (times, durations) are ignored."""
    a = np.asarray(columns, dtype=np.float64)
    if a.size == 0:
        a = a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] < 2:
        raise UserError(f"{where}: expected an (N, 2) array of points, got shape {a.shape}")
    first, second = a[:, 0], a[:, 1]
    x, y = (first, second) if order == "xy" else (second, first)
    return Fixations(x.copy(), y.copy(), np.full(x.shape, subject, dtype=np.int64))


def blur_fixations(counts: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian density from a fixation-count map, float32, maximum 1 (all
    zeros if there are no fixations). Outside the image counts as empty, as
    with MATLAB's imfilter, so no mass is invented at the borders."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    rows, cols = np.nonzero(counts)
    width_y, width_x = 2 * int(_TRUNCATE * sy + 0.5) + 1, 2 * int(_TRUNCATE * sx + 0.5) + 1
    if rows.size < width_y + width_x:
        # Few fixated pixels and a wide kernel (a large image at one degree):
        # the sum of one separable Gaussian per pixel, the same truncated
        # kernel as below, costs pixels x fixations instead of pixels x kernel width.
        weight = counts[rows, cols].astype(np.float64)
        dens = (_kernel_at(rows, counts.shape[0], sy) * weight[:, None]).T @ _kernel_at(cols, counts.shape[1], sx)
    else:
        dens = ndimage.gaussian_filter(counts.astype(np.float64), sigma=(sy, sx), mode="constant",
                                       truncate=_TRUNCATE)
    top = dens.max()
    if top > 0:
        dens /= top
    return dens.astype(np.float32)


def _kernel_at(centres: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """(K, n): a Gaussian of `sigma` truncated as ndimage truncates it, centred
    on each of `centres` over positions 0..n-1 (unnormalised: maps are scaled to maximum 1)."""
    offset = np.arange(n)[None, :] - centres[:, None]
    k = np.exp(-0.5 * (offset / sigma) ** 2)
    k[np.abs(offset) > int(_TRUNCATE * sigma + 0.5)] = 0.0
    return k


def load_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3); grayscale and palette images become RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def _load_gray(path: Path) -> np.ndarray:
    """float32 (H, W) from an image file, a 2-D .npy array or a .mat holding one 2-D array."""
    if path.suffix == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
    elif path.suffix == ".mat":
        m = _only_array(path)
    else:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("F"), dtype=np.float32)
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{path}: not a readable map ({e})") from None
    if m.ndim != 2:
        raise UserError(f"{path}: expected a 2-D map, got shape {m.shape}")
    return m.astype(np.float32)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError, TypeError) as e:
        raise UserError(f"{path}: not a readable MATLAB file ({e})") from None
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _only_array(path: Path) -> np.ndarray:
    """The one numeric array of a .mat file (CAT2000's FIXATIONLOCS, a per-image point list)."""
    arrays = {k: v for k, v in _loadmat(path).items() if isinstance(v, np.ndarray) and v.dtype != object}
    if len(arrays) != 1:
        raise UserError(f"{path}: expected one numeric array, found {sorted(arrays) or 'none'}")
    return np.asarray(next(iter(arrays.values())))


def _load_points_file(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
    if path.suffix == ".mat":
        return np.atleast_2d(_only_array(path))
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError:
        try:   # a header line
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
        except ValueError as e:
            raise UserError(f"{path}: not a CSV of numbers ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: not readable ({e})") from None


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (h, w)."""
    if m.shape == tuple(shape):
        return m.astype(np.float32, copy=False)
    im = Image.fromarray(m.astype(np.float32), mode="F")
    return np.asarray(im.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float32)


def _files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """stem -> path of the files of `folder` with one of `exts`."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts}


_READERS: dict[str, type["FixationDataset"]] = {}


def reader(name: str):
    """Register a FixationDataset subclass as the reader of one layout; readers
    are asked in registration order, so a specific layout comes before a generic one."""
    def deco(cls: type["FixationDataset"]) -> type["FixationDataset"]:
        cls.kind = name
        _READERS[name] = cls
        return cls

    return deco


class FixationDataset:
    """Images with eye fixations and/or ground-truth maps, addressed by index.

    `names` are the images' names (sorted; relative paths where the layout
    nests them). Every map is float32 at the requested resolution (default:
    the image's own) with maximum 1.
    """

    kind: str = ""
    layout: str = ""           # the layout in a few words, for the error that lists them
    points_hint: str = ""      # how to give this layout fixation points, for metrics that need them

    def __init__(self, root: Path, images: dict[str, Path], opts: ReadOptions):
        if not images:
            raise UserError(f"{root}: no images")
        self.root = Path(root)
        self.names = sorted(images)
        self.opts = opts
        self.notes: list[str] = []
        self._images = images
        self._sizes: dict[str, tuple[int, int]] = {}

    @classmethod
    def detect(cls, root: Path) -> bool:
        raise NotImplementedError

    @classmethod
    def open(cls, root: Path, opts: ReadOptions) -> "FixationDataset":
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_fixations(self) -> bool:
        raise NotImplementedError

    @property
    def num_subjects(self) -> int:
        """Subjects with separate records (0 if points carry no subject)."""
        return 0

    @property
    def ground_truth(self) -> str:
        """How the ground-truth maps are made, for reports."""
        raise NotImplementedError

    def image_path(self, i: int) -> Path:
        return self._images[self.names[i]]

    def image(self, i: int) -> np.ndarray:
        return load_rgb(self.image_path(i))

    def _size_of(self, name: str) -> tuple[int, int]:
        if name not in self._sizes:
            path = self._images[name]
            try:
                with Image.open(path) as im:
                    self._sizes[name] = (im.height, im.width)
            except FileNotFoundError:
                raise UserError(f"{path}: image not found") from None
            except (UnidentifiedImageError, OSError) as e:
                raise UserError(f"{path}: not a readable image ({e})") from None
        return self._sizes[name]

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of image i without decoding its pixels."""
        return self._size_of(self.names[i])

    def fixations(self, i: int) -> Fixations:
        raise NotImplementedError

    def fixation_points(self, i: int, shape: tuple[int, int] | None = None,
                        subjects: list[int] | np.ndarray | None = None) -> np.ndarray:
        """int64 (K, 2) 0-based pixel coordinates (x, y) = (column, row) of every
        fixation in a map of `shape` (default: the image's size); the form the
        metrics take. A pixel fixated twice appears twice."""
        native = self.image_size(i)
        shape = native if shape is None else tuple(shape)
        fx = self.fixations(i)
        if subjects is not None:
            fx = fx.of_subjects(subjects)
        rows, cols = fx.pixels(shape, native)
        return np.stack([cols, rows], axis=1)

    def fixation_counts(self, i: int, shape: tuple[int, int] | None = None,
                        subjects: list[int] | np.ndarray | None = None) -> np.ndarray:
        """int32 (h, w): how many fixations fall on each pixel."""
        native = self.image_size(i)
        shape = native if shape is None else tuple(shape)
        fx = self.fixations(i)
        if subjects is not None:
            fx = fx.of_subjects(subjects)
        counts = np.zeros(shape, dtype=np.int32)
        rows, cols = fx.pixels(shape, native)
        np.add.at(counts, (rows, cols), 1)
        return counts

    def density(self, i: int, shape: tuple[int, int] | None = None,
                subjects: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Ground-truth saliency map of image i, float32 (h, w), maximum 1."""
        raise NotImplementedError

    def _checked(self, points: dict[str, Fixations], order_is_users: bool) -> dict[str, Fixations]:
        """`points` with those outside their image rejected (the default) or
        dropped and counted in `notes`, per `opts.outside`."""
        total = outside = 0
        first = None
        kept = {}
        for name in (n for n in self.names if n in points):
            fx = points[name]
            native = self._size_of(name)
            ok = fx.inside(native)
            total += len(fx)
            if not ok.all():
                outside += int((~ok).sum())
                if first is None:
                    j = int(np.flatnonzero(~ok)[0])
                    first = f"{name}: x {fx.x[j]:.1f}, y {fx.y[j]:.1f} in a {native[1]}x{native[0]} image"
            kept[name] = fx.where(ok)
        if outside and self.opts.outside == "error":
            hint = ""
            if order_is_users:
                other = "yx" if self.opts.points == "xy" else "xy"
                hint = (f"; read as --points {self.opts.points}: if the files give "
                        f"{'(row, column)' if other == 'yx' else '(x, y)'}, pass --points {other}")
            raise UserError(f"{self.root}: {outside:,} of {total:,} fixation points fall outside their image "
                            f"(first: {first}){hint}; --outside drop drops them")
        if outside:
            self.notes.append(f"dropped {outside:,} of {total:,} fixation points that fall outside their image "
                              f"(--outside drop)")
        return kept

    def subset(self, names: list[str]) -> "FixationDataset":
        have = set(self.names)
        missing = [n for n in names if n not in have]
        if missing:
            raise UserError(f"{self.root}: image '{missing[0]}' of the split is not in the data")
        part = copy.copy(self)
        part.names = list(names)
        return part

    def split_names(self) -> dict[str, list[str]]:
        """The fixed train/val/test split of this data: `split.json` in its
        folder if there is one, else the seeded rule of `make_split` with
        OSIE's proportions (2/7 test, 1/14 validation)."""
        custom = self.root / "split.json"
        if custom.is_file():
            return _read_split(custom)
        return make_split(self.names, test_count=round(len(self.names) * 2 / 7),
                          val_count=round(len(self.names) / 14))

    def split(self, which: str) -> "FixationDataset":
        if which == "all":
            return self
        if which not in SPLITS:
            raise UserError(f"unknown split '{which}' (valid: {', '.join(SPLITS)}, all)")
        return self.subset(self.split_names()[which])


class PointData(FixationDataset):
    """Data given as fixation points; ground truth blurs them one degree wide."""

    default_ppd: float | None = None    # pixels per degree when the user gives none; None: VIEW_DEGREES
    ppd_source: str = ""

    def __init__(self, root: Path, images: dict[str, Path], points: dict[str, Fixations], opts: ReadOptions,
                 order_is_users: bool):
        super().__init__(root, images, opts)
        lacking = [n for n in self.names if n not in points]
        if lacking:
            raise UserError(f"{root}: no fixations for image '{lacking[0]}'")
        self._points = self._checked(points, order_is_users)

    @property
    def has_fixations(self) -> bool:
        return True

    @property
    def num_subjects(self) -> int:
        return int(max((self._points[n].subject.max() + 1 for n in self.names if len(self._points[n])), default=0))

    def fixations(self, i: int) -> Fixations:
        return self._points[self.names[i]]

    def ppd(self, native: tuple[int, int]) -> float:
        """Pixels per degree of visual angle in an image of `native` (H, W) size."""
        if self.opts.ppd is not None:
            return self.opts.ppd
        if self.default_ppd is not None:
            return self.default_ppd
        return native[1] / VIEW_DEGREES

    @property
    def ground_truth(self) -> str:
        if self.opts.ppd is not None:
            geometry = f"{self.opts.ppd:g} px per degree (--ppd)"
        elif self.default_ppd is not None:
            geometry = f"{self.default_ppd:g} px per degree ({self.ppd_source})"
        else:
            geometry = (f"viewing geometry unknown: the image width taken as {VIEW_DEGREES:.1f} degrees as in OSIE, "
                        "--ppd sets it")
        return f"fixations blurred with sigma = 1 degree, {geometry}"

    def density(self, i, shape=None, subjects=None):
        native = self.image_size(i)
        shape = native if shape is None else tuple(shape)
        counts = self.fixation_counts(i, shape, subjects)
        sigma = self.ppd(native)
        return blur_fixations(counts, (sigma * shape[0] / native[0], sigma * shape[1] / native[1]))


class MapData(FixationDataset):
    """Data that brings its own ground-truth maps, and maybe fixations as
    binary maps (a pixel at least half the map's maximum is fixated) or point files."""

    def __init__(self, root: Path, images: dict[str, Path], maps: dict[str, Path], opts: ReadOptions,
                 maps_where: Path, fix_where: Path, fix_maps: dict[str, Path] | None = None,
                 fix_points: dict[str, Path] | None = None):
        super().__init__(root, images, opts)
        if opts.ppd is not None:
            raise UserError(f"{root}: brings its own ground-truth maps, so --ppd (the blur of maps made from "
                            "points) does not apply")
        lacking = [n for n in self.names if n not in maps]
        if lacking:
            raise UserError(f"{maps_where}: no ground-truth map for image '{Path(lacking[0]).name}'")
        self._maps = maps
        self._fix = {**(fix_maps or {}), **(fix_points or {})}
        if self._fix:
            lacking = [n for n in self.names if n not in self._fix]
            if lacking:
                raise UserError(f"{fix_where}: no fixations for image '{Path(lacking[0]).name}'")
        self._points = {}
        if fix_points:
            loaded = {n: _fixations_from(_load_points_file(p), opts.points, p) for n, p in fix_points.items()}
            self._points = self._checked(loaded, order_is_users=True)

    @property
    def has_fixations(self) -> bool:
        return bool(self._fix)

    @property
    def ground_truth(self) -> str:
        return "the data's own maps"

    def fixations(self, i: int) -> Fixations:
        name = self.names[i]
        if not self._fix:
            raise UserError(f"{self.root}: has no fixation points ({self.points_hint})")
        if name in self._points:
            return self._points[name]
        path = self._fix[name]
        binary = _load_gray(path)
        native = self.image_size(i)
        if binary.shape != native:
            raise UserError(f"{path}: fixation map is {binary.shape[1]}x{binary.shape[0]}, "
                            f"its image is {native[1]}x{native[0]}")
        top = binary.max()
        rows, cols = np.nonzero(binary >= top / 2) if top > 0 else (np.zeros(0, int), np.zeros(0, int))
        return Fixations(cols.astype(np.float64), rows.astype(np.float64), np.full(rows.shape, -1, dtype=np.int64))

    def density(self, i, shape=None, subjects=None):
        if subjects is not None:
            raise UserError(f"{self.root}: fixations carry no subject, so no per-subject maps")
        m = _load_gray(self._maps[self.names[i]])
        if shape is not None:
            m = resize_map(m, tuple(shape))
        m = np.maximum(m, 0)
        top = m.max()
        return (m / top if top > 0 else m).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _osie_records(path: str, mtime: float) -> dict[str, Fixations] | None:
    """OSIE's fixations.mat read into points, or None if the file holds
    something else (e.g. a cell array of images x subjects)."""
    mat = _loadmat(Path(path))
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


@reader("osie")
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


@reader("mit1003")
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
        images = {p.name: p for p in _files(stim, IMAGE_EXTENSIONS).values()
                  if not p.stem.endswith(("_fixMap", "_fixPts"))}
        found = _files(folder, IMAGE_EXTENSIONS)
        by_image = {n: {kind: found.get(f"{Path(n).stem}_{kind}") for kind in ("fixMap", "fixPts")} for n in images}
        maps = {n: f["fixMap"] for n, f in by_image.items() if f["fixMap"]}
        fix = {n: f["fixPts"] for n, f in by_image.items() if f["fixPts"]}
        return cls(root, images, maps, opts, folder, folder, fix_maps=fix)


def _cat2000_folder(root: Path) -> Path | None:
    for base in (root, root / "trainSet"):
        if (base / "Stimuli").is_dir() and (base / "FIXATIONMAPS").is_dir():
            return base
    return None


@reader("cat2000")
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
            found_maps = _files(base / "FIXATIONMAPS" / cat.name, IMAGE_EXTENSIONS)
            found_fix = _files(base / "FIXATIONLOCS" / cat.name, (".mat",))
            for stem, path in _files(cat, IMAGE_EXTENSIONS).items():
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


@reader("salicon")
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


@reader("folder")
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
        found = _files(root / "images", IMAGE_EXTENSIONS)
        images = {p.name: p for p in found.values()}
        found_maps = _files(root / "maps", IMAGE_EXTENSIONS + (".npy",))
        maps = {p.name: found_maps[stem] for stem, p in found.items() if stem in found_maps}
        fix = _files(root / "fixations", IMAGE_EXTENSIONS + POINT_EXTENSIONS)
        by_name = {p.name: fix[stem] for stem, p in found.items() if stem in fix}
        return cls(root, images, maps, opts, root / "maps", root / "fixations",
                   fix_maps={n: f for n, f in by_name.items() if f.suffix.lower() in IMAGE_EXTENSIONS},
                   fix_points={n: f for n, f in by_name.items() if f.suffix in POINT_EXTENSIONS})


def _points_source(root: Path) -> Path | None:
    """fixations/ with a point file per image, or the one .mat beside or one folder below the images."""
    if _files(root / "fixations", POINT_EXTENSIONS):
        return root / "fixations"
    mats = sorted(p for folder in [root, *sorted(d for d in root.iterdir() if d.is_dir())]
                  for p in folder.glob("*.mat") if p.is_file())
    return mats[0] if len(mats) == 1 else None


@reader("points")
class PointsDataset(PointData):
    """Images with fixation points in the coordinate order the user states (--points xy|yx)."""

    layout = ("images/ or stimuli/ + fixation points: fixations/NAME.npy|.csv|.mat (N x 2+ each), or one .mat "
              "(beside them or a folder below) with a cell array of images (sorted by name) x subjects")

    @classmethod
    def detect(cls, root):
        return _image_folder(root) is not None and _points_source(root) is not None

    @classmethod
    def open(cls, root, opts):
        found = _files(_image_folder(root), IMAGE_EXTENSIONS)
        images = {p.name: p for p in found.values()}
        source = _points_source(root)
        if source.is_dir():
            files = _files(source, POINT_EXTENSIONS)
            points = {p.name: _fixations_from(_load_points_file(files[stem]), opts.points, files[stem])
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
        parts = [_fixations_from(c, order, f"{path} ({var}, image {name})", subject=s) for s, c in enumerate(row)]
        out[name] = Fixations(*(np.concatenate([getattr(f, k) for f in parts]) for k in ("x", "y", "subject")))
    return out


def open_fixation_data(path: str | Path, opts: ReadOptions | None = None) -> FixationDataset:
    """The data in folder `path`, read by the first `@reader` class whose
    layout it has; anything else is a UserError that lists the layouts."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: fixation data folder not found")
    for cls in _READERS.values():
        if cls.detect(root):
            return cls.open(root, opts or ReadOptions())
    known = "; ".join(cls.layout for cls in _READERS.values())
    raise UserError(f"{root}: not fixation data in a known layout ({known})")


def make_split(names: list[str], test_count: int, val_count: int) -> dict[str, list[str]]:
    """Seeded split: test = the `test_count` names after the first
    len - test_count of a RandomState(42) shuffle of the sorted names; val is
    `val_count` of the rest drawn with RandomState(1); train the remainder.
    Each list is sorted."""
    ordered = sorted(names)
    if test_count + val_count >= len(ordered):
        raise UserError(f"{len(ordered)} images are too few for {test_count} test and {val_count} validation images")
    perm = np.random.RandomState(TEST_SEED).permutation(len(ordered))
    n_trainval = len(ordered) - test_count
    trainval = [ordered[j] for j in perm[:n_trainval]]
    test = [ordered[j] for j in perm[n_trainval:]]
    vperm = np.random.RandomState(VAL_SEED).permutation(len(trainval))
    val = [trainval[j] for j in vperm[:val_count]]
    train = [trainval[j] for j in vperm[val_count:]]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def osie_split() -> dict[str, list[str]]:
    """The OSIE split recorded in the package (resources/osie_split.json)."""
    ref = resources.files("salclass").joinpath("resources", "osie_split.json")
    with resources.as_file(ref) as p:
        return _read_split(Path(p))


def _read_split(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable split file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in SPLITS):
        raise UserError(f"{path}: a split file needs lists 'train', 'val' and 'test'")
    return {k: [str(n) for n in data[k]] for k in SPLITS}
