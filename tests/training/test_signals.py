"""Signals at the awkward moments of a run: a second Ctrl-C while a checkpoint
is written, and SIGTERM between the last checkpoint and done.json. Each ends in
one line and 128 + the signal, loses nothing, and the run resumes to exactly
the uninterrupted result (`rgb_run`)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import torch

from salclass.training import read_metrics, train
from salclass.training.checkpoint import load_classifier

COMPARED = ("loss", "top1", "top5", "images")


def _args(small_sets, store: Path, out: Path, **overrides) -> list[str]:
    return ["train"] + sum((["--set", s] for s in small_sets(store, out, **overrides)), [])


def _stopped_in_one_line(err: str, signame: str) -> str:
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"salclass: stopped by {signame}") and "--resume" in last, err
    return last


def _same_as_reference(out: Path, reference: Path) -> None:
    got, want = read_metrics(out), read_metrics(reference)
    assert [m["epoch"] for m in got] == [m["epoch"] for m in want]
    for g, w in zip(got, want):
        assert g["lr"] == w["lr"]
        for split in ("train", "val"):
            assert {k: g[split][k] for k in COMPARED} == {k: w[split][k] for k in COMPARED}, (g["epoch"], split)
    a, b = load_classifier(out / "checkpoint.pt"), load_classifier(reference / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


class _SignalledMidWrite:
    """A file for torch.save's zip writer that gets Ctrl-C twice in the middle
    of the checkpoint: both signals arrive while a write call is in progress, as
    they do when a write syscall is interrupted."""

    def __init__(self, f, writes_before: int):
        self.f, self.left = f, writes_before

    def write(self, data):
        self.left -= 1
        if self.left == 0:
            os.kill(os.getpid(), signal.SIGINT)   # stop after this epoch ...
            os.kill(os.getpid(), signal.SIGINT)   # ... no: now
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_a_second_ctrl_c_during_a_checkpoint_write(tmp_path, tiny_store, rgb_run, rgb_run_settings, small_sets,
                                                    small_config, run_cli, monkeypatch):
    import torch.serialization

    out = tmp_path / "rgb"
    # Epoch 1 of the reference run (epochs is not part of a run's identity: it is continued below).
    train(small_config(tiny_store, out, **{**rgb_run_settings, "epochs": 1}))
    before = (out / "checkpoint.pt").read_bytes()

    real_writer = torch.serialization._open_zipfile_writer
    writes = []

    def signalled(f):
        writes.append(f)
        # The 4th write is a tensor's bytes: the pickle and the format records came first.
        return real_writer(_SignalledMidWrite(f, 4) if len(writes) == 1 else f)

    monkeypatch.setattr(torch.serialization, "_open_zipfile_writer", signalled)
    code, _, err = run_cli(*_args(small_sets, tiny_store, out, **rgb_run_settings), "--resume")
    monkeypatch.undo()
    assert len(writes) == 1  # epoch 2's checkpoint, and no later one
    assert code == 128 + signal.SIGINT, err
    assert "after 1 completed epoch;" in _stopped_in_one_line(err, "SIGINT")
    # The previous checkpoint is intact and the cut write left no temp file.
    assert (out / "checkpoint.pt").read_bytes() == before
    assert load_classifier(out / "checkpoint.pt")["epoch"] == 1
    assert not list(out.glob(".*.tmp")) and not (out / "done.json").exists()

    train(small_config(tiny_store, out, **rgb_run_settings), resume=True)
    assert json.loads((out / "done.json").read_text())["epochs"] == 3
    _same_as_reference(out, rgb_run)


def test_sigterm_between_the_last_checkpoint_and_done(tmp_path, tiny_store, small_sets, run_cli, blocked_command):
    out = tmp_path / "run"
    args = _args(small_sets, tiny_store, out, epochs=1, milestones=[])
    run = blocked_command("salclass.checksum.write_json", *args)  # its first call in a training run writes done.json
    run.proc.send_signal(signal.SIGTERM)
    code, _, err = run.release(timeout=120)
    assert code == 128 + signal.SIGTERM, err
    _stopped_in_one_line(err, "SIGTERM")
    assert load_classifier(out / "checkpoint.pt")["epoch"] == 1 and not (out / "done.json").exists()
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert (out / "done.json").is_file()
    assert [m["epoch"] for m in read_metrics(out)] == [1]
