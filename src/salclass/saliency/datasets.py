"""Eye-fixation data: readers, ground-truth maps, and the fixed OSIE split.

Two layouts are read:

* OSIE as distributed (``stimuli/*.jpg`` + ``fixations.mat`` with per-subject
  fixation points in 1-based MATLAB pixel coordinates);
* the generic layout used to distribute MIT1003, CAT2000 and SALICON:
  ``images/`` plus ``maps/`` holding a same-named ground-truth map for every
  image, and optionally ``fixations/`` holding a same-named binary fixation
  map (any image format, non-zero pixels are fixations) or a ``.npy`` array of
  0-based ``(x, y)`` points.

Ground truth from points is a Gaussian blur of the fixation counts with
``sigma = 24`` pixels for OSIE: one degree of visual angle in OSIE's viewing
set-up, and the value the OSIE authors use for their own fixation maps
(``params.eye.radius = 24`` in their released MATLAB configuration). Maps at
another resolution use the same blur scaled with the image, so they stay one
degree wide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from salclass.errors import UserError

OSIE_SIGMA = 24.0
"""Ground-truth blur for OSIE in pixels at 800x600: one degree of visual angle."""

SPLIT_TYPE = "salclass.fixation_split"
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# The published OSIE protocol: 500 train / 200 test from a RandomState(42)
# shuffle of the sorted names; validation is carved from the 500 with its own seed.
TEST_SEED = 42
VAL_SEED = 1
OSIE_TRAIN_COUNT = 500
OSIE_VAL_COUNT = 50

# Truncating the Gaussian at 3.5 sigma matches a 7-sigma-wide kernel window.
_TRUNCATE = 3.5


@dataclass(frozen=True)
class Fixations:
    """Fixation points of one image, 0-based continuous pixel coordinates
    (the centre of pixel column c is x = c), with the subject of each point."""

    x: np.ndarray        # (K,) float64
    y: np.ndarray        # (K,) float64
    subject: np.ndarray  # (K,) int64, -1 where unknown

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def pixels(self, shape: tuple[int, int], native: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) int64 of every fixation in a map of `shape` (h, w) made
        from an image of `native` (H, W) size; points rescale with the image."""
        h, w = shape
        H, W = native
        cols = np.floor((self.x + 0.5) * (w / W)).astype(np.int64)
        rows = np.floor((self.y + 0.5) * (h / H)).astype(np.int64)
        return np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)

    def of_subjects(self, subjects: np.ndarray | list[int]) -> "Fixations":
        keep = np.isin(self.subject, np.asarray(subjects))
        return Fixations(self.x[keep], self.y[keep], self.subject[keep])


