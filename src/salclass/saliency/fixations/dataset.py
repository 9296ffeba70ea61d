"""The data-set interface every reader implements, and its two kinds: points to blur, or maps of their own."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from salclass.errors import UserError
from salclass.saliency.fixations.blur import VIEW_DEGREES, blur_fixations
from salclass.saliency.fixations.files import load_gray, load_points_file, load_rgb, resize_map
from salclass.saliency.fixations.points import Fixations, ReadOptions, fixations_from
from salclass.saliency.fixations.splits import SPLITS, make_split, read_split


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
            return read_split(custom)
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
            loaded = {n: fixations_from(load_points_file(p), opts.points, p) for n, p in fix_points.items()}
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
        binary = load_gray(path)
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
        m = load_gray(self._maps[self.names[i]])
        if shape is not None:
            m = resize_map(m, tuple(shape))
        m = np.maximum(m, 0)
        top = m.max()
        return (m / top if top > 0 else m).astype(np.float32)

