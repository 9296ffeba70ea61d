"""The exception types every stage shares.

`UserError` means "the user gave bad input": the CLI turns it into one line on
stderr and exit code 2. `Interrupted` means SIGINT or SIGTERM asked the command
to stop: one line and exit code 128 + the signal. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Expected bad input: a wrong path, an unknown name, a bad config value."""


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (`signum`); a KeyboardInterrupt, so it
    passes every `except Exception` on its way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def interruption(e: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that `e` is or was raised while handling: a library
    that catches one mid-write (torch's zip writer) raises its own error in its
    place, with the interrupt only in the chain."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt):
            return e
        e = e.__cause__ or e.__context__
    return None


def signal_number(e: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: its own, or SIGINT for a plain Ctrl-C."""
    return int(getattr(e, "signum", signal.SIGINT))
