"""Progress hooks of the pipeline: the library reports counts, the CLI decides how (or whether) to draw them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class StageBar(Protocol):
    """What a stage needs from a progress display (cli.progress.Bar has exactly this)."""

    def advance(self, n: int = 1, description: str | None = None) -> None: ...

    def total(self, total: int | None) -> None: ...

    def update(self, completed: int, total: int | None = None, description: str | None = None) -> None: ...


# (description, total, unit) -> a context yielding a bar
BarFactory = Callable[[str, int | None, str], AbstractContextManager[StageBar]]


class NullBar:
    """A bar that draws nothing (library use, tests, --quiet)."""

    def __init__(self) -> None:
        self.done = 0

    def advance(self, n: int = 1, description: str | None = None) -> None:
        self.done += n

    def total(self, total: int | None) -> None:
        return None

    def update(self, completed: int, total: int | None = None, description: str | None = None) -> None:
        self.done = completed


@contextlib.contextmanager
def null_bars(description: str, total: int | None = None, unit: str = "rows") -> Iterator[StageBar]:
    yield NullBar()
