"""Folder locks between processes: refusal naming the holder, release on death,
readers together, and a writer's start removing a killed write's temp files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from salclass.errors import UserError
from salclass.lock import LOCK_NAME, folder_lock

HOLD = r"""
import sys, time
from salclass.lock import folder_lock
with folder_lock(sys.argv[1], exclusive=sys.argv[2] == "write"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(folder: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    proc = _holder(tmp_path / "f", "write")
    try:
        with pytest.raises(UserError) as e:
            with folder_lock(tmp_path / "f", exclusive=True):
                pass
        assert f"pid {proc.pid} is writing it" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(UserError, match=f"pid {proc.pid} is writing"):
            with folder_lock(tmp_path / "f", exclusive=False):
                pass
    finally:
        proc.kill()
        proc.wait()
    # The kernel released the killed holder's lock: nothing stale to clean up.
    with folder_lock(tmp_path / "f", exclusive=True):
        pass


def test_readers_share_and_keep_writers_out(tmp_path):
    (tmp_path / "f").mkdir()
    proc = _holder(tmp_path / "f", "read")
    try:
        with folder_lock(tmp_path / "f", exclusive=False):
            with pytest.raises(UserError, match=f"pid ({proc.pid}|{os.getpid()}) is reading it"):
                with folder_lock(tmp_path / "f", exclusive=True):
                    pass
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def test_a_writer_removes_stale_temp_files_and_an_unused_new_folder(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / ".checkpoint.pt.ab3_xYz9.tmp").write_bytes(b"half")
    (folder / "keep.tmp").write_bytes(b"mine")
    with folder_lock(folder, exclusive=True):
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME, "keep.tmp"]
    with folder_lock(tmp_path / "new", exclusive=True):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()


def test_a_file_in_the_way_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"):
        with folder_lock(tmp_path / "f", exclusive=True):
            pass


def test_readers_write_nothing_and_the_lock_file_stays_one_line(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    with folder_lock(folder, exclusive=True):
        pass
    for _ in range(5):
        with folder_lock(folder, exclusive=False):
            assert (folder / LOCK_NAME).stat().st_size == 0
    proc = _holder(folder, "read")
    try:
        with pytest.raises(UserError) as e:
            with folder_lock(folder, exclusive=True):
                pass
        # Named from the kernel's lock table, though the reader wrote no line.
        assert f"pid {proc.pid} is reading it" in str(e.value) and "-c ..." in str(e.value)
        assert (folder / LOCK_NAME).stat().st_size == 0
    finally:
        proc.kill()
        proc.wait()
    with folder_lock(folder, exclusive=True):
        assert len((folder / LOCK_NAME).read_text().splitlines()) == 1


def test_a_reader_needs_no_free_space(tmp_path, small_disk):
    disk = small_disk(1)
    with folder_lock(disk.path / "kept", exclusive=True):
        (disk.path / "kept" / "data").write_bytes(b"x")
    (disk.path / "new").mkdir()
    with pytest.raises(OSError):
        with open(disk.path / "filler", "wb") as f:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
    for folder in (disk.path / "kept", disk.path / "new"):
        with folder_lock(folder, exclusive=False):
            pass
    with pytest.raises(UserError, match=f"{disk.path / 'kept' / LOCK_NAME}: cannot write"):
        with folder_lock(disk.path / "kept", exclusive=True):
            pass