def blur_fixations(counts: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian density from a fixation-count map, float32, maximum 1 (all
    zeros if there are no fixations). Outside the image counts as empty, as
    with MATLAB's imfilter, so no mass is invented at the borders."""
    dens = ndimage.gaussian_filter(counts.astype(np.float64), sigma=sigma, mode="constant", truncate=_TRUNCATE)
    top = dens.max()
    if top > 0:
        dens /= top
    return dens.astype(np.float32)


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
    """float32 (H, W) from an image file or a 2-D .npy array."""
    if path.suffix == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        if m.ndim != 2:
            raise UserError(f"{path}: expected a 2-D map, got shape {m.shape}")
        return m.astype(np.float32)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("F"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: not a readable map ({e})") from None


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (h, w)."""
    if m.shape == tuple(shape):
        return m.astype(np.float32, copy=False)
    im = Image.fromarray(m.astype(np.float32), mode="F")
    return np.asarray(im.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float32)


class FixationDataset:
    """Images with eye fixations and/or ground-truth maps, addressed by index.

    `names` are the image file names (sorted). Every map is float32 at the
    requested resolution (default: the image's own) with maximum 1.
    """

    kind: str = ""

    def __init__(self, root: Path, names: list[str], sigma: float | None):
        self.root = root
        self.names = list(names)
        self.sigma = sigma

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_fixations(self) -> bool:
        raise NotImplementedError

    @property
    def num_subjects(self) -> int:
        """Subjects with separate records (0 if points carry no subject)."""
        return 0

    def image_path(self, i: int) -> Path:
        raise NotImplementedError

    def image(self, i: int) -> np.ndarray:
        return load_rgb(self.image_path(i))

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of image i without decoding its pixels."""
        try:
            with Image.open(self.image_path(i)) as im:
                return im.height, im.width
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{self.image_path(i)}: not a readable image ({e})") from None

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

    def subset(self, names: list[str]) -> "FixationDataset":
        have = set(self.names)
        missing = [n for n in names if n not in have]
        if missing:
            raise UserError(f"{self.root}: image '{missing[0]}' of the split is not in the data")
        return self._with_names(names)

    def _with_names(self, names: list[str]) -> "FixationDataset":
        raise NotImplementedError

    def split_names(self) -> dict[str, list[str]]:
        """The fixed train/val/test split of this data (see `split`)."""
        raise NotImplementedError

    def split(self, which: str) -> "FixationDataset":
        if which == "all":
            return self
        if which not in SPLITS:
            raise UserError(f"unknown split '{which}' (valid: {', '.join(SPLITS)}, all)")
        return self.subset(self.split_names()[which])


class OsieDataset(FixationDataset):
    """OSIE: 700 images of 800x600 with 15 subjects' fixations each."""

    kind = "osie"

    def __init__(self, root: Path, names: list[str] | None = None,
                 points: dict[str, Fixations] | None = None, sigma: float = OSIE_SIGMA):
        root = Path(root)
        if points is None:
            points = _read_osie_fixations(root / "fixations.mat")
        stim = root / "stimuli"
        if names is None:
            names = sorted(points)
            absent = [n for n in names if not (stim / n).is_file()]
            if absent:
                raise UserError(f"{stim}: missing stimulus '{absent[0]}' named in fixations.mat")
        super().__init__(root, names, sigma)
        self._points = points

    @property
    def has_fixations(self) -> bool:
        return True

    @property
    def num_subjects(self) -> int:
        return int(max((fx.subject.max() + 1 for fx in self._points.values() if len(fx)), default=0))

    def image_path(self, i: int) -> Path:
        return self.root / "stimuli" / self.names[i]

    def fixations(self, i: int) -> Fixations:
        return self._points[self.names[i]]

    def density(self, i, shape=None, subjects=None):
        native = self.image_size(i)
        shape = native if shape is None else tuple(shape)
        counts = self.fixation_counts(i, shape, subjects)
        sigma = (self.sigma * shape[0] / native[0], self.sigma * shape[1] / native[1])
        return blur_fixations(counts, sigma)

    def _with_names(self, names):
        return OsieDataset(self.root, names, self._points, self.sigma)

    def split_names(self):
        return osie_split()


class FolderDataset(FixationDataset):
    """``images/`` + ``maps/`` (+ optional ``fixations/``) with same-named files."""

    kind = "folder"

    def __init__(self, root: Path, names: list[str] | None = None,
                 maps: dict[str, Path] | None = None, fix: dict[str, Path] | None = None):
        root = Path(root)
        if names is None:
            names, maps, fix = _index_folder(root)
        super().__init__(root, names, None)
        self._maps = maps
        self._fix = fix

    @property
    def has_fixations(self) -> bool:
        return bool(self._fix)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.names[i]

    def fixations(self, i: int) -> Fixations:
        if not self._fix:
            raise UserError(f"{self.root}: no fixations/ folder, so no fixation points")
        path = self._fix[Path(self.names[i]).stem]
        if path.suffix == ".npy":
            try:
                pts = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UserError(f"{path}: not a readable .npy array ({e})") from None
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise UserError(f"{path}: expected an (N, 2) array of x, y points, got shape {pts.shape}")
            x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
        else:
            binary = _load_gray(path)
            native = self.image_size(i)
            if binary.shape != native:
                raise UserError(f"{path}: fixation map is {binary.shape[1]}x{binary.shape[0]}, "
                                f"its image is {native[1]}x{native[0]}")
            rows, cols = np.nonzero(binary > 0)
            x, y = cols.astype(np.float64), rows.astype(np.float64)
        return Fixations(x, y, np.full(x.shape, -1, dtype=np.int64))

    def density(self, i, shape=None, subjects=None):
        if subjects is not None:
            raise UserError(f"{self.root}: fixations carry no subject, so no per-subject maps")
        m = _load_gray(self._maps[Path(self.names[i]).stem])
        if shape is not None:
            m = resize_map(m, tuple(shape))
        m = np.maximum(m, 0)
        top = m.max()
        return (m / top if top > 0 else m).astype(np.float32)

    def _with_names(self, names):
        return FolderDataset(self.root, names, self._maps, self._fix)

    def split_names(self):
        custom = self.root / "split.json"
        if custom.is_file():
            return _read_split(custom)
        return make_split(self.names, test_count=round(len(self.names) * 2 / 7),
                          val_count=round(len(self.names) / 14))


def open_fixation_data(path: str | Path) -> FixationDataset:
    """Read OSIE (``fixations.mat`` + ``stimuli/``) or the generic
    ``images/`` + ``maps/`` layout; anything else is a UserError."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: fixation data folder not found")
    if (root / "fixations.mat").is_file() and (root / "stimuli").is_dir():
        return OsieDataset(root)
    if (root / "images").is_dir() and (root / "maps").is_dir():
        return FolderDataset(root)
    raise UserError(f"{root}: not fixation data (expected fixations.mat + stimuli/, or images/ + maps/)")


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


def split_record(names: list[str]) -> dict:
    """The JSON written to resources/osie_split.json (see `write_osie_split`)."""
    split = make_split(names, test_count=len(names) - OSIE_TRAIN_COUNT, val_count=OSIE_VAL_COUNT)
    return {
        "type": SPLIT_TYPE,
        "version": 1,
        "dataset": "OSIE",
        "rule": (f"sorted names; numpy RandomState({TEST_SEED}).permutation; first {OSIE_TRAIN_COUNT} = train+val, "
                 f"last {len(names) - OSIE_TRAIN_COUNT} = test; val = first {OSIE_VAL_COUNT} of "
                 f"RandomState({VAL_SEED}).permutation of train+val"),
        **split,
    }


def _read_osie_fixations(path: Path) -> dict[str, Fixations]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError) as e:
        raise UserError(f"{path}: not a readable MATLAB file ({e})") from None
    if "fixations" not in mat:
        raise UserError(f"{path}: no 'fixations' variable")
    out: dict[str, Fixations] = {}
    for rec in np.atleast_1d(mat["fixations"]):
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


def _index_folder(root: Path) -> tuple[list[str], dict[str, Path], dict[str, Path]]:
    def by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
        if not folder.is_dir():
            return {}
        return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts}

    images = by_stem(root / "images", IMAGE_EXTENSIONS)
    maps = by_stem(root / "maps", IMAGE_EXTENSIONS + (".npy",))
    fix = by_stem(root / "fixations", IMAGE_EXTENSIONS + (".npy",))
    if not images:
        raise UserError(f"{root / 'images'}: no images")
    lacking = sorted(set(images) - set(maps))
    if lacking:
        raise UserError(f"{root / 'maps'}: no ground-truth map for image '{images[lacking[0]].name}'")
    if fix:
        lacking = sorted(set(images) - set(fix))
        if lacking:
            raise UserError(f"{root / 'fixations'}: no fixations for image '{images[lacking[0]].name}'")
    names = sorted(p.name for p in images.values())
    return names, maps, fix
