"""Progress lines for the long steps of a run, in one style.

Why: a first `bench run` builds the embedded data set and trains models for minutes,
and without output it looks hung. Every step that can take more than a few seconds (the
embedded build, each model's training, a defense's fine-tune, the decode check of a real
data set) goes through `progress` here, so that all of them name the step, count what is
done, and say the time elapsed and left, the same way.

Where: on stderr, like the runner's own bar. On a terminal tqdm redraws one line (at
most every `TTY_INTERVAL_S`). Elsewhere (a CI log, a file, captured output) a redrawn
line would pile up as one endless line of carriage returns, so each redraw becomes its
own line, at most one every `LOG_INTERVAL_S`, plus the final one: a log says how far a
step got and how long it has left without drowning in lines.

Off switch: `BENCH_PROGRESS=0` (or false/no/off) in the environment; `bench run
--no-progress` sets it, which also reaches worker processes. Like the runner's cell bar,
a step with nothing to count shows nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

ENV = "BENCH_PROGRESS"
_OFF = {"0", "false", "no", "off"}
TTY_INTERVAL_S = 0.5  # least seconds between redraws on a terminal
LOG_INTERVAL_S = 5.0  # least seconds between lines in a log (not a terminal)


def enabled() -> bool:
    """Whether progress lines are shown: on unless $BENCH_PROGRESS says off. Read at each
    call, so that a switch set after import (by the CLI, by a test) takes effect."""
    return os.environ.get(ENV, "1").strip().lower() not in _OFF


def switch_off() -> None:
    """Silence progress lines in this process and in every process it starts from now on
    (pool workers inherit the environment): what `bench run --no-progress` does."""
    os.environ[ENV] = "0"


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             show: bool | None = None) -> tqdm:
    """A tqdm bar on stderr for one long step: `desc` names it (e.g. "embedded: building
    pseudo-MOS"), `total` counts its units (taken from `iterable` where it has a length),
    and the bar shows the count, elapsed and remaining time ("[00:12<00:23, ...]").

    Wrap an iterable, or call `.update(n)` on the returned bar; use it as a context
    manager (or `.close()` it) so that the final line is written. `show` overrides
    the environment switch (`None`: follow it). The time left must cover the whole step:
    a training loop counts every batch of every epoch in one bar, not one bar an epoch.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    on = enabled() if show is None else show
    stream = sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    options: dict[str, Any] = {"mininterval": TTY_INTERVAL_S, "dynamic_ncols": True} if tty else {
        # position 0: no cursor movement (escape codes) to place a bar under another
        "file": _Lines(stream), "mininterval": LOG_INTERVAL_S, "position": 0, "leave": True}
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not on or total == 0, **options)


def training_step(model: str, epoch: int, epochs: int) -> str:
    """The bar's name while model `model` trains (`epoch` counted from 1): one wording
    for every model, so that a log reads the same whichever is training."""
    return f"model '{model}': training, epoch {epoch}/{epochs}"


def finetune_step(defense: str, epoch: int, epochs: int) -> str:
    """The bar's name while defense `defense` fine-tunes a model (`epoch` from 1)."""
    return f"defense '{defense}': fine-tuning, epoch {epoch}/{epochs}"


def note(log: Callable[[str], None], message: str) -> None:
    """`log(message)` while progress bars are on screen: on a terminal the bars are
    lifted and redrawn below it, instead of the message being glued onto a bar's line."""
    with tqdm.external_write_mode(file=sys.stderr):
        log(message)


class _Lines:
    """A stream for tqdm that writes each redraw as its own line (tqdm starts every redraw
    with a carriage return and pads it with spaces), and skips blank and repeated ones
    (the final redraw on close repeats the last one when that was already at the end)."""

    last_t = 0.0  # when any of them last wrote a line (time.time(), tqdm's clock)

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last = ""

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        for piece in text.replace("\r", "\n").split("\n"):
            line = piece.rstrip()
            if line and line != self.last:
                self.stream.write(("\n" if self._line_open() else "") + line + "\n")
                self.last = line
                _Lines.last_t = time.time()
        return len(text)

    def _line_open(self) -> bool:
        """Whether a bar that redraws in place on the same stream (the runner's cell bar)
        has drawn since our last line, leaving its line open: ours then starts on a new
        line rather than glued onto it."""
        return any(getattr(getattr(b, "fp", None), "_wrapped", None) is self.stream
                   and getattr(b, "last_print_t", 0.0) >= _Lines.last_t for b in list(tqdm._instances))

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()
