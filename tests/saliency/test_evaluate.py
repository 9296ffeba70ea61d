"""`salclass saliency eval`: the table on a few real OSIE test images, its
plumbing checked against the metrics called directly, and bad input."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from salclass.errors import UserError
from salclass.saliency import metrics as M
from salclass.saliency.evaluate import CENTRE_BIAS, METRICS, evaluate_models

BOUND = "inter-observer (half vs half)"


@pytest.fixture(scope="module")
def osie_table(osie_root):
    return evaluate_models(osie_root, "test", [], limit=3, progress=False)


def test_table_has_every_baseline_and_the_human_bound(osie_table):
    t = osie_table
    assert t.images == 3 and t.split == "test" and t.shape == (600, 800)
    assert list(t.rows)[0] == CENTRE_BIAS
    assert {"spectral_residual", "image_signature", BOUND} <= set(t.rows)
    for name, row in t.rows.items():
        assert set(row) == set(METRICS)
        for m in ("auc_judd", "auc_shuffled", "nss", "cc", "kl", "sim"):
            assert math.isfinite(row[m]), (name, m)
        assert 0 <= row["auc_judd"] <= 1 and 0 <= row["sim"] <= 1 and row["kl"] >= 0
    # Information gain over the centre bias is zero for the centre bias itself
    # and not defined for the human bound.
    assert t.rows[CENTRE_BIAS]["ig"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(t.rows[BOUND]["ig"])
    # Observers predict each other far better than the centre bias does.
    human, centre = t.rows[BOUND], t.rows[CENTRE_BIAS]
    assert human["nss"] > centre["nss"] + 1.0
    assert human["auc_judd"] > centre["auc_judd"] and human["cc"] > centre["cc"]
    # Other images' fixations share the centre bias, so the centre bias cannot
    # tell them apart from this image's: shuffled AUC near chance.
    assert abs(centre["auc_shuffled"] - 0.5) < 0.1


def test_table_is_the_per_image_mean_of_the_metrics(osie_table, osie_root):
    """Recompute the centre bias's row from the metric functions directly."""
    from salclass.saliency import load_predictor
    from salclass.saliency.fixations import open_fixation_data

    ds = open_fixation_data(osie_root).split("test")
    names = ds.names[:3]
    ds = ds.subset(names)
    pts = []
    for i in range(3):
        rows, cols = ds.fixations(i).pixels((600, 800), (600, 800))
        pts.append(np.stack([cols, rows], axis=1))
    centre = load_predictor(CENTRE_BIAS)
    expect = {m: [] for m in ("auc_judd", "auc_shuffled", "nss", "cc", "kl", "sim")}
    for i in range(3):
        smap = centre.predict(ds.image(i)[None])[0].astype(np.float64)
        gt = ds.density(i).astype(np.float64)
        others = np.concatenate([pts[j] for j in range(3) if j != i])
        expect["auc_judd"].append(M.auc_judd(smap, pts[i]))
        expect["auc_shuffled"].append(M.auc_shuffled(smap, pts[i], others))
        expect["nss"].append(M.nss(smap, pts[i]))
        expect["cc"].append(M.cc(smap, gt))
        expect["kl"].append(M.kl_divergence(smap, gt))
        expect["sim"].append(M.sim(smap, gt))
    for m, values in expect.items():
        assert osie_table.rows[CENTRE_BIAS][m] == pytest.approx(np.mean(values), rel=1e-9), m


