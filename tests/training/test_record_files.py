"""A run's record files (done.json, metrics.jsonl, eval/): written with their
checksums, read back as written, and an edit is one line naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from salclass.errors import UserError
from salclass.run_folder import RunFolder, write_evaluation


def _record(run: RunFolder, checkpoint_sha: str = "a" * 64) -> dict:
    run.path.mkdir(parents=True, exist_ok=True)
    run.config.write_text("model: RGB\nepochs: 2\n")
    for epoch in (1, 2):
        run.append_metrics({"epoch": epoch, "lr": 0.01, "val": {"top1": 0.25 * epoch, "loss": 1.5}})
    run.write_done({"epochs": 2, "model": "RGB", "precision": "fp32", "checkpoint_sha256": checkpoint_sha})
    pred = {"index": np.arange(4), "label": np.array([0, 1, 1, 0]), "top5": np.tile(np.arange(5), (4, 1)),
            "correct1": np.array([1, 0, 0, 1], bool), "correct5": np.ones(4, bool)}
    return write_evaluation(run.eval_dir, {"checkpoint_sha256": checkpoint_sha, "epoch": 2, "count": 4,
                                           "top1": 0.5, "top5": 1.0}, pred)


def test_a_record_round_trip(tmp_path):
    run = RunFolder(tmp_path / "run")
    written = _record(run)
    back = RunFolder(run.path)
    assert back.is_record() and back.evaluation_matches()
    assert [m["epoch"] for m in back.read_metrics()] == [1, 2] and back.val_curve() == [(1, 0.25), (2, 0.5)]
    assert back.read_done()["checkpoint_sha256"] == "a" * 64
    ev, pred = back.read_evaluation()
    assert ev == {k: v for k, v in written.items() if k != "content_sha256"}
    assert pred["correct1"].tolist() == [True, False, False, True]
    assert back.unverified == []
    # An evaluation made from another checkpoint than the final one is told apart.
    _record(RunFolder(tmp_path / "other"))
    RunFolder(tmp_path / "other").write_done({"epochs": 2, "checkpoint_sha256": "b" * 64})
    assert not RunFolder(tmp_path / "other").evaluation_matches()


def test_edited_record_files_are_one_line_naming_them(tmp_path):
    run = RunFolder(tmp_path / "run")
    _record(run)
    text = run.done.read_text()
    run.done.write_text(text.replace('"epochs": 2', '"epochs": 3'))
    with pytest.raises(UserError, match=f"{run.done}: edited or damaged"):
        RunFolder(run.path).read_done()
    lines = run.metrics.read_text().splitlines()
    run.metrics.write_text(lines[0].replace("0.25", "0.35") + "\n" + lines[1] + "\n")
    with pytest.raises(UserError, match=f"{run.metrics}, line 1: edited or damaged"):
        RunFolder(run.path).read_metrics()
    with open(run.predictions, "r+b") as f:
        f.seek(-30, 2)
        f.write(b"\0" * 10)
    with pytest.raises(UserError, match="not the predictions"):
        RunFolder(run.path).read_evaluation()


def test_record_files_without_checksums_load_unverified(tmp_path):
    run = RunFolder(tmp_path / "run")
    _record(run)
    for path in (run.done, run.eval):
        data = json.loads(path.read_text())
        del data["content_sha256"]
        path.write_text(json.dumps(data))
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    run.metrics.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "content_sha256"}) + "\n"
                                   for r in rows))
    back = RunFolder(run.path)
    back.read_done(), back.read_metrics(), back.read_evaluation()
    assert sorted(back.unverified) == sorted([run.done, run.metrics, run.eval])
    # Without its checksum, eval.json's summary is still held to the predictions beside it.
    data = json.loads(run.eval.read_text())
    run.eval.write_text(json.dumps({**data, "top1": 0.75}))
    with pytest.raises(UserError, match="top1 0.75 disagrees with the per-image predictions"):
        RunFolder(run.path).read_evaluation()
