"""Saliency training: runs end to end on a small folder dataset, resumes exactly, rejects bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from salclass.errors import UserError
from salclass.saliency import load_predictor
from salclass.saliency.trainer import SaliencyTrainConfig, train
from salclass.settings import load_settings


def _data(root, n=16, fixations=True):
    """Images with one bright blob each, a ground-truth map that marks the blob,
    and (optionally) fixation points on it."""
    rng = np.random.default_rng(0)
    for sub in ("images", "maps") + (("fixations",) if fixations else ()):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        img = rng.integers(40, 90, (48, 64, 3), dtype=np.uint8)
        y, x = rng.integers(8, 40), rng.integers(8, 56)
        img[y - 4:y + 4, x - 4:x + 4] = 240
        m = np.zeros((48, 64), np.uint8)
        m[y - 3:y + 3, x - 3:x + 3] = 255
        Image.fromarray(img).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(m).save(root / "maps" / f"{i:03d}.png")
        if fixations:
            np.save(root / "fixations" / f"{i:03d}.npy", np.array([[x, y], [x - 1, y + 1], [5, 5]], np.float64))
    return root


def _cfg(data, out, *sets):
    base = [f"data={data}", "model=fcn", f"out={out}", "model_settings={width: 8, area: 3072}",
            "batch_size=4", "epochs=2", "warmup_epochs=1", "select_by=cc"]
    return load_settings(SaliencyTrainConfig, None, base + list(sets))


def test_train_writes_a_run_and_resumes_to_the_same_weights(tmp_path):
    data = _data(tmp_path / "data")
    full = train(_cfg(data, tmp_path / "full"))
    lines = [json.loads(ln) for ln in (full / "metrics.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [1, 2]
    for key in ("loss", "nss", "cc", "auc_judd"):
        assert np.isfinite(lines[-1]["val"][key])
    assert (full / "config.yaml").is_file() and (full / "done.json").is_file()
    maps = load_predictor(full / "best.pt").predict(np.zeros((1, 48, 64, 3), np.uint8))
    assert maps.shape == (1, 48, 64)

    part = train(_cfg(data, tmp_path / "part", "epochs=1"))
    with pytest.raises(UserError, match="already holds a run"):
        train(_cfg(data, part, "epochs=2"))
    with pytest.raises(UserError, match="other settings .lr: 0.002 in the run, 0.001 now"):
        train(_cfg(data, part, "epochs=2", "lr=0.001"), resume=True)  # another schedule is another run
    train(_cfg(data, part, "epochs=2"), resume=True)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (part / "metrics.jsonl").read_text().count("\n") == 2


def test_a_refused_resume_leaves_the_run_s_saved_settings(tmp_path):
    data = _data(tmp_path / "data")
    part = train(_cfg(data, tmp_path / "part", "epochs=1"))
    saved = (part / "config.yaml").read_text()
    with pytest.raises(UserError, match="other settings"):
        train(_cfg(data, part, "epochs=2", "lr=0.001"), resume=True)
    assert (part / "config.yaml").read_text() == saved

def test_cli_train_and_bad_settings(tmp_path, run_cli):
    data = _data(tmp_path / "data")
    code, out, err = run_cli("saliency", "train", "--data", data, "--model", "fcn", "--out", tmp_path / "run",
                             "--set", "model_settings={width: 8, area: 3072}", "--set", "epochs=1",
                             "--set", "batch_size=8")
    assert code == 0, err
    assert "best epoch 1" in out
    code, _, err = run_cli("saliency", "train", "--data", data, "--model", "fcn", "--out", tmp_path / "r2",
                           "--set", "epochs=0")
    assert code == 2 and "epochs must be at least 1" in err
    code, _, err = run_cli("saliency", "train", "--data", data, "--model", "centre_bias", "--out", tmp_path / "r3")
    assert code == 2 and "no weights to train" in err
    code, _, err = run_cli("saliency", "train", "--data", tmp_path / "none", "--model", "fcn", "--out", tmp_path / "r4")
    assert code == 2 and "not found" in err
    code, _, err = run_cli("saliency", "train", "--data", data, "--model", "fcn", "--out", tmp_path / "r5", "--resume")
    assert code == 2 and "nothing to resume" in err
    maps_only = _data(tmp_path / "maps_only", fixations=False)
    code, _, err = run_cli("saliency", "train", "--data", maps_only, "--model", "fcn", "--out", tmp_path / "r6")
    assert code == 2 and "select_by=nss is impossible" in err


def test_a_second_training_into_the_same_run_folder_is_refused(tmp_path, run_cli, blocked_command):
    data = _data(tmp_path / "data")
    args = ["saliency", "train", "--data", data, "--model", "fcn", "--out", tmp_path / "run",
            "--set", "model_settings={width: 8, area: 3072}", "--set", "epochs=1", "--set", "batch_size=8"]
    first = blocked_command("salclass.saliency.trainer._train_locked", *args)
    code, _, err = run_cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"pid {first.pid} is writing it" in err
    code, _, err = first.release()
    assert code == 0, err


def test_aspect_stretch_crops_one_side_of_image_and_map_alike():
    from salclass.saliency.trainer import Augment, _augment

    x = torch.rand(64, 3, 12, 16)
    dens = x[:, :1].clone()
    still = Augment(flip=False, min_scale=1.0, brightness=0, contrast=0, saturation=0, grayscale=0)
    out, d = _augment(x, dens, still, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x)
    stretched = Augment(flip=False, min_scale=1.0, aspect=0.5, brightness=0, contrast=0, saturation=0, grayscale=0)
    out, d = _augment(x, dens, stretched, torch.Generator().manual_seed(0))
    assert (out - x).abs().flatten(1).amax(1).min() > 0   # every image stretched, none padded or kept
    torch.testing.assert_close(d, out[:, :1])             # the map moves with the image
    with pytest.raises(ValueError, match="aspect"):
        Augment(aspect=1.5)


def test_low_res_blurs_the_image_and_leaves_the_map():
    from salclass.saliency.trainer import Augment, _augment

    x = torch.rand(4, 3, 24, 32)   # noise: every resampling changes it
    dens = torch.rand(4, 1, 24, 32)
    blurred = Augment(flip=False, min_scale=1.0, brightness=0, contrast=0, saturation=0, grayscale=0, low_res=2.0)
    out, d = _augment(x, dens, blurred, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.std() < 0.9 * x.std()   # detail lost, size kept
    torch.testing.assert_close(d, dens)
    with pytest.raises(ValueError, match="low_res"):
        Augment(low_res=-1)


def test_scales_resize_the_batch_within_the_range_keeping_the_stride():
    from salclass.saliency.trainer import _rescaled

    x = torch.rand(2, 3, 144, 192)
    assert _rescaled(x, 0.0, torch.Generator().manual_seed(0)) is x
    gen = torch.Generator().manual_seed(0)
    sizes = {tuple(_rescaled(x, 0.5, gen).shape[-2:]) for _ in range(40)}
    assert len(sizes) > 5
    for h, w in sizes:
        assert h % 8 == 0 and w % 8 == 0 and 144 / 1.5 - 8 <= h <= 144 * 1.5 + 8
        assert abs(w / h - 4 / 3) < 0.1


def test_scales_are_refused_for_a_model_of_one_input_size(tmp_path, run_cli, osie_root):
    code, _, err = run_cli("saliency", "train", "--data", osie_root, "--model", "salnet_shallow", "--out",
                           tmp_path / "run", "--set", "augment.scales=0.5", "--set", "epochs=1")
    assert code == 2 and "augment.scales needs a fully-convolutional model" in err, err
