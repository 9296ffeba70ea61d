"""Folder locks: one writer per folder, or any number of readers, never both.

A lock is an flock(2) on `.salclass.lock` inside the folder. The kernel drops
it when the holding process ends, however it ends (SIGKILL, power loss), so a
lock is never stale and there is no timeout to guess. Locks are taken without
waiting: a second writer (or a writer while a run reads the folder) gets one
line naming the holder and stops with exit code 2; it never mixes its files
with another's.

A writer replaces the file's content with one JSON line about itself (pid, the
process's start time, command line, since when) and empties it on release.
Readers write nothing, so reading a folder needs no free space on its disk and
the file never holds more than one line; a refusal finds the holders in the
kernel's lock table (/proc/locks) and names them from /proc.

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
from salclass.io import WRITE_ERRNOS, remove_stale_temps, write_error

LOCK_NAME = ".salclass.lock"

# errno values that mean "this folder cannot be written here", not a bug.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _stat_field(pid: int, index: int) -> str | None:
    """Field `index` (counted after the command name) of /proc/PID/stat (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[index] if index < len(fields) else None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so that a
    recycled pid is not mistaken for the holder."""
    return _stat_field(pid, 19)


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


def _shown(argv: list[str]) -> str:
    """A command line as a holder is named by: the program's name, no `-c` code."""
    if not argv:
        return "python"
    shown = [Path(argv[0]).name]
    rest = argv[1:]
    if rest[:1] == ["-c"] and len(rest) > 1:
        shown.append("-c ...")
        rest = rest[2:]
    return shlex.join(shown + rest)[:300]


def _record() -> bytes:
    pid = os.getpid()
    command = _shown(sys.argv) if sys.argv and sys.argv[0] else "python"
    return (json.dumps({"pid": pid, "start": _start_time(pid), "command": command,
                        "since": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": "write"}) + "\n").encode()


def _since(pid: int) -> str | None:
    """When the process started, in local time (Linux)."""
    ticks = _stat_field(pid, 19)
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(boot + int(ticks) / os.sysconf("SC_CLK_TCK")))
    except (OSError, StopIteration, TypeError, ValueError):
        return None


def _lock_table(fd: int) -> list[tuple[int, str]]:
    """(pid, "read" or "write") of every flock on the file of `fd`, from the kernel's table."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        f = line.split()
        # "1: FLOCK ADVISORY WRITE 2277 fe:00:5473931 0 EOF"; waiters carry a "->" field first.
        if len(f) >= 6 and f[1] == "FLOCK" and f[5] == key and f[4].isdigit():
            found.append((int(f[4]), "write" if f[3] == "WRITE" else "read"))
    return found


def _holders(fd: int) -> list[dict]:
    """The live processes holding the lock, named by the writer's own line where
    there is one and from /proc otherwise. This process may be among them: its
    own other open of the lock file conflicts like another process's."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    written = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and _alive(rec):
            written[rec["pid"]] = rec
    found = {}
    for pid, mode in _lock_table(fd):
        if pid in found:
            continue
        rec = written.get(pid)
        if rec is None:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
                command = _shown([a.decode("utf-8", "replace") for a in argv])
            except OSError:
                command = "?"
            rec = {"pid": pid, "since": _since(pid), "command": command}
        found[pid] = {**rec, "mode": mode}
    return list(found.values()) if found else list(written.values())


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


def _open_lock_file(folder: Path, exclusive: bool) -> int | None:
    """An fd of the folder's lock file, created if missing; None for a reader
    where it is missing and cannot be made (a read-only or full disk: a reader
    needs no lock file where nobody can write either)."""
    path = folder / LOCK_NAME
    try:
        # A reader opens read-only: flock needs no write access, and nothing is written.
        return os.open(path, (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CREAT, 0o666)
    except OSError as e:
        if e.errno not in UNWRITABLE and e.errno not in WRITE_ERRNOS:
            raise
        if exclusive:
            raise UserError(f"{folder}: cannot write here ({e.strerror})") from None
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _open_locked(folder: Path, exclusive: bool) -> int | None:
    """An fd of the folder's lock file holding the flock (see _open_lock_file for None)."""
    path = folder / LOCK_NAME
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    while True:
        fd = _open_lock_file(folder, exclusive)
        if fd is None:
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
            if e.errno in UNWRITABLE or e.errno in WRITE_ERRNOS:
                raise UserError(f"{folder}: cannot create this folder ({e.strerror})") from None
            raise
    fd = _open_locked(folder, exclusive) if folder.is_dir() else None
    try:
        if fd is not None and exclusive:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _record(), 0)
            except OSError as e:
                if e.errno in WRITE_ERRNOS:
                    raise write_error(folder / LOCK_NAME, e) from None
                raise
            remove_stale_temps(folder)
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
