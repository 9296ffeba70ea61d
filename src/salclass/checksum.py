"""Checksums written with the small record files, checked when they are read.

Checkpoints carry `content_sha256` (salclass.io); the JSON and YAML records
that a report's numbers rest on (a run's record files, salclass.run_folder;
a store's meta.json and saliency.json, a study's study.yaml) carry one
too, inside the file, so that the file and its checksum are written in one
atomic rename and can never disagree after a crash:

- a JSON object gets the key `content_sha256`: the sha256 of the object
  without that key, serialised canonically (sorted keys, no spaces), so the
  digest survives re-indentation but not a changed value;
- a metrics line (JSON Lines) is such an object, one per line;
- a YAML file starts with the comment line `# content_sha256: HEX`, the
  sha256 of every byte after that line. At the top, not the bottom: a file cut
  short keeps its checksum and fails it, instead of reading as an old file.

A file written before checksums has none: it is read as it is and reported as
unverified by whoever reads it, never refused. A checksum that does not match
is one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from salclass.errors import UserError
from salclass.io import CHECKSUM_KEY as KEY, atomic_write_json, atomic_write_text, read_json

_YAML_PREFIX = f"# {KEY}: "


def json_digest(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != KEY}
    # The round trip makes what is hashed what a reader will parse (tuples become lists).
    canonical = json.dumps(json.loads(json.dumps(body)), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def stamp(obj: dict) -> dict:
    """`obj` with its checksum (any earlier one replaced)."""
    body = {k: v for k, v in obj.items() if k != KEY}
    return {**body, KEY: json_digest(body)}


class ChecksumMismatch(UserError):
    """A record file whose content is not what was written: never read as if it were."""


def _mismatch(where: str, remedy: str) -> UserError:
    return ChecksumMismatch(f"{where}: edited or damaged (its content does not match the checksum written with it)"
                     + (f"; {remedy}" if remedy else ""))


def check(obj: Any, where: str | os.PathLike, remedy: str = "") -> tuple[Any, bool]:
    """(the object without its checksum, whether a checksum was there to check).
    UserError when there is one and it does not match."""
    if not isinstance(obj, dict) or KEY not in obj:
        return obj, False
    if obj[KEY] != json_digest(obj):
        raise _mismatch(str(where), remedy)
    return {k: v for k, v in obj.items() if k != KEY}, True


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Atomically write `obj` with its checksum."""
    atomic_write_json(path, stamp(obj))


def read_json_checked(path: str | os.PathLike, remedy: str = "") -> tuple[Any, bool]:
    """(the file's JSON without its checksum, verified?); see `check`."""
    return check(read_json(path), path, remedy)


def line(obj: dict) -> str:
    """One JSON Lines record with its checksum."""
    return json.dumps(stamp(obj))


def stamp_text(text: str) -> str:
    """A YAML text with its checksum line in front."""
    return _YAML_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest() + "\n" + text


def check_text(text: str, where: str | os.PathLike, remedy: str = "") -> tuple[str, bool]:
    """(the text after its checksum line, verified?) of a text `stamp_text` wrote."""
    if not text.startswith(_YAML_PREFIX):
        return text, False
    first, _, rest = text.partition("\n")
    if first[len(_YAML_PREFIX):].strip() != hashlib.sha256(rest.encode("utf-8")).hexdigest():
        raise _mismatch(str(where), remedy)
    return rest, True


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_text(path, stamp_text(text))


def read_text_checked(path: str | os.PathLike, remedy: str = "") -> tuple[str, bool]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    return check_text(text, path, remedy)
