"""Errors the CLI turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


def quoted(name: object) -> str:
    """A name that came from a file or the command line, quoted for a message: Python's
    repr of the text, so that a newline or other control character in it shows as
    `\\n`, `\\x1f`, ... and the message stays one unambiguous line ('piqe' stays 'piqe')."""
    return repr(str(name))


def one_line(text: str) -> str:
    """`text` with every line break and other non-printable character escaped as repr
    would: the last guard that keeps a message relayed from a library or a plugin (a
    pandas parser error ends in a newline) on the one line the CLI promises."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class BenchError(Exception):
    """A user-facing error: the message names the thing at fault and the fix. Its text is
    always one line (see `one_line`); names from files should still be `quoted` where the
    message is built, so that they read unambiguously."""

    exit_code = 1

    def __str__(self) -> str:
        return one_line(super().__str__())


class UnknownNameError(BenchError, KeyError):
    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str], extra: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        # a long list (the model zoo) is named by count: `bench list` shows it, a line would not
        names = ', '.join(known) if len(known) <= 20 else f"{len(known)} names, see `bench list {kind}s`"
        msg = f"unknown {kind} {quoted(name)}{hint} (known: {names or 'none'})"
        if extra:
            msg += f"; {extra}"
        super().__init__(msg)
        self.kind, self.name = kind, name

    def __str__(self) -> str:  # KeyError would quote the message
        return one_line(self.args[0])


class MatrixError(BenchError):
    exit_code = 2


class WeightsMissingError(BenchError):
    """A learned model's weights are not here; the message says where we looked."""


class CheckpointError(BenchError):
    """A checkpoint that cannot be loaded safely or does not fit the architecture."""


class NotApplicable(Exception):
    """Raised by a defense that cannot transform this model: the cell is skipped, not failed."""


def warn(message: str) -> None:
    """Tell the user of something that went wrong but was worked around (a file skipped),
    as one line on stderr, `warning: ...`: Python's `warnings` format would add the
    category and a source line that say nothing to a user of the CLI."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)
