"""Every kind of awkward input: what happened to it, and that the good images
beside it were all stored."""

import re
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from salclass.data import Store
from salclass.data.decode import MAX_PIXELS, MIN_SIDE

S = 144


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height (a decompression bomb's header)."""
    import io

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + "IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _halves(w, h, left, right, mode="RGB"):
    a = np.zeros((h, w, len(left)), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2:] = right
    return Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a, mode)


@pytest.fixture(scope="module")
def bad_source(tmp_path_factory, imagenette_root):
    src = tmp_path_factory.mktemp("bad") / "src"
    a, b = src / "train" / "n01440764", src / "train" / "n02102040"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    real = sorted((imagenette_root / "train" / "n01440764").iterdir())[:3]
    for f in real:
        shutil.copyfile(f, a / f.name)
    for f in sorted((imagenette_root / "train" / "n02102040").iterdir())[:2]:
        shutil.copyfile(f, b / f.name)
    jpeg = real[0].read_bytes()
    # rejected ones
    (a / "truncated.JPEG").write_bytes(jpeg[: len(jpeg) // 2])
    bad_header = bytearray(jpeg)
    bad_header[2:200] = bytes(198)
    (a / "corrupt_header.JPEG").write_bytes(bytes(bad_header))
    bad_body = bytearray(jpeg)
    mid = len(jpeg) // 2
    bad_body[mid:mid + 400] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    (a / "corrupt_body.JPEG").write_bytes(bytes(bad_body))
    (a / "empty.JPEG").write_bytes(b"")
    (a / "notes.JPEG").write_text("this is not an image\n")
    Image.new("RGB", (MIN_SIDE - 1, 200), (9, 9, 9)).save(b / "sliver.png")
    (b / "bomb.png").write_bytes(_png_claiming(30000, 30000))        # Pillow: error
    (b / "bomb_mild.png").write_bytes(_png_claiming(10000, 9000))    # Pillow: only a warning
    (src / "train" / "stray.JPEG").write_bytes(jpeg)
    # converted ones
    Image.new("L", (200, 160), 77).save(b / "gray.png")
    Image.new("1", (160, 200), 1).save(b / "bilevel.png")
    pal = _halves(300, 200, (1,), (2,), "L").convert("P")
    pal.putpalette([0, 0, 0, 10, 200, 30, 250, 5, 100] + [0] * 759)
    pal.save(b / "palette.png")
    pal.info["transparency"] = 2
    pal.save(b / "palette_transparent.png", transparency=2)
    Image.new("CMYK", (200, 160), (255, 0, 0, 0)).save(b / "cmyk.jpg", quality=95)
    _halves(200, 200, (255, 0, 0, 255), (0, 0, 0, 0), "RGBA").save(b / "rgba.png")
    Image.fromarray(np.full((160, 200), 128 * 257, np.uint16)).save(b / "sixteen.png")
    rotated = _halves(300, 200, (255, 0, 0), (0, 0, 255))
    exif = rotated.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    rotated.save(b / "exif_rotated.jpg", exif=exif, quality=95)
    Image.new("RGB", (64, 48), (40, 90, 160)).save(b / "small.png")
    return src


REJECTED = {
    "train/n01440764/truncated.JPEG": r"cannot decode \(image file is truncated",
    "train/n01440764/corrupt_header.JPEG": r"not an image",
    "train/n01440764/corrupt_body.JPEG": r"cannot decode",
    "train/n01440764/empty.JPEG": r"empty file \(0 bytes\)",
    "train/n01440764/notes.JPEG": r"not an image",
    "train/n02102040/sliver.png": r"image too small \(31x200",
    "train/n02102040/bomb.png": rf"image too large .*{MAX_PIXELS} pixels",
    "train/n02102040/bomb_mild.png": rf"image too large .*{MAX_PIXELS} pixels",
    "train/stray.JPEG": r"not inside a class folder",
}


@pytest.fixture(scope="module")
def bad_store(bad_source, tmp_path_factory):
    from salclass.cli import main

    out = tmp_path_factory.mktemp("badout") / "store"
    assert main(["prepare", str(bad_source), str(out), "--size", str(S), "--workers", "2"]) == 0
    return Store.open(out / "train")


def test_summary_and_rejected_list(bad_source, tmp_path, run_cli):
    code, out, err = run_cli("prepare", bad_source, tmp_path / "o", "--size", S, "--workers", "1")
    assert code == 0, err
    found = sum(1 for p in bad_source.rglob("*") if p.is_file())
    stored = found - len(REJECTED)
    assert f"train: found {found} = stored {stored} + rejected {len(REJECTED)}" in out
    assert "prepare train" in err  # the progress bar
    s = Store.open(tmp_path / "o" / "train")
    rejected = dict(s.rejected_entries())
    assert set(rejected) == set(REJECTED)
    for path, pattern in REJECTED.items():
        assert re.match(pattern, rejected[path]), (path, rejected[path])
    assert (s.found, s.count, s.rejected) == (found, stored, len(REJECTED)) == (23, 14, 9)


def test_good_images_beside_bad_ones_are_all_stored(bad_store, bad_source):
    wanted = {str(p.relative_to(bad_source)) for p in bad_source.rglob("*") if p.is_file()} - set(REJECTED)
    assert set(bad_store.ids) == wanted
    for i, rel in enumerate(bad_store.ids):  # labels follow the class folder
        assert bad_store.classes[bad_store.labels[i]][0] == rel.split("/")[1]


def _px(store, name):
    return store.images[store.ids.index(f"train/n02102040/{name}")].astype(int)


def test_converted_pixels_are_right(bad_store):
    assert (_px(bad_store, "gray.png") == 77).all()
    assert (_px(bad_store, "bilevel.png") == 255).all()
    assert np.abs(_px(bad_store, "cmyk.jpg") - [0, 255, 255]).max() <= 3
    assert (_px(bad_store, "sixteen.png") == 128).all()                 # 16-bit scaled, not clipped
    assert (_px(bad_store, "small.png") == [40, 90, 160]).all()         # upscaled 48 -> 144
    pal = _px(bad_store, "palette.png")
    assert (pal[:, :60] == [10, 200, 30]).all() and (pal[:, 84:] == [250, 5, 100]).all()
    pal_t = _px(bad_store, "palette_transparent.png")
    assert (pal_t[:, :60] == [10, 200, 30]).all() and (pal_t[:, 84:] == 255).all()  # transparent -> white
    rgba = _px(bad_store, "rgba.png")
    assert (rgba[:, :60] == [255, 0, 0]).all() and (rgba[:, 84:] == 255).all()


def test_exif_orientation_is_applied(bad_store):
    # stored sideways: left half red, right half blue; displayed (rotated 90 cw): top red, bottom blue
    img = _px(bad_store, "exif_rotated.jpg")
    assert np.abs(img[:40] - [255, 0, 0]).max() <= 12
    assert np.abs(img[-40:] - [0, 0, 255]).max() <= 12


def test_real_grayscale_jpeg_becomes_three_equal_channels(imagenette_root, tmp_path):
    from salclass.data.decode import load_square_rgb

    gray = next(p for p in sorted((imagenette_root / "train" / "n03000684").iterdir())
                if Image.open(p).mode == "L")
    arr = load_square_rgb(gray, S)
    assert arr.shape == (S, S, 3)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all() and arr.std() > 5


def test_file_names_that_cannot_be_ids_are_rejected_like_bad_files(imagenette_root, tmp_path, run_cli):
    src = tmp_path / "src"
    a, b = src / "train" / "n01440764", src / "train" / "n02102040"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    jpeg = sorted((imagenette_root / "train" / "n01440764").iterdir())[0].read_bytes()
    for folder in (a, b):
        (folder / "good.JPEG").write_bytes(jpeg)
    # Names as bytes: one not UTF-8 (Latin-1 'e acute'), one holding a newline, one a tab.
    open(bytes(a) + b"/caf\xe9.JPEG", "wb").write(jpeg)
    (a / "two\nlines.JPEG").write_bytes(jpeg)
    (b / "tab\there.JPEG").write_bytes(jpeg)
    code, out, err = run_cli("prepare", src, tmp_path / "o", "--size", S, "--workers", "1")
    assert code == 0, err
    assert "train: found 5 = stored 2 + rejected 3" in out
    s = Store.open(tmp_path / "o" / "train")
    assert dict(s.rejected_entries()) == {
        "train/n01440764/caf\\xe9.JPEG": "file name is not valid UTF-8",
        "train/n01440764/two\\nlines.JPEG": "file name holds a line break or tab",
        "train/n02102040/tab\\there.JPEG": "file name holds a line break or tab",
    }
    assert sorted((tmp_path / "o" / "train" / "ids.txt").read_text().splitlines()) == [
        "train/n01440764/good.JPEG", "train/n02102040/good.JPEG"]
    code, _, err = run_cli("inspect", tmp_path / "o" / "train", "--verify")
    assert code == 0, err


def test_a_class_folder_name_that_cannot_be_an_id_is_one_line(imagenette_root, tmp_path, run_cli):
    jpeg = sorted((imagenette_root / "train" / "n01440764").iterdir())[0].read_bytes()
    (tmp_path / "src" / "train" / "bad\nclass").mkdir(parents=True)
    (tmp_path / "src" / "train" / "bad\nclass" / "a.JPEG").write_bytes(jpeg)
    code, _, err = run_cli("prepare", tmp_path / "src", tmp_path / "o", "--size", S, "--workers", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad\\nclass" in err, err
    assert "line break" in err and not (tmp_path / "o").exists()