def test_each_model_is_compared_with_the_centre_bias_image_by_image(osie_table, osie_root):
    from salclass.saliency import load_predictor
    from salclass.saliency.fixations import open_fixation_data

    ds = open_fixation_data(osie_root).split("test")
    ds = ds.subset(ds.names[:3])
    signature, centre = load_predictor("image_signature"), load_predictor(CENTRE_BIAS)
    d = []
    for i in range(3):
        rows, cols = ds.fixations(i).pixels((600, 800), (600, 800))
        pts, img = np.stack([cols, rows], axis=1), ds.image(i)[None]
        d.append(M.nss(signature.predict(img)[0].astype(np.float64), pts)
                 - M.nss(centre.predict(img)[0].astype(np.float64), pts))
    mean, low, high = osie_table.versus["image_signature"]["nss"]
    assert mean == pytest.approx(np.mean(d), rel=1e-9)
    # With 3 images a resample repeats one image three times 1 time in 27, more
    # often than the 2.5% tails: the 95% interval runs from the lowest to the highest difference.
    assert (low, high) == pytest.approx((min(d), max(d)), rel=1e-9)
    assert set(osie_table.versus) == set(osie_table.rows) - {CENTRE_BIAS, BOUND}
    doc = osie_table.to_json()["versus"]
    assert doc["against"] == CENTRE_BIAS
    assert doc["differences"]["image_signature"]["nss"] == {"difference": mean, "ci95": [low, high]}
    assert f"difference from {CENTRE_BIAS}, 95% interval over images" in osie_table.format()


def test_a_checkpoint_gets_its_own_row(osie_root, tmp_path):
    import torch

    from salclass.io import atomic_torch_save
    from salclass.saliency.models import create, model_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "fcn.pt"
    atomic_torch_save(model_checkpoint(create("fcn")), ckpt)
    t = evaluate_models(osie_root, "test", [str(ckpt)], limit=2, baselines=False, progress=False)
    assert list(t.rows) == [CENTRE_BIAS, str(ckpt), BOUND]
    assert all(math.isfinite(t.rows[str(ckpt)][m]) for m in ("auc_judd", "nss", "cc", "kl", "sim", "ig"))
    # Each row names what made it: the weights by file and hash, a weight-free model by name.
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    assert t.models == {CENTRE_BIAS: CENTRE_BIAS, str(ckpt): f"fcn.pt sha256:{digest}"}
    assert f"weights: {ckpt} = fcn.pt sha256:{digest}" in t.format()
    assert t.to_json()["models"][str(ckpt)] == f"fcn.pt sha256:{digest}"
    one = evaluate_models(osie_root, "test", [str(ckpt)], limit=1, baselines=False, progress=False)
    assert one.versus[str(ckpt)]["nss"] == "needs at least two images scored by both"
    # Against the checkpoint instead: the centre bias's differences are the same ones, turned round.
    rev = evaluate_models(osie_root, "test", [], limit=2, baselines=False, progress=False, versus=str(ckpt))
    assert rev.against == str(ckpt) and set(rev.versus) == {CENTRE_BIAS}
    assert rev.versus[CENTRE_BIAS]["nss"][0] == pytest.approx(-t.versus[str(ckpt)]["nss"][0], rel=1e-9)
    assert f"difference from {ckpt}, 95% interval" in rev.format()


