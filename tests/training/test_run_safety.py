"""A run folder has one writer, the store it reads is not rewritten under it,
and damaged or unwritable files are one line (exit code 2)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from salclass.data import Store

HOLD_IN_EPOCH = "salclass.training.loop.train_one_epoch"


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


def _one_line(code: int, err: str, fragment: str) -> None:
    """Exit code 2 and one error line (after any progress lines), no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("salclass:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and fragment in errors[0], err


def test_reordered_labels_stop_a_run_at_its_start(tiny_store, tmp_path, run_cli, small_sets):
    import numpy as np

    store = Path(shutil.copytree(tiny_store, tmp_path / "store"))
    labels = np.load(store / "train" / "labels.npy")
    np.save(store / "train" / "labels.npy", labels[::-1].copy())
    code, _, err = run_cli(*_train_args(small_sets, store, tmp_path / "run", epochs=1, milestones=[]))
    _one_line(code, err, f"{store / 'train' / 'labels.npy'}: damaged")
    assert not (tmp_path / "run").exists()


def test_damaged_maps_stop_only_runs_that_need_them(tiny_store, tmp_path, run_cli, small_sets):
    store = Path(shutil.copytree(tiny_store, tmp_path / "store"))
    (store / "val" / "saliency.json").write_text("{garbled")
    code, _, err = run_cli(*_train_args(small_sets, store, tmp_path / "rgbs", model="RGBS", epochs=1,
                                        milestones=[]))
    _one_line(code, err, "saliency predict")
    assert "--overwrite" in err and "saliency.json" in err
    code, _, err = run_cli(*_train_args(small_sets, store, tmp_path / "rgb", epochs=1, milestones=[]))
    assert code == 0, err


def test_an_empty_or_damaged_checkpoint_is_one_line(rgb_run, tmp_path, tiny_store, run_cli, small_sets):
    run = Path(shutil.copytree(rgb_run, tmp_path / "run"))
    ckpt = run / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    # Three 4 KB blocks inside the largest tensor's bytes: torch.load reads such a file without complaint.
    with zipfile.ZipFile(ckpt) as z:
        big = max(z.infolist(), key=lambda i: i.file_size)
    start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra)
    for k in (1, 2, 3):
        at = start + k * big.file_size // 4
        data[at:at + 4096] = bytes(b ^ 0x5A for b in data[at:at + 4096])
    ckpt.write_bytes(bytes(data))
    code, _, err = run_cli("evaluate", run, "--store", tiny_store, "--out", tmp_path / "eval")
    _one_line(code, err, f"{ckpt}: damaged")
    assert not (tmp_path / "eval").exists()
    ckpt.write_bytes(b"")
    code, _, err = run_cli("evaluate", run, "--store", tiny_store, "--out", tmp_path / "eval")
    _one_line(code, err, f"{ckpt}: empty file")
    (run / "done.json").unlink()
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, run, epochs=4), "--resume")
    _one_line(code, err, f"{ckpt}: empty file")


def test_a_killed_checkpoint_write_leaves_nothing_behind(rgb_run, tmp_path, tiny_store, run_cli, small_sets,
                                                         rgb_run_settings, linked_copy):
    run = linked_copy(rgb_run, tmp_path / "run")
    stale = run / ".checkpoint.pt.k1ll3d_x.tmp"
    stale.write_bytes(b"x" * 1000)
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, run, **rgb_run_settings))
    assert code == 0, err
    assert not stale.exists()


def test_a_full_disk_at_the_checkpoint_is_one_line_and_resumable(tiny_store, tmp_path, run_cli, small_sets,
                                                                monkeypatch):
    import errno

    import torch

    real_save = torch.save

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "run"
    args = _train_args(small_sets, tiny_store, out, epochs=1, milestones=[])
    monkeypatch.setattr(torch, "save", disk_full)
    code, _, err = run_cli(*args)
    _one_line(code, err, f"{out / 'checkpoint.pt'}: cannot write (No space left on device)")
    assert sorted(p.name for p in out.iterdir()) == [".salclass.lock", "config.yaml", "metrics.jsonl"]
    monkeypatch.setattr(torch, "save", real_save)
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert (out / "done.json").is_file()


