"""Decode one image file into an SxS RGB uint8 array, or say why not.

Policy for awkward inputs (each is tested in tests/data/test_bad_inputs.py):
- grayscale, bilevel, CMYK, YCbCr: converted to RGB by Pillow.
- palette: expanded through its palette; with transparency treated like RGBA.
- RGBA / LA / palette with transparency: composited onto white, because the
  colour stored under fully transparent pixels is arbitrary and often black.
- 16-bit (and 32-bit integer) grayscale: scaled by 1/257 so 65535 -> 255;
  Pillow's own conversion would clip everything above 255 to white.
- EXIF orientation: applied, so the stored pixels are the photo as displayed.
- small images: upscaled like any other (short side resized to S), as the
  thesis's resize-then-crop does; only images whose short side is under
  MIN_SIDE pixels are rejected, because there upscaling invents the picture.
- more than MAX_PIXELS pixels (decompression bombs): rejected from the header
  alone, before any pixel is decoded.
- zero-byte, truncated, corrupt and non-image files: rejected with the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default limit (~89.5 Mpx, a 1 GiB RGBA image ~ /4 /3), stated here
# so our check does not depend on a Pillow global that other code may change.
MAX_PIXELS = 89_478_485
MIN_SIDE = 32

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"RGBA", "LA", "La", "RGBa", "PA"}
_DIRECT = {"1", "L", "RGB", "CMYK", "YCbCr", "LAB", "HSV"}


class Rejected(Exception):
    """An input that will not be stored; the message is the reason for rejected.tsv."""


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in _ALPHA:
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    if mode in _DIRECT:
        return im.convert("RGB")
    raise Rejected(f"unsupported pixel mode {mode}")


def _square(im: Image.Image, size: int) -> np.ndarray:
    """Resize so the short side is `size` and take the centre square, in one
    antialiased resample of just the source region that survives the crop."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    out = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(out, dtype=np.uint8)


def load_square_rgb(path: str | Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8, or raise Rejected with a one-line reason."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise Rejected("empty file (0 bytes)")
    except OSError as e:
        raise Rejected(f"cannot read file ({e.strerror or e})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise Rejected(f"image too large ({w}x{h} = {w * h} pixels, limit {MAX_PIXELS})")
                if min(w, h) < MIN_SIDE:
                    raise Rejected(f"image too small ({w}x{h}, short side under {MIN_SIDE} px)")
                # JPEG only: decode at a reduced DCT scale that still leaves
                # both sides >= size, which makes big photos several times faster.
                im.draft("RGB", (size, size))
                im.load()
                im = ImageOps.exif_transpose(im)
                return _square(_to_rgb(im), size)
        except Rejected:
            raise
        except UnidentifiedImageError:
            raise Rejected("not an image (unrecognized format)") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise Rejected(f"image too large (over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels)") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as e:
            # Pillow signals damaged files with any of these; keep the first line.
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise Rejected(f"cannot decode ({msg})") from None
