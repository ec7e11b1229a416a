"""Errors the CLI turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A user-facing error: the message names the thing at fault and the fix."""

    exit_code = 1


class UnknownNameError(BenchError, KeyError):
    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str], extra: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        msg = f"unknown {kind} '{name}'{hint} (known: {', '.join(known) or 'none'})"
        if extra:
            msg += f"; {extra}"
        super().__init__(msg)
        self.kind, self.name = kind, name

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class MatrixError(BenchError):
    exit_code = 2


class WeightsMissingError(BenchError):
    """A learned model's weights are not here; the message says where we looked."""


class CheckpointError(BenchError):
    """A checkpoint that cannot be loaded safely or does not fit the architecture."""


class NotApplicable(Exception):
    """Raised by a defense that cannot transform this model: the cell is skipped, not failed."""
