"""Folder locks: one writer per folder, or any number of readers, never both.

A lock is an flock(2) on `.salclass.lock` inside the folder. The kernel drops
it when the holding process ends, however it ends (SIGKILL, power loss), so a
lock is never stale and there is no timeout to guess. Locks are taken without
waiting: a second writer (or a writer while a run reads the folder) gets one
line naming the holder and stops with exit code 2; it never mixes its files
with another's.

The file also names its holders, one JSON line each (pid, the process's start
time, command line, since when, read or write): a writer replaces the content
with its own line, readers append theirs. Lines of processes that have ended
are skipped when a refusal names the holder.

A writer's start is also where the leftovers of a killed write are removed
(`salclass.io.remove_stale_temps`): holding the lock, no one else can be
writing those files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from salclass.errors import UserError
from salclass.io import remove_stale_temps

LOCK_NAME = ".salclass.lock"

# errno values that mean "this folder cannot be written here", not a bug.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so that a
    recycled pid is not mistaken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(record: dict) -> bool:
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = record.get("start")
    return start is None or _start_time(pid) in (None, start)


def _record(mode: str) -> bytes:
    pid = os.getpid()
    command = shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv and sys.argv[0] else "python"
    return (json.dumps({"pid": pid, "start": _start_time(pid), "command": command[:300],
                        "since": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": mode}) + "\n").encode()


def _holders(fd: int) -> list[dict]:
    # Readers only ever append (only a writer may truncate), so the holders
    # alive now are among the last lines.
    try:
        size = os.fstat(fd).st_size
        text = os.pread(fd, 1 << 16, max(0, size - (1 << 16))).decode("utf-8", "replace")
    except OSError:
        return []
    found = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and _alive(rec):
            found[rec["pid"]] = rec
    return list(found.values())


def _refusal(folder: Path, fd: int, exclusive: bool) -> UserError:
    holders = _holders(fd)
    if not holders:
        return UserError(f"{folder}: in use by another process (lock {folder / LOCK_NAME}); "
                         "wait for it to finish")
    h = holders[-1]
    doing = "writing" if h.get("mode") == "write" else "reading"
    more = f" (and {len(holders) - 1} more)" if len(holders) > 1 else ""
    want = "write" if exclusive else "read"
    return UserError(f"{folder}: pid {h['pid']} is {doing} it since {h.get('since')} "
                     f"({h.get('command')}){more}; not going to {want} it at the same time, "
                     "wait for that to finish or stop it")


def _open_locked(folder: Path, exclusive: bool) -> int | None:
    """An fd of the folder's lock file holding the flock, or None for a reader
    that cannot create the lock file (a read-only store: nobody writes there)."""
    path = folder / LOCK_NAME
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in UNWRITABLE:
                raise
            if exclusive:
                raise UserError(f"{folder}: cannot write here ({e.strerror})") from None
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            err = _refusal(folder, fd, exclusive)
            os.close(fd)
            raise err from None
        # A writer that created the folder for nothing removes the lock file on
        # release; if that happened between our open and flock, lock afresh.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike, exclusive: bool) -> Iterator[None]:
    """Hold the folder for writing (`exclusive`, creating the folder if needed)
    or for reading, until the block ends; UserError at once if that conflicts
    with another process's lock."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    created = False
    if exclusive and not folder.exists():
        try:
            folder.mkdir(parents=True)
            created = True
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno in UNWRITABLE:
                raise UserError(f"{folder}: cannot create this folder ({e.strerror})") from None
            raise
    fd = _open_locked(folder, exclusive) if folder.is_dir() else None
    try:
        if fd is not None:
            try:
                if exclusive:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, _record("write"), 0)
                    remove_stale_temps(folder)
                else:
                    # O_APPEND: readers arriving together each add a whole line.
                    afd = os.open(folder / LOCK_NAME, os.O_WRONLY | os.O_APPEND)
                    try:
                        os.write(afd, _record("read"))
                    finally:
                        os.close(afd)
            except OSError as e:
                if exclusive or e.errno not in UNWRITABLE:
                    raise
        yield
    finally:
        if fd is not None:
            if exclusive:
                _release_written(folder, fd, created)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _release_written(folder: Path, fd: int, created: bool) -> None:
    """Leave no trace of a writer that created the folder and wrote nothing
    (a run refused by a later check); otherwise clear the holder line."""
    try:
        if created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            os.unlink(folder / LOCK_NAME)
            folder.rmdir()
        else:
            os.ftruncate(fd, 0)
    except OSError:
        pass