def test_cli_json_is_model_metric_value(run_cli, osie_root):
    code, out, err = run_cli("saliency", "eval", "--data", osie_root, "--split", "val", "--limit", "2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["images"] == 2 and doc["split"] == "val" and "24 px per degree" in doc["ground_truth"]
    table = doc["scores"]
    assert CENTRE_BIAS in table and BOUND in table
    assert set(table[CENTRE_BIAS]) == set(METRICS)
    assert "not defined for the bound" in table[BOUND]["ig"]
    assert isinstance(table[CENTRE_BIAS]["nss"], float)


def test_cli_text_table(run_cli, osie_root):
    code, out, _ = run_cli("saliency", "eval", "--data", osie_root, "--limit", "1")
    assert code == 0
    assert "AUC-Judd" in out and CENTRE_BIAS in out and BOUND in out


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/nowhere"], "not found"),
    (["--data", "{osie}", "--split", "holdout"], "unknown split"),
    (["--data", "{osie}", "--model", "no_such_model"], "unknown saliency model"),
    (["--data", "{osie}", "--versus", "no_such_model"], "unknown saliency model"),
    (["--data", "{osie}", "--model", "{tmp}/garbage.pt"], "not a readable checkpoint"),
    (["--data", "{osie}", "--limit", "0"], "at least 1"),
])
def test_bad_input_is_one_line(run_cli, osie_root, tmp_path, args, message):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    args = [a.format(tmp=tmp_path, osie=osie_root) for a in args]
    code, out, err = run_cli("saliency", "eval", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_folder_layout_of_mixed_sizes_without_subjects(tmp_path):
    """images/ + maps/ + fixations/*.npy with images of two sizes and maps at
    half resolution: every metric at each image's own size, but no human
    bound (the points carry no subject)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "maps", "fixations"):
        (tmp_path / sub).mkdir()
    for k, (h, w) in enumerate([(30, 40), (60, 80), (30, 40)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "images" / f"im{k}.png")
        yy, xx = np.mgrid[0:h // 2, 0:w // 2]
        gt = np.exp(-((xx - w / 4) ** 2 + (yy - h / 4) ** 2) / (w / 8) ** 2)
        Image.fromarray((gt * 255).astype(np.uint8)).save(tmp_path / "maps" / f"im{k}.png")
        np.save(tmp_path / "fixations" / f"im{k}.npy", np.array([[w / 2, h / 2], [w / 2 + 3, h / 2 - 2]]))
    t = evaluate_models(tmp_path, "all", [], progress=False)
    assert t.images == 3 and t.ground_truth == "the data's own maps" and t.shape is None
    assert BOUND not in t.rows and any("no inter-observer row" in n for n in t.notes)
    row = t.rows[CENTRE_BIAS]
    assert all(math.isfinite(row[m]) for m in METRICS)
    # Fixations at the centre of every image, ground truth peaked there: the centre bias is nearly perfect.
    assert row["auc_judd"] > 0.9 and row["cc"] > 0.9
    # Maps without points: the distribution metrics only, and a reason for each of the others.
    shutil.rmtree(tmp_path / "fixations")
    row = evaluate_models(tmp_path, "all", [], progress=False).rows[CENTRE_BIAS]
    assert math.isnan(row["auc_judd"]) and math.isnan(row["nss"]) and math.isnan(row["ig"])
    assert row["cc"] > 0.9


def test_maps_only_data_says_why_metrics_are_missing(tmp_path, run_cli):
    for sub in ("images", "maps"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "images" / f"im{k}.png")
        m = np.zeros((30, 40), np.uint8)
        m[10 + k, 15:25] = 255
        Image.fromarray(m).save(tmp_path / "maps" / f"im{k}.png")
    code, out, err = run_cli("saliency", "eval", "--data", tmp_path, "--split", "all", "--json")
    assert code == 0, err
    doc = json.loads(out)
    for model, row in doc["scores"].items():
        for m in ("auc_judd", "auc_shuffled", "nss", "ig"):
            assert row[m].startswith("needs fixation points, and this data has maps only (put each image's"), (model, m)
        for m in ("cc", "kl", "sim"):
            assert isinstance(row[m], float), (model, m)
    assert BOUND not in doc["scores"]
    assert doc["notes"] == ["no inter-observer row: it needs fixation points with their observers"]
    code, out, err = run_cli("saliency", "eval", "--data", tmp_path, "--split", "all")
    assert code == 0, err
    assert "- AUC-Judd, sAUC, NSS, IG: needs fixation points, and this data has maps only" in out
    assert "note: no inter-observer row" in out


def test_limit_must_be_positive(osie_root):
    with pytest.raises(UserError, match="at least 1"):
        evaluate_models(osie_root, "test", [], limit=0, progress=False)


def test_a_diverged_checkpoint_is_one_line(osie_root, tmp_path):
    import torch

    from salclass.io import atomic_torch_save
    from salclass.saliency.models import create, model_checkpoint

    model = create("fcn")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    ckpt = tmp_path / "nan.pt"
    atomic_torch_save(model_checkpoint(model), ckpt)
    with pytest.raises(UserError, match="NaN"):
        evaluate_models(osie_root, "test", [str(ckpt)], limit=1, baselines=False, progress=False)
