"""Atomic file writes and safe checkpoint loading, shared by every stage.

Every write goes to a temp file beside the target (`.NAME.XXXXXXXX.tmp`), is
fsynced, renamed over the target, and the folder is fsynced, so after a crash
or power loss the target is the old file or the whole new one; so does a
signal that stops the write (the temp file is removed). A write the
disk or the folder refuses (full, read-only, no permission) is one UserError
naming the file. Checkpoints carry a checksum of their content, checked on load.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from salclass.errors import UserError, interruption


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Errors of the place written to, not of salclass: one line, exit code 2.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

# mkstemp's names for _tmp_beside: "." + target name + "." + 8 random characters + ".tmp".
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def refused_write(e: BaseException | None) -> OSError | None:
    """The OSError saying the disk or folder refuses writes, if `e` is one or
    was raised while handling one (torch's zip writer turns a full disk into a
    RuntimeError raised during the OSError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def write_error(path: str | os.PathLike, e: OSError) -> UserError:
    """The one line for an OSError that says the disk or folder refuses writes."""
    return UserError(f"{path}: cannot write ({e.strerror or e}); nothing was marked complete")


def _tmp_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file owner-only; give it the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    return fd, tmp


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in `folder` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike) -> None:
    """Delete the temp files that killed atomic writes left in `folder` (not in
    its subfolders). Only for a writer that holds the folder's lock."""
    for name in os.listdir(folder):
        if _TMP_NAME.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))


def _atomic_write(path: Path, fill) -> None:
    """Call `fill(binary file)` on a temp file beside `path`, then make it `path` durably."""
    tmp = None
    try:
        fd, tmp = _tmp_beside(path)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except Exception as e:
        # Ctrl-C or SIGTERM inside torch.save surfaces as torch's own error; stop as the signal asked.
        interrupt = interruption(e)
        if interrupt is not None:
            raise interrupt from None
        refused = refused_write(e)
        if refused is not None:
            raise write_error(path, refused) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def allocated_bytes(path: str | os.PathLike) -> int:
    """Disk blocks a file holds now (0 if absent): what rewriting it gives back."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Refuse up front, in one line, a write of `needed` bytes that the disk holding `folder` cannot take."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise UserError(f"{folder}: not enough free space for {what}: needs {_size(needed)}, "
                        f"{_size(free)} free on that disk")


def preallocate(path: str | os.PathLike) -> None:
    """Reserve every block of a freshly created (sparse) array file, so a disk
    that fills up meanwhile is an error here and not a SIGBUS when a
    memory-mapped page is first written."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise write_error(path, e) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 16 MiB blocks (bounded memory at any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` so that `path` is either the old file or the whole new one."""
    _atomic_write(Path(path), lambda f: f.write(data))


def append_line_durably(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync it (a log that must survive what follows it)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


# The key of the checksum inside a checkpoint and inside a record file (salclass.checksum): one name for both.
CHECKSUM_KEY = "content_sha256"


def _digest_into(h, value: Any) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(b"{")
        for k, v in value.items():
            h.update(repr(k).encode())
            _digest_into(h, v)
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _digest_into(h, v)
        h.update(b"]")
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def content_digest(obj: dict) -> str:
    """sha256 of a checkpoint's tensors and values (its checksum entry left out).
    Taken over the loaded objects rather than the file, so the file can carry
    it: torch's zip format itself checks nothing, and damaged tensor bytes
    otherwise load silently (evaluation then reports 'loss nan')."""
    h = hashlib.sha256()
    _digest_into(h, {k: v for k, v in obj.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def atomic_torch_save(obj: dict, path: str | os.PathLike) -> str:
    """torch.save `obj` plus its content checksum to a temp file beside `path`,
    fsync it, then rename over `path`. Returns the checksum (what a record
    made from this checkpoint names it by)."""
    import torch

    stamped = {**obj, CHECKSUM_KEY: content_digest(obj)}
    _atomic_write(Path(path), lambda f: torch.save(stamped, f))
    return stamped[CHECKSUM_KEY]


def load_checkpoint(path: str | os.PathLike, expected_type: str, max_version: int = 1) -> dict:
    """Load a checkpoint with weights_only=True (no pickled code runs) and check
    its `type` and `version` fields."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (a write cut short); restore a copy or delete it and train again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: one line, not a traceback
        first = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first}); "
                        "restore a copy or delete it and train again") from None
    if not isinstance(ckpt, dict) or "type" not in ckpt:
        raise UserError(f"{path}: not a salclass checkpoint (no 'type' field)")
    if CHECKSUM_KEY in ckpt and ckpt[CHECKSUM_KEY] != content_digest(ckpt):
        raise UserError(f"{path}: damaged (its content does not match the checksum written with it); "
                        "restore a copy or delete it and train again")
    if ckpt["type"] != expected_type:
        raise UserError(f"{path}: is a '{ckpt['type']}' checkpoint, expected '{expected_type}'")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > max_version:
        raise UserError(f"{path}: checkpoint version {version!r} is not supported (this salclass reads up to {max_version})")
    return ckpt
