"""Training runs end to end on a small real store: files, metrics, reruns,
fine-tuning, attention transfer, evaluation and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from salclass.errors import UserError
from salclass.training.checkpoint import load_classifier
from salclass.training import evaluate_run, read_metrics, train

SPLIT_KEYS = {"loss", "top1", "top5", "images", "images_per_s", "seconds"}


def test_rgb_run_files_and_metrics(rgb_run: Path, tiny_store: Path):
    metrics = read_metrics(rgb_run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    # milestone 2: the learning rate drops once 2 epochs are complete
    assert [m["lr"] for m in metrics] == pytest.approx([0.01, 0.01, 0.001])
    for m in metrics:
        assert SPLIT_KEYS <= set(m["train"]) and SPLIT_KEYS <= set(m["val"])
        assert m["train"]["images"] == 72 and m["val"]["images"] == 36
        assert 0 <= m["val"]["top1"] <= m["val"]["top5"] <= 1
        assert np.isfinite(m["train"]["loss"]) and m["train"]["images_per_s"] > 0
    ckpt = load_classifier(rgb_run / "checkpoint.pt")
    assert ckpt["epoch"] == 3 and ckpt["model_name"] == "RGB"
    assert ckpt["num_classes"] == 3 and ckpt["input_size"] == 128
    assert {"model", "optimizer", "scheduler", "rng", "config"} <= set(ckpt)
    assert ckpt["config"]["store"] == str(tiny_store)
    saved = yaml.safe_load((rgb_run / "config.yaml").read_text())
    assert saved["epochs"] == 3 and saved["model"] == "RGB" and saved["momentum"] == 0.9
    assert ckpt["block_order"] == saved["block_order"] == "relu-bn" and saved["decay_on"] == "kernels"
    done = json.loads((rgb_run / "done.json").read_text())
    assert done["type"] == "salclass.run_done" and done["epochs"] == 3
    assert done["val"] == metrics[-1]["val"]
    assert any(p.name.startswith("events.out.tfevents") for p in (rgb_run / "tb").iterdir())


def test_finished_run_is_not_retrained(rgb_run: Path, tiny_store: Path, small_config):
    before = (rgb_run / "checkpoint.pt").stat().st_mtime_ns, (rgb_run / "metrics.jsonl").read_text()
    assert train(small_config(tiny_store, rgb_run, epochs=3, tensorboard=True)) == rgb_run
    assert ((rgb_run / "checkpoint.pt").stat().st_mtime_ns, (rgb_run / "metrics.jsonl").read_text()) == before


def test_fanin1_trains_two_epochs(tmp_path: Path, tiny_store: Path, small_config):
    run = train(small_config(tiny_store, tmp_path / "fanin1", model="FanIn1"))
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["train"]["images"] == 72 for m in metrics)
    ckpt = load_classifier(run / "checkpoint.pt")
    assert ckpt["model_name"] == "FanIn1" and ckpt["uses_saliency"] is True
    assert any(k.startswith("sal_conv2") for k in ckpt["model"])
    # Training moved the weights: the two epochs' training losses differ.
    assert metrics[0]["train"]["loss"] != metrics[1]["train"]["loss"]


def test_finetune_with_zero_new_weights_starts_at_baseline(tmp_path: Path, tiny_store: Path, rgb_run: Path, small_config):
    base_val = read_metrics(rgb_run)[-1]["val"]
    run = train(small_config(tiny_store, tmp_path / "rgbs_ft", model="RGBS", epochs=1,
                             init_from=str(rgb_run), init_new="zeros"))
    start = json.loads((run / "val_start.json").read_text())["val"]
    assert start["top1"] == base_val["top1"]
    assert start["top5"] == base_val["top5"]
    assert start["loss"] == pytest.approx(base_val["loss"], rel=1e-5)
    assert "conv1.weight" in (run / "init.txt").read_text()
    ckpt = load_classifier(run / "checkpoint.pt")
    assert ckpt["model"]["conv1.weight"].shape[1] == 4


def test_finetune_uniform_new_weights_changes_the_start(tmp_path: Path, tiny_store: Path, rgb_run: Path, small_config):
    base_val = read_metrics(rgb_run)[-1]["val"]
    run = train(small_config(tiny_store, tmp_path / "rgbs_u", model="RGBS", epochs=1,
                             init_from=str(rgb_run), init_new="uniform"))
    start = json.loads((run / "val_start.json").read_text())["val"]
    assert start["loss"] != pytest.approx(base_val["loss"], rel=1e-5)


def test_attention_transfer_adds_its_loss(tmp_path: Path, tiny_store: Path, small_config):
    run = train(small_config(tiny_store, tmp_path / "at", epochs=1, attention={"beta": 2.0, "layer": "relu2"}))
    m = read_metrics(run)[0]["train"]
    # The term is beta times a distance between unit vectors: in (0, 2*beta].
    assert 0 < m["attention_loss"] <= 4.0


def test_attention_loss_is_zero_when_student_matches_teacher():
    from salclass.training.engine import AttentionLoss

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.feat = torch.nn.Identity()

        def forward(self, x):
            return self.feat(x)

    net = Net().train()
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    at = AttentionLoss(net, "feat", beta=3.0)
    net(x)
    assert at(x.detach() ** 2).item() == pytest.approx(0.0, abs=1e-6)
    net(x)
    other = at(torch.rand(2, 1, 16, 16))
    assert other.item() > 0
    other.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    at.close()


def test_evaluate_run_writes_predictions(tmp_path: Path, rgb_run: Path, tiny_store: Path):
    out = tmp_path / "eval"
    r = evaluate_run(rgb_run, tiny_store / "val", out=out)
    saved = json.loads((out / "eval.json").read_text())
    assert saved["type"] == "salclass.eval" and saved["count"] == 36
    last = read_metrics(rgb_run)[-1]["val"]
    assert r["top1"] == last["top1"] and r["loss"] == pytest.approx(last["loss"], rel=1e-6)
    p = np.load(out / "predictions.npz")
    assert str(p["type"]) == "salclass.predictions"
    assert p["index"].tolist() == list(range(36))
    assert p["top5"].shape == (36, 5) and (p["top5"][:, 3:] == -1).all()  # 3 classes: 2 slots unused
    assert (p["correct1"] == (p["top5"][:, 0] == p["label"])).all()
    assert p["correct1"].mean() == pytest.approx(r["top1"])
    confusion = np.array(saved["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 36
    assert np.trace(confusion) == p["correct1"].sum()
    names = [c["name"] for c in saved["per_class"]]
    assert names == ["tench", "English springer", "cassette player"]
    assert [c["count"] for c in saved["per_class"]] == [12, 12, 12]
    for k, c in enumerate(saved["per_class"]):
        assert c["top1"] == pytest.approx(confusion[k, k] / 12)


def test_evaluate_cli_and_plots(tmp_path: Path, rgb_run: Path, tiny_store: Path, run_cli, small_config):
    from PIL import Image

    code, out, err = run_cli("evaluate", rgb_run / "checkpoint.pt", "--store", tiny_store, "--out", tmp_path / "e",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 36
    code, out, err = run_cli("plot", rgb_run, "--out", tmp_path / "one.png")
    assert code == 0, err
    with Image.open(tmp_path / "one.png") as im:
        assert im.size[0] > im.size[1] > 500
    other = tmp_path / "other"
    train(small_config(tiny_store, other, epochs=1, lr=0.02))
    code, out, err = run_cli("plot", rgb_run, other, "--out", tmp_path / "many.png")
    assert code == 0, err
    with Image.open(tmp_path / "many.png") as im:
        assert im.size[0] > 500


def test_mean_subtracted_run_uses_the_training_means_everywhere(tmp_path: Path, tiny_store: Path, small_config):
    from salclass.data import Store

    run = train(small_config(tiny_store, tmp_path / "rgbs_mean", model="RGBS", mean_subtract=True, epochs=1,
                             milestones=[1]))
    ckpt = load_classifier(run / "checkpoint.pt")
    tr, va = Store.open(tiny_store / "train"), Store.open(tiny_store / "val")
    assert ckpt["input_mean"] == pytest.approx([float(v) for v in tr.mean])
    assert ckpt["saliency_mean"] == pytest.approx(tr.saliency_mean)
    assert not np.allclose(tr.mean, va.mean)
    # Evaluating the checkpoint later shifts the val images by the same (training) means as the run did.
    r = evaluate_run(run, tiny_store / "val", out=tmp_path / "eval")
    assert r["loss"] == pytest.approx(read_metrics(run)[-1]["val"]["loss"], rel=1e-6)


def test_block_order_is_kept_by_evaluation_and_checked_by_fine_tuning(tmp_path: Path, tiny_store: Path,
                                                                      small_config):
    from salclass.training import evaluate_run

    run = train(small_config(tiny_store, tmp_path / "bn_first", epochs=1, block_order="bn-relu"))
    assert load_classifier(run)["block_order"] == "bn-relu"
    last = read_metrics(run)[-1]["val"]
    # evaluation rebuilds the network in the order it was trained in, so it reproduces the run's own numbers
    ev = evaluate_run(run, tiny_store / "val", progress=False)
    assert ev["loss"] == pytest.approx(last["loss"], rel=1e-5) and ev["top1"] == pytest.approx(last["top1"])
    with pytest.raises(UserError, match="block order bn-relu"):
        train(small_config(tiny_store, tmp_path / "ft", model="RGBS", epochs=1, init_from=str(run)))
