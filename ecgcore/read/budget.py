"""The reader's budget: reading an image stops in bounded time and memory, whatever the image shows.

Each step of :func:`ecgcore.read.digitize.digitize` sizes its work from the image's size and from caps on what an ECG
printout can hold (the paper's extent, ink pixels, pulse and run candidates; constants next to the code that uses
them). Time has one budget for the whole reading: the loops whose number of passes depends on what the image shows
call :func:`check` with the step's name, and a reading past its deadline stops with one sentence.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from ecgcore.errors import DigitizationError

# Reading a 1600x1200 ECG photo takes 1-3 s on one core and a 12 MP one under 10 s; 30 s leaves room for a slow,
# shared machine while keeping a whole classify of a hostile image (models and segmentation included) under a minute.
MAX_READ_S = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class ReadBudget:
    """A deadline for one reading; :meth:`check` raises DigitizationError once it has passed."""

    def __init__(self, seconds: float = MAX_READ_S):
        self.seconds = float(seconds)
        self.deadline = time.monotonic() + self.seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self.deadline:
            raise DigitizationError(f"reading this image took longer than its {self.seconds:g} s budget ({step}); "
                                    "it is probably not an ECG printout.")


_ACTIVE: ContextVar[ReadBudget | None] = ContextVar("ecglab_read_budget", default=None)


@contextmanager
def read_budget(seconds: float = MAX_READ_S) -> Iterator[ReadBudget]:
    """Give the reading inside the block ``seconds`` in all. A block nested in another keeps the outer deadline (a
    page read twice, as 6x2 and 3x4+3, shares one budget)."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    budget = ReadBudget(seconds)
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)


def check(step: str) -> None:
    """Raise DigitizationError when the active reading is past its deadline (no-op outside :func:`read_budget`)."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.check(step)


def budgeted(seconds: float = MAX_READ_S) -> Callable[[F], F]:
    """Decorator: the function runs within :func:`read_budget` (``seconds`` in all, shared with any caller's)."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with read_budget(seconds):
                return fn(*args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap
