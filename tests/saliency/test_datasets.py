"""Fixation data: OSIE reader, generic folder reader, ground-truth blur, split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from salclass.errors import UserError
from salclass.saliency.fixations import (OSIE_SIGMA, blur_fixations, make_split, open_fixation_data,
                                        osie_split)


def test_osie_reads_all_images_and_converts_matlab_coordinates(osie_root):
    ds = open_fixation_data(osie_root)
    assert len(ds) == 700 and ds.num_subjects == 15
    total = sum(len(ds.fixations(i)) for i in range(len(ds)))
    assert total == 98321
    raw = scipy.io.loadmat(osie_root / "fixations.mat", squeeze_me=True, struct_as_record=False)["fixations"]
    rec = next(r for r in raw if r.img == ds.names[3])
    first = rec.subjects[0]
    fx = ds.fixations(3)
    np.testing.assert_allclose(fx.x[fx.subject == 0], np.atleast_1d(first.fix_x) - 1)
    np.testing.assert_allclose(fx.y[fx.subject == 0], np.atleast_1d(first.fix_y) - 1)
    assert ds.image(3).shape == (600, 800, 3)


def test_osie_density_peaks_at_fixations_and_rescales(osie_root):
    ds = open_fixation_data(osie_root)
    counts = ds.fixation_counts(0)
    assert counts.sum() == len(ds.fixations(0))
    full = ds.density(0)
    assert full.shape == (600, 800) and full.dtype == np.float32 and full.max() == pytest.approx(1.0)
    small = ds.density(0, (150, 200))
    assert small.shape == (150, 200)
    # A map made at quarter size agrees with the full map shrunk: the blur scales with the image.
    shrunk = np.asarray(Image.fromarray(full).resize((200, 150), Image.BILINEAR))
    assert np.corrcoef(small.ravel(), shrunk.ravel())[0, 1] > 0.98
    one = ds.density(0, subjects=[0])
    assert not np.allclose(one, full)


def test_blur_uses_the_stated_sigma():
    counts = np.zeros((201, 201), np.int32)
    counts[100, 100] = 1
    d = blur_fixations(counts, OSIE_SIGMA)
    # A Gaussian falls to exp(-1/2) of its peak one sigma from the centre.
    assert d[100, 100 + int(OSIE_SIGMA)] == pytest.approx(np.exp(-0.5), rel=1e-3)
    assert blur_fixations(np.zeros((5, 5), np.int32), 2.0).max() == 0


@pytest.mark.parametrize("n", [3, 400])
def test_blur_of_few_or_many_fixations_is_scipys_truncated_gaussian(n):
    """Few fixations take a faster path than many; both equal ndimage's filter."""
    from scipy import ndimage

    rng = np.random.default_rng(n)
    counts = np.zeros((90, 140), np.int32)
    np.add.at(counts, (rng.integers(0, 90, n), rng.integers(0, 140, n)), 1)
    counts[0, 0] += 2   # a corner pixel fixated three times: the border and repeats count
    want = ndimage.gaussian_filter(counts.astype(np.float64), sigma=(7.5, 11.0), mode="constant", truncate=3.5)
    np.testing.assert_allclose(blur_fixations(counts, (7.5, 11.0)), want / want.max(), atol=1e-6)


def test_osie_split_is_the_published_protocol(osie_root):
    split = osie_split()
    names = sorted(open_fixation_data(osie_root).names)
    perm = np.random.RandomState(42).permutation(len(names))
    assert sorted(split["test"]) == sorted(names[j] for j in perm[500:])
    assert len(split["train"]) == 450 and len(split["val"]) == 50
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == names
    ds = open_fixation_data(osie_root)
    assert ds.split("test").names == split["test"]
    with pytest.raises(UserError, match="unknown split"):
        ds.split("holdout")


def test_make_split_rejects_too_few_images():
    with pytest.raises(UserError, match="too few"):
        make_split(["a", "b"], test_count=1, val_count=1)


def _folder(tmp_path, n=6, with_fix=True):
    rng = np.random.default_rng(0)
    for sub in ("images", "maps") + (("fixations",) if with_fix else ()):
        (tmp_path / sub).mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "images" / f"im{i}.jpg")
        m = np.zeros((20, 30), np.uint8)
        m[5 + i, 10] = 200
        Image.fromarray(m).save(tmp_path / "maps" / f"im{i}.png")
        if with_fix:
            f = np.zeros((20, 30), np.uint8)
            f[5 + i, 10] = 255
            f[2, 3] = 255
            Image.fromarray(f).save(tmp_path / "fixations" / f"im{i}.png")
    return tmp_path


def test_folder_layout_reads_maps_and_fixation_images(tmp_path):
    ds = open_fixation_data(_folder(tmp_path))
    assert len(ds) == 6 and ds.has_fixations
    d = ds.density(2)
    assert d.shape == (20, 30) and d.max() == pytest.approx(1.0) and d[7, 10] == pytest.approx(1.0)
    fx = ds.fixations(2)
    assert sorted(zip(fx.y.tolist(), fx.x.tolist())) == [(2.0, 3.0), (7.0, 10.0)]
    assert ds.density(2, (10, 15)).shape == (10, 15)
    split = ds.split_names()
    assert sorted(split["train"] + split["val"] + split["test"]) == ds.names


def test_folder_layout_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not fixation data"):
        open_fixation_data(tmp_path)
    with pytest.raises(UserError, match="not found"):
        open_fixation_data(tmp_path / "nope")
    root = _folder(tmp_path, with_fix=False)
    (root / "maps" / "im3.png").unlink()
    with pytest.raises(UserError, match="no ground-truth map for image 'im3.jpg'"):
        open_fixation_data(root)


def test_broken_image_is_a_user_error(tmp_path):
    root = _folder(tmp_path)
    (root / "images" / "im0.jpg").write_bytes(b"not a jpeg")
    ds = open_fixation_data(root)
    with pytest.raises(UserError, match="not a readable image"):
        ds.image(0)


def test_shipped_osie_split_follows_the_published_rule(osie_root):
    # 500 train+val / 200 test from the seeded shuffle of the sorted names, 50 of the 500 for validation
    from salclass.saliency.fixations import osie_split

    shipped = osie_split()
    names = sorted(n for split in shipped.values() for n in split)
    assert len(names) == 700
    assert make_split(names, test_count=200, val_count=50) == shipped
