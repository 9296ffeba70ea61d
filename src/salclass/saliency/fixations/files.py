"""Reading the files fixation data come in: images, maps, point lists, MATLAB files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from salclass.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
POINT_EXTENSIONS = (".npy", ".csv", ".mat")


def load_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3); grayscale and palette images become RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def load_gray(path: Path) -> np.ndarray:
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


def load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError, TypeError) as e:
        raise UserError(f"{path}: not a readable MATLAB file ({e})") from None
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _only_array(path: Path) -> np.ndarray:
    """The one numeric array of a .mat file (CAT2000's FIXATIONLOCS, a per-image point list)."""
    arrays = {k: v for k, v in load_mat(path).items() if isinstance(v, np.ndarray) and v.dtype != object}
    if len(arrays) != 1:
        raise UserError(f"{path}: expected one numeric array, found {sorted(arrays) or 'none'}")
    return np.asarray(next(iter(arrays.values())))


def load_points_file(path: Path) -> np.ndarray:
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


def files_by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """stem -> path of the files of `folder` with one of `exts`."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts}

