"""The one way salclass prints a notice: a line on stderr for the person at the terminal.

Notices go through tqdm so a line never tears a progress bar apart, and only the
process of rank 0 prints (the others of a distributed run would repeat it). Results
that a command exists to print (a table, JSON) go to stdout with print(); everything
else, from "resuming at epoch 3" to a warning, goes through `say`. The words of a count
agree with it ("1 run", "2 runs"), here and in the report.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def counted(n: int, noun: str) -> str:
    """"1 seed", "3 seeds": a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def listed(names: list[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def agree(n: int, one: str, many: str) -> str:
    """The word that agrees with a count of n: agree(1, "is", "are") is "is"."""
    return one if n == 1 else many


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def say(msg: str, every_rank: bool = False) -> None:
    """Print one notice line on stderr, safe beside progress bars; silent on ranks other than 0
    unless `every_rank` (a process's own error or stop line, which only that process can tell)."""
    if every_rank or _is_rank_zero():
        tqdm.write(msg, file=sys.stderr)


def quiet(msg: str) -> None:
    """The printer to pass where a caller wants no notices."""


def warn(msg: str) -> None:
    """A notice that something was not as expected but the command goes on."""
    say(f"salclass: warning: {msg}")
