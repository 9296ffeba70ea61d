"""Predict into a store: fills every row, resumes after an interruption with the same maps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from salclass.data import Store
from salclass.errors import UserError
from salclass.saliency.predict import predict_into_store


class Interrupt(Exception):
    pass


@pytest.fixture
def store_copy(tiny_store_no_saliency, tmp_path):
    def make(name: str):
        dst = tmp_path / name
        shutil.copytree(tiny_store_no_saliency, dst)
        return dst

    return make


def test_interrupted_predict_resumes_to_the_same_maps(store_copy):
    whole = store_copy("whole") / "train"
    r = predict_into_store(whole, model="image_signature", batch_size=16, progress=False)
    assert r["computed"] == r["count"] == Store.open(whole).count
    reference = np.array(Store.open(whole).saliency)
    assert reference.shape[1:] == (144, 144) and (reference.reshape(len(reference), -1).max(1) == 255).all()

    broken = store_copy("broken") / "train"

    def stop_after_two(done):
        if done >= 32:
            raise Interrupt

    with pytest.raises(Interrupt):
        predict_into_store(broken, model="image_signature", batch_size=16, progress=False, on_batch=stop_after_two)
    meta = json.loads((broken / "saliency.json").read_text())
    assert meta["complete"] is False and meta["done"] == 32
    assert not Store.open(broken).has_saliency  # no claim of maps it does not have

    with pytest.raises(UserError, match="unfinished maps"):
        predict_into_store(broken, model="centre_bias", batch_size=16, progress=False)

    r = predict_into_store(broken, model="image_signature", batch_size=16, progress=False)
    assert r["computed"] == r["count"] - 32
    resumed = Store.open(broken)
    assert resumed.has_saliency and resumed.saliency_model == "image_signature"
    np.testing.assert_array_equal(np.asarray(resumed.saliency), reference)


def test_cli_fills_both_splits_of_a_root_and_skips_finished_ones(store_copy, run_cli):
    root = store_copy("root")
    code, out, err = run_cli("saliency", "predict", root, "--model", "centre_bias", "--batch-size", "50")
    assert code == 0, err
    for split in ("train", "val"):
        s = Store.open(root / split)
        assert s.has_saliency and s.saliency_model == "centre_bias"
        # The centre bias is the same for every image: a check that rows are not mixed up.
        assert np.array_equal(s.saliency[0], s.saliency[s.count - 1])
    code, out, err = run_cli("saliency", "predict", root / "val", "--model", "centre_bias")
    assert code == 0 and "already has complete maps" in out
    code, out, err = run_cli("saliency", "predict", root / "val", "--model", "image_signature")
    assert code == 2 and "already has saliency maps" in err


def test_cli_bad_inputs_are_one_line_errors(store_copy, run_cli, tmp_path):
    code, _, err = run_cli("saliency", "predict", tmp_path / "nowhere")
    assert code == 2 and "store not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("saliency", "predict", tmp_path / "empty")
    assert code == 2 and "not a store split" in err
    root = store_copy("s")
    code, _, err = run_cli("saliency", "predict", root, "--model", "no_such_model")
    assert code == 2 and "unknown saliency model" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    code, _, err = run_cli("saliency", "predict", root, "--model", str(bad))
    assert code == 2 and "not a readable checkpoint" in err
    assert len(err.strip().splitlines()) == 1
