"""Bad input to `salclass train / evaluate / plot`: one line on stderr, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from salclass.io import atomic_torch_save
from salclass.training import read_metrics


def _one_line_error(code: int, err: str, *fragments: str, after_progress: bool = False) -> None:
    """Exit 2 and one error line (after the run's own progress lines, where it started training)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert (after_progress or len(lines) == 1) and lines[-1].startswith("salclass: error:"), err
    assert sum(line.startswith("salclass: error:") for line in lines) == 1, err
    for f in fragments:
        assert f in lines[-1], lines[-1]


@pytest.mark.parametrize("override, fragment", [
    ("lrr=0.1", "unknown setting 'lrr'"),
    ("lr=-1", "lr must be > 0"),
    ("epochs=zero", "epochs: expected an integer"),
    ("milestones=[30, 20]", "milestones must be increasing"),
    ("model=AlexNet9", "unknown model 'AlexNet9'"),
    ("init_new=ones", "init_new: 'ones' is not one of"),
    ("device=tpu", "device: 'tpu' is not one of"),
    ("attention.beta=-1", "attention.beta must be >= 0"),
    ("dropout=1.5", "dropout must be in [0, 1)"),
])
def test_bad_config_values(tmp_path: Path, tiny_store: Path, run_cli, small_sets, override, fragment):
    code, _, err = run_cli("train", *sum((["--set", s] for s in small_sets(tiny_store, tmp_path / "r")), []),
                           "--set", override)
    _one_line_error(code, err, fragment)
    assert not (tmp_path / "r").exists()


def test_bad_config_file(tmp_path: Path, tiny_store: Path, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: RGB\nbatch_size: [1, 2\n")
    _one_line_error(*run_cli("train", "--config", bad)[::2], "not valid YAML")
    bad.write_text("model: RGB\nlearning_rate: 0.1\n")
    _one_line_error(*run_cli("train", "--config", bad, "--set", f"store={tiny_store}", "--set",
                             f"out={tmp_path / 'r'}")[::2], "unknown setting 'learning_rate'")
    _one_line_error(*run_cli("train", "--config", tmp_path / "missing.yaml")[::2], "config file not found")
    _one_line_error(*run_cli("train", "--set", "model=RGB")[::2], "missing required setting 'store'")


def test_shipped_configs_load(tiny_store: Path, tmp_path: Path):
    from salclass.settings import load_settings
    from salclass.training import TrainConfig

    repo = Path(__file__).resolve().parents[2]
    configs = sorted((repo / "configs" / "train").glob("*.yaml"))
    assert {"rgb.yaml", "small.yaml"} <= {c.name for c in configs}
    for c in configs:
        load_settings(TrainConfig, c, [f"store={tiny_store}", f"out={tmp_path}"])
    base = load_settings(TrainConfig, repo / "configs/train/rgb.yaml", [f"store={tiny_store}", f"out={tmp_path}"])
    assert base == TrainConfig(store=tiny_store, out=tmp_path)  # the file spells out the defaults


def test_thesis_protocol_defaults(tmp_path: Path):
    from salclass.training import TrainConfig

    c = TrainConfig(store=tmp_path, out=tmp_path)
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.epochs) == (0.01, 0.9, 0.001, 128, 90)
    assert c.decay_on == "kernels" and c.block_order == "relu-bn"
    assert c.milestones == [24, 45, 62] and c.lr_gamma == 0.1 and c.dropout == 0.5
    assert c.mean_subtract is False and c.crop is None and c.seed == 0
    assert c.init_new == "uniform" and not c.attention.enabled


def test_missing_store(tmp_path: Path, run_cli, small_sets):
    sets = sum((["--set", s] for s in small_sets(tmp_path / "nowhere", tmp_path / "r")), [])
    _one_line_error(*run_cli("train", *sets)[::2], "no such store")


def test_store_without_saliency_for_a_saliency_variant(tmp_path: Path, tiny_store_no_saliency: Path, run_cli,
                                                        small_sets):
    for extra in (["--set", "model=FanIn1"], ["--set", "attention.beta=1"]):
        sets = sum((["--set", s] for s in small_sets(tiny_store_no_saliency, tmp_path / "r")), [])
        _one_line_error(*run_cli("train", *sets, *extra)[::2], "has no complete saliency maps")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_checkpoints_of_another_architecture(tmp_path: Path, tiny_store: Path, rgb_run: Path, run_cli, small_sets,
                                              linked_copy):
    sets = sum((["--set", s] for s in small_sets(tiny_store, tmp_path / "r", epochs=1)), [])
    # FanIn3 has no conv2: the RGB baseline cannot be transplanted into it.
    _one_line_error(*run_cli("train", *sets, "--set", "model=FanIn3", "--set", f"init_from={rgb_run}")[::2],
                    "lacks")
    # A checkpoint of another kind altogether.
    other = tmp_path / "saliency.pt"
    atomic_torch_save({"type": "salclass.saliency_model", "version": 1, "model": {}}, other)
    _one_line_error(*run_cli("train", *sets, "--set", f"init_from={other}")[::2], "expected 'salclass.classifier'")
    _one_line_error(*run_cli("evaluate", other, "--store", tiny_store / "val")[::2], "expected 'salclass.classifier'")
    # Resuming a run folder with another model.
    copy = tmp_path / "copy"
    linked_copy(rgb_run, copy)
    sets = sum((["--set", s] for s in small_sets(tiny_store, copy, epochs=4)), [])
    _one_line_error(*run_cli("train", *sets, "--set", "model=RGBS", "--resume")[::2], "other settings (model")
    # A checkpoint whose weights do not fit the model it names.
    ckpt = torch.load(rgb_run / "checkpoint.pt", weights_only=True)
    ckpt["model_name"] = "RGBS"
    atomic_torch_save(ckpt, tmp_path / "liar.pt")
    _one_line_error(*run_cli("evaluate", tmp_path / "liar.pt", "--store", tiny_store)[::2], "do not fit")


def test_unfinished_run_needs_resume(tmp_path: Path, tiny_store: Path, rgb_run: Path, run_cli, small_sets,
                                     linked_copy):
    copy = tmp_path / "copy"
    linked_copy(rgb_run, copy)
    (copy / "done.json").unlink()
    sets = sum((["--set", s] for s in small_sets(tiny_store, copy, epochs=3, tensorboard=True)), [])
    _one_line_error(*run_cli("train", *sets)[::2], "unfinished run", "--resume")
    # With --resume, a run that has all its epochs only gets its done.json back.
    code, _, err = run_cli("train", "--set", f"out={copy}", "--resume")
    assert code == 0, err
    assert (copy / "done.json").is_file() and len(read_metrics(copy)) == 3


def test_out_folder_that_is_not_a_run(tmp_path: Path, tiny_store: Path, run_cli, small_sets):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    sets = sum((["--set", s] for s in small_sets(tiny_store, tmp_path / "busy")), [])
    _one_line_error(*run_cli("train", *sets)[::2], "holds no run")


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, tiny_store: Path, run_cli,
                                                                 small_sets, monkeypatch):
    import torch.nn.functional as F

    real = F.cross_entropy
    calls = {"train": 0}

    def poisoned(logits, label, *args, **kwargs):
        loss = real(logits, label, *args, **kwargs)
        if kwargs.get("reduction", "mean") == "mean":
            calls["train"] += 1
            if calls["train"] > 3:  # epoch 1 has 3 batches; epoch 2 diverges
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    out = tmp_path / "r"
    sets = sum((["--set", s] for s in small_sets(tiny_store, out, epochs=3)), [])
    _one_line_error(*run_cli("train", *sets)[::2], "non-finite in epoch 2", "checkpoint of epoch 1",
                    after_progress=True)
    assert [m["epoch"] for m in read_metrics(out)] == [1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "done.json").exists()


def test_evaluate_and_plot_bad_paths(tmp_path: Path, tiny_store: Path, rgb_run: Path, run_cli):
    _one_line_error(*run_cli("evaluate", tmp_path / "none", "--store", tiny_store)[::2], "checkpoint not found")
    _one_line_error(*run_cli("evaluate", rgb_run, "--store", tmp_path / "nostore")[::2], "no such store")
    _one_line_error(*run_cli("plot", tmp_path, "--out", tmp_path / "x.png")[::2], "no metrics.jsonl")
    _one_line_error(*run_cli("plot", rgb_run, "--out", tmp_path / "x.pdf")[::2], ".png")


def test_resume_with_another_store(tmp_path: Path, tiny_store: Path, rgb_run: Path, run_cli, small_sets,
                                   linked_copy):
    import json

    other = tmp_path / "other_store"
    shutil.copytree(tiny_store, other)
    from salclass import checksum

    # Another store, written as a store is (with its checksum), not a damaged one.
    meta = json.loads((other / "train" / "meta.json").read_text())
    meta["fingerprint"] = "another source"
    checksum.write_json(other / "train" / "meta.json", meta)
    copy = tmp_path / "copy"
    linked_copy(rgb_run, copy)
    sets = sum((["--set", s] for s in small_sets(other, copy, epochs=4, tensorboard=True)), [])
    _one_line_error(*run_cli("train", *sets, "--resume")[::2], "not the store this run was trained on",
                    "train_fingerprint", after_progress=False)
