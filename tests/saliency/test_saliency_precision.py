"""Saliency prediction and training in bf16: the maps score like fp32's on
OSIE, a store records the precision of its maps, a training run records and
keeps its precision, and the saved model stays float32."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from salclass.data import Store
from salclass.errors import UserError
from salclass.saliency import load_predictor
from salclass.saliency.evaluate import evaluate_models
from salclass.saliency.predict import predict_into_store
from salclass.saliency.trainer import train

from test_training import _cfg, _data

# The parity bound of issue 13 on AUC-Judd, NSS and CC. The test scores the
# first images of the OSIE test split (bf16 is emulated, slowly, on CPUs without
# it); docs/training.md gives the command for the whole split.
TOLERANCE = 0.005
OSIE_IMAGES = 12


def test_bf16_maps_score_like_fp32_on_osie(osie_root):
    table = evaluate_models(osie_root, "test", ["default"], baselines=False, limit=OSIE_IMAGES,
                            precisions=("fp32", "bf16"), progress=False)
    rows = table.to_json()["scores"]
    fp32 = next(v for k, v in rows.items() if k.startswith("default") and not k.endswith(" bf16"))
    bf16 = next(v for k, v in rows.items() if k.startswith("default") and k.endswith(" bf16"))
    for metric in ("auc_judd", "nss", "cc"):
        assert abs(bf16[metric] - fp32[metric]) <= TOLERANCE, (metric, fp32[metric], bf16[metric])


def test_bf16_changes_the_maps_a_little():
    images = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    fp32 = load_predictor("default").predict(images)
    p = load_predictor("default", precision="bf16")
    bf16 = p.predict(images)
    assert p.name.endswith(" bf16")
    assert not np.array_equal(fp32, bf16)  # autocast is on
    assert np.abs(fp32 - bf16).max() < 0.1


def test_store_records_the_precision_of_its_maps(tiny_store_no_saliency, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(tiny_store_no_saliency, store)
    split = store / "val"

    class Stop(Exception):
        pass

    def stop(done):
        raise Stop

    with pytest.raises(Stop):
        predict_into_store(split, model="default", batch_size=8, progress=False, precision="bf16", on_batch=stop)
    # Unfinished bf16 maps continue only in bf16: one store's rows never mix precisions.
    with pytest.raises(UserError, match="unfinished maps"):
        predict_into_store(split, model="default", batch_size=8, progress=False, precision="fp32")
    r = predict_into_store(split, model="default", batch_size=8, progress=False, precision="bf16")
    assert r["model"].endswith(" bf16") and Store.open(split).saliency_model == r["model"]
    # Complete maps of the same model are kept whatever precision is asked for now.
    again = predict_into_store(split, model="default", batch_size=8, progress=False, precision="fp32")
    assert again["computed"] == 0 and again["model"] == r["model"]


def test_saliency_training_records_and_keeps_bf16(tmp_path, monkeypatch):
    from salclass import precision as prec

    data = _data(tmp_path / "data", n=8)
    monkeypatch.setattr(prec, "device_has_native_bf16", lambda device: True)
    run = train(_cfg(data, tmp_path / "run", "epochs=1"))
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "bf16"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["precision"] == "bf16"

    monkeypatch.setattr(prec, "device_has_native_bf16", lambda device: False)
    with pytest.raises(UserError, match="trained in bf16"):
        train(_cfg(data, run, "epochs=2", "precision=fp32"), resume=True)
    train(_cfg(data, run, "epochs=2"), resume=True)  # auto keeps the run's bf16
    assert torch.load(run / "checkpoint.pt", weights_only=True)["precision"] == "bf16"
    best = torch.load(run / "best.pt", weights_only=True)
    weights = best["state_dict"]
    assert weights and all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
