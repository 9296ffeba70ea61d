"""The run folder's owner: its reading rules and its one 'same run' rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from salclass.errors import UserError
from salclass.run_folder import RunFolder, read_metrics, run_precision, settings_difference


def test_torn_last_metrics_line_is_dropped_and_any_other_damage_named(tmp_path: Path):
    run = RunFolder(tmp_path)
    run.append_metrics({"epoch": 1, "val": {"top1": 0.5}})
    run.append_metrics({"epoch": 2, "val": {"top1": 0.6}})
    with open(run.metrics, "a") as f:
        f.write('{"epoch": 3, "val": {"to')  # a kill in the middle of an append
    assert [m["epoch"] for m in run.read_metrics()] == [1, 2]
    assert run.val_curve() == [(1, 0.5), (2, 0.6)]
    run.truncate_metrics(1)
    assert run.read_metrics() == [{"epoch": 1, "val": {"top1": 0.5}}]
    assert len(run.metrics.read_text().splitlines()) == 1
    run.metrics.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        run.read_metrics()
    run.metrics.write_text('{"epoch": "one"}\n')  # hand-edited with the wrong type
    with pytest.raises(UserError, match="line 1 is not an epoch's metrics"):
        run.read_metrics()


def test_damaged_evaluation_files_are_one_line_naming_them(tmp_path: Path):
    run = RunFolder(tmp_path)
    run.eval_dir.mkdir()
    run.eval.write_text(json.dumps({"top1": 0.5, "top5": 1.0}))
    np.savez(run.predictions, index=np.arange(4), label=np.zeros(4, int), top5=np.zeros((4, 5), int),
             correct1=np.array([1, 0, 1, 0], bool), correct5=np.ones(4, bool))
    ev, pred = run.read_evaluation()
    assert ev["top1"] == 0.5 and pred["index"].tolist() == [0, 1, 2, 3]
    good = run.predictions.read_bytes()
    run.predictions.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(UserError, match="predictions.npz: unreadable predictions"):
        run.read_evaluation()
    run.predictions.write_bytes(good)
    run.eval.write_text(json.dumps({"top1": "high", "top5": 1.0}))
    with pytest.raises(UserError, match="'top1' missing or not a number"):
        run.read_evaluation()


def test_same_run_rule():
    base = {"model": "RGB", "lr": 0.01, "epochs": 3, "threads": 1, "out": "a", "store": "s", "init_from": None}
    # how a run computes, how long it goes on and where things are do not make it another run
    assert settings_difference(base, {**base, "threads": 2, "epochs": 5, "out": "b", "store": "t"}) is None
    assert settings_difference(base, {**base, "lr": 0.02}) == "lr: 0.01 in the run, 0.02 now"
    assert settings_difference(base, {**base, "block_order": "bn-relu"}) == \
        "block_order: None in the run, 'bn-relu' now"


def test_metrics_of_a_folder_without_them_are_none_or_an_error_when_required(tmp_path: Path):
    assert RunFolder(tmp_path).read_metrics() == []
    with pytest.raises(UserError, match="no metrics.jsonl .not a training run"):
        read_metrics(tmp_path)


def test_a_resumed_run_computes_in_the_precision_it_trained_in(monkeypatch):
    import torch

    import salclass.precision

    monkeypatch.setattr(salclass.precision, "device_has_native_bf16", lambda device: True)
    cpu = torch.device("cpu")
    assert run_precision("auto", None, cpu, "the run in R") == "bf16"
    assert run_precision("auto", "fp32", cpu, "the run in R") == "fp32"
    with pytest.raises(UserError, match="precision: the run in R was trained in fp32; resume it with precision fp32 "
                                        "or auto"):
        run_precision("bf16", "fp32", cpu, "the run in R")


def test_a_resuming_command_starts_from_the_run_s_saved_settings(tmp_path: Path):
    run = RunFolder(tmp_path)
    assert run.settings_base(None, True) is None
    run.config.write_text("epochs: 1\n")
    assert run.settings_base(None, True) == str(run.config)
    assert run.settings_base(None, False) is None
    assert run.settings_base("mine.yaml", True) == "mine.yaml"
