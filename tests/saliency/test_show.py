"""`salclass saliency show`: a PNG grid from fixation data or from a store with maps."""

from __future__ import annotations

from PIL import Image


def test_show_from_fixation_data(osie_root, tmp_path, run_cli):
    out = tmp_path / "grid.png"
    code, stdout, err = run_cli("saliency", "show", "--data", osie_root, "--model", "centre_bias", "--n", "3",
                                "--out", out)
    assert code == 0, err
    with Image.open(out) as im:
        # Three rows (image, prediction, ground truth) by three columns of 4:3 images.
        assert im.width > im.height > 0.5 * im.width


def test_show_from_store_and_bad_arguments(tiny_store, tmp_path, run_cli):
    out = tmp_path / "store.png"
    code, _, err = run_cli("saliency", "show", "--store", tiny_store / "val", "--model", "image_signature",
                           "--n", "4", "--out", out)
    assert code == 0, err
    assert out.stat().st_size > 10_000
    code, _, err = run_cli("saliency", "show", "--out", tmp_path / "x.png")
    assert code == 2 and "exactly one of --data" in err
    code, _, err = run_cli("saliency", "show", "--store", tiny_store / "val", "--n", "0", "--out", tmp_path / "x.png")
    assert code == 2 and "--n must be between" in err
    assert not (tmp_path / "x.png").exists()
