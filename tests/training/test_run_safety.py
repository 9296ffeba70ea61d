"""A run folder has one writer, the store it reads is not rewritten under it,
and damaged or unwritable files are one line (exit code 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from salclass.data import Store

HOLD_IN_EPOCH = "salclass.training.main.train_one_epoch"


def _train_args(small_sets, store: Path, out: Path, **overrides) -> list[str]:
    return ["train"] + sum((["--set", s] for s in small_sets(store, out, **overrides)), [])


def test_a_second_train_into_the_same_run_folder_is_refused(tiny_store, tmp_path, run_cli, small_sets,
                                                            blocked_command):
    out = tmp_path / "run"
    first = blocked_command(HOLD_IN_EPOCH, *_train_args(small_sets, tiny_store, out))
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, out), "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {first.pid} is writing it" in err and "train" in err
    code, _, err = first.release()
    assert code == 0, err
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert json.loads((out / "done.json").read_text())["epochs"] == 2


def test_maps_are_not_rewritten_while_a_run_reads_them(tiny_store, tmp_path, run_cli, small_sets,
                                                       blocked_command):
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    maps_before = (store / "train" / "saliency.npy").read_bytes()
    run = blocked_command(HOLD_IN_EPOCH, *_train_args(small_sets, store, tmp_path / "run", model="RGBS",
                                                       epochs=1, milestones=[]))
    code, _, err = run_cli("saliency", "predict", store, "--model", "centre_bias", "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {run.pid} is reading it" in err and "train" in err
    code, _, err = run.release()
    assert code == 0, err
    assert (store / "train" / "saliency.npy").read_bytes() == maps_before
    assert Store.open(store / "train").saliency_model == "contrast"