def test_read_only_run_folders_are_one_line(rgb_run, tiny_store, tmp_path, run_cli, small_sets, make_readonly,
                                            linked_copy):
    run = linked_copy(rgb_run, tmp_path / "ro" / "run")
    store = Path(shutil.copytree(tiny_store, tmp_path / "ro" / "store"))
    make_readonly(tmp_path / "ro")
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, tmp_path / "ro" / "new", epochs=1, milestones=[]))
    _one_line(code, err, "cannot create this folder")
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, run, epochs=4), "--resume")
    _one_line(code, err, "cannot write here")
    code, _, err = run_cli("evaluate", run, "--store", tiny_store)
    # Evaluating into the run folder takes that folder's lock first.
    _one_line(code, err, f"{run}: cannot write here")
    assert "evaluate:" not in err  # refused before the pass, not after it
    # A read-only store is still read: a run there needs no lock file to be written.
    code, _, err = run_cli(*_train_args(small_sets, store, tmp_path / "rgb", epochs=1, milestones=[]))
    assert code == 0, err


def test_a_torn_last_metrics_line_does_not_block_resume(rgb_run, tmp_path, tiny_store, run_cli, small_sets,
                                                        rgb_run_settings, linked_copy):
    run = linked_copy(rgb_run, tmp_path / "run")
    (run / "done.json").unlink()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "lr": 0.001, "tra')
    code, _, err = run_cli(*_train_args(small_sets, tiny_store, run, **{**rgb_run_settings, "epochs": 4}),
                           "--resume")
    assert code == 0, err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_resume_refuses_metrics_that_miss_epochs_of_the_checkpoint(rgb_run, tmp_path, tiny_store, run_cli,
                                                                   small_sets, rgb_run_settings, linked_copy):
    run = linked_copy(rgb_run, tmp_path / "run")
    (run / "done.json").unlink()
    args = _train_args(small_sets, tiny_store, run, **{**rgb_run_settings, "epochs": 4})
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[1:]) + "\n")
    code, _, err = run_cli(*args, "--resume")
    _one_line(code, err, f"{run / 'metrics.jsonl'}: has lines for epochs [2, 3], but the checkpoint beside it is at "
                         "epoch 3")
    (run / "metrics.jsonl").unlink()
    code, _, err = run_cli(*args, "--resume")
    _one_line(code, err, "has lines for epochs none")


def test_a_real_full_disk(tiny_source, tiny_store, tmp_path, run_cli, small_sets, small_disk):
    disk = small_disk(2)
    code, _, err = run_cli("prepare", tiny_source, disk.path / "store", "--size", 144, "--workers", 1)
    _one_line(code, err, "not enough free space for the store (train, val)")
    assert not (disk.path / "store").exists()
    disk.resize(8)  # room for config and metrics, not for the 170 MB checkpoint
    out = disk.path / "run"
    args = _train_args(small_sets, tiny_store, out, epochs=1, milestones=[])
    code, _, err = run_cli(*args)
    _one_line(code, err, f"{out / 'checkpoint.pt'}: cannot write (No space left on device)")
    assert sorted(p.name for p in out.iterdir()) == [".salclass.lock", "config.yaml", "metrics.jsonl"]
    disk.resize(400)
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert (out / "done.json").is_file()


def test_a_store_on_a_full_disk_is_still_read(tiny_store, tmp_path, run_cli, small_sets, small_disk):
    disk = small_disk(16)
    store = Path(shutil.copytree(tiny_store, disk.path / "store"))
    (store / "val" / ".salclass.lock").unlink()  # one split with a lock file, one without
    with open(disk.path / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    out = tmp_path / "run"  # the output is elsewhere
    code, _, err = run_cli(*_train_args(small_sets, store, out, model="RGBS", epochs=1, milestones=[]))
    assert code == 0, err
    assert (out / "done.json").is_file()
    assert (store / "train" / ".salclass.lock").stat().st_size == 0
