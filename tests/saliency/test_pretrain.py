"""Pre-training a saliency model's trunk on a store, and starting saliency training from it."""

from __future__ import annotations

import json

import pytest
import torch

from salclass.errors import UserError
from salclass.saliency.models import create, load_trunk, model_checkpoint
from salclass.saliency.pretrain import PretrainConfig, pretrain
from salclass.saliency.trainer import SaliencyTrainConfig, train
from salclass.settings import load_settings

from test_training import _data

SMALL = ["model_settings={width: 8}", "epochs=2", "batch_size=16", "size=48", "crop=40", "threads=1"]


def _cfg(store, out, *sets):
    return load_settings(PretrainConfig, None, [f"store={store}", f"out={out}", *SMALL, *sets])


@pytest.fixture(scope="module")
def trunk_run(tmp_path_factory, tiny_store_no_saliency):
    return pretrain(_cfg(tiny_store_no_saliency, tmp_path_factory.mktemp("pretrain") / "run"))


def test_pretrain_writes_a_run_with_a_trunk_that_learned(trunk_run, tiny_store_no_saliency, tmp_path):
    done = json.loads((trunk_run / "done.json").read_text())
    assert done["result"]["classes"] == ["n01440764", "n02102040", "n02979186"]
    assert 0.0 <= done["result"]["val_accuracy"] <= 1.0
    lines = [json.loads(x) for x in (trunk_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    ckpt = torch.load(trunk_run / "trunk.pt", weights_only=True)
    assert ckpt["type"] == "salclass.saliency_trunk" and ckpt["architecture"] == "fcn"
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"stem", "block2", "block3"}
    torch.manual_seed(0)
    fresh = create("fcn", width=8).trunk_state()
    assert any(not torch.equal(fresh[k], v) for k, v in ckpt["state_dict"].items())  # it trained
    again = pretrain(_cfg(tiny_store_no_saliency, tmp_path / "again"))
    for k, v in torch.load(again / "trunk.pt", weights_only=True)["state_dict"].items():
        assert torch.equal(v, ckpt["state_dict"][k]), k  # seeded: the same weights


def test_load_trunk_sets_the_trunk_and_leaves_the_rest(trunk_run):
    torch.manual_seed(1)
    model = create("fcn", width=8)
    readout = model.readout[0].weight.clone()
    load_trunk(model, trunk_run / "trunk.pt")
    saved = torch.load(trunk_run / "trunk.pt", weights_only=True)["state_dict"]
    for k, v in model.trunk_state().items():
        assert torch.equal(v, saved[k]), k
    assert torch.equal(model.readout[0].weight, readout)


def test_load_trunk_rejects_what_does_not_fit(trunk_run, tmp_path):
    with pytest.raises(UserError, match=r"does not fit .*'width': 16"):
        load_trunk(create("fcn", width=16), trunk_run / "trunk.pt")
    other = tmp_path / "best.pt"
    torch.save(model_checkpoint(create("fcn", width=8)), other)
    with pytest.raises(UserError, match="is a 'salclass.saliency_model' checkpoint, expected 'salclass.saliency_trunk'"):
        load_trunk(create("fcn", width=8), other)
    with pytest.raises(UserError, match="has no trunk"):
        load_trunk(create("salnet_shallow"), trunk_run / "trunk.pt")


def test_saliency_training_starts_from_the_trunk(trunk_run, tmp_path):
    data = _data(tmp_path / "data")
    base = [f"data={data}", "model=fcn", "model_settings={width: 8, area: 3072}", "batch_size=4", "epochs=1",
            "warmup_epochs=0", "select_by=cc", "lr=1e-12"]
    saved = torch.load(trunk_run / "trunk.pt", weights_only=True)["state_dict"]
    key = "stem.0.0.weight"
    for init, same in ((f"init_trunk={trunk_run / 'trunk.pt'}", True), ("init_trunk=null", False)):
        run = train(load_settings(SaliencyTrainConfig, None, [*base, f"out={tmp_path / str(same)}", init]))
        weights = torch.load(run / "best.pt", weights_only=True)["state_dict"][key]
        assert torch.allclose(weights, saved[key], atol=1e-8) is same


def test_pretrain_refuses_bad_input(tiny_store_no_saliency, trunk_run, tmp_path, run_cli):
    code, out, err = run_cli("saliency", "pretrain", str(tiny_store_no_saliency / "val"), "--out", str(tmp_path / "a"),
                             *[x for s in SMALL for x in ("--set", s)])
    assert code == 2 and "pre-training reads the train split" in err and "Traceback" not in err
    code, out, err = run_cli("saliency", "pretrain", str(tiny_store_no_saliency), "--out", str(trunk_run))
    assert code == 2 and "already holds a run" in err
    code, out, err = run_cli("saliency", "pretrain", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"))
    assert code == 2 and "no such store" in err
    code, out, err = run_cli("saliency", "pretrain", str(tiny_store_no_saliency), "--out", str(tmp_path / "c"),
                             "--set", "crop=200")
    assert code == 2 and "crop must be between 16 and size" in err
    code, out, err = run_cli("saliency", "pretrain", str(tiny_store_no_saliency), "--out", str(tmp_path / "d"),
                             "--model", "centre_bias")
    assert code == 2 and "has no trunk to pre-train" in err
    code, out, err = run_cli("saliency", "train", "--data", str(_data(tmp_path / "data")), "--model", "fcn",
                             "--out", str(tmp_path / "e"), "--set", "init_trunk=" + str(trunk_run / "trunk.pt"))
    assert code == 2 and "does not fit" in err and "Traceback" not in err


def test_pretrain_reads_the_store_under_a_shared_lock(tiny_store_no_saliency, tmp_path):
    from salclass.lock import folder_lock

    with folder_lock(tiny_store_no_saliency / "train", exclusive=True):
        with pytest.raises(UserError, match=r"train: pid \d+ is writing it"):
            pretrain(_cfg(tiny_store_no_saliency, tmp_path / "run"))
