"""A run killed mid-epoch, resumed, stopped by SIGTERM, and resumed again ends
exactly as the uninterrupted reference run (`rgb_run`) did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from salclass.training.checkpoint import load_classifier
from salclass.training import read_metrics, train

REPO = Path(__file__).resolve().parents[2]
COMPARED = ("loss", "top1", "top5", "images")


def _start(sets: list[str], resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "salclass.cli", "train"]
    for s in sets:
        args += ["--set", s]
    if resume:
        args.append("--resume")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_killed_and_stopped_run_resumes_to_the_uninterrupted_result(tmp_path: Path, tiny_store: Path, rgb_run: Path,
                                                                   rgb_run_settings: dict, small_sets, small_config):
    out = tmp_path / "rgb"
    sets = small_sets(tiny_store, out, **rgb_run_settings)

    # SIGKILL as soon as epoch 1's checkpoint exists: the process dies mid-epoch 2.
    proc = _start(sets, resume=False)
    _wait_for(proc, lambda: (out / "checkpoint.pt").is_file(), "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert load_classifier(out / "checkpoint.pt")["epoch"] == 1
    assert not (out / "done.json").exists()

    # Resume, then SIGTERM once epoch 2 is recorded: a clean stop with exit 143.
    proc = _start(sets, resume=True)
    _wait_for(proc, lambda: _lines(out) >= 2, "epoch 2")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert "SIGTERM" in last and "--resume" in last and str(out) in last
    assert load_classifier(out / "checkpoint.pt")["epoch"] == 2
    assert not (out / "done.json").exists()

    # Resume in-process to the end.
    train(small_config(tiny_store, out, **rgb_run_settings), resume=True)
    assert json.loads((out / "done.json").read_text())["epochs"] == 3

    got, want = read_metrics(out), read_metrics(rgb_run)
    assert [m["epoch"] for m in got] == [1, 2, 3]
    for g, w in zip(got, want):
        assert g["lr"] == w["lr"]
        for split in ("train", "val"):
            assert {k: g[split][k] for k in COMPARED} == {k: w[split][k] for k in COMPARED}, (g["epoch"], split)
    a = load_classifier(out / "checkpoint.pt")
    b = load_classifier(rgb_run / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
