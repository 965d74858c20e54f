"""Progress bars for long stages: rich on a terminal, silent otherwise or with --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> str:  # type: ignore[override]
        return f"{task.speed:,.0f}/s" if task.speed else ""


class Bar:
    """A handle the library's progress callbacks can advance."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task
        self.done = 0

    def advance(self, n: int = 1, description: str | None = None) -> None:
        self.done += n
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, description=description)

    def total(self, total: int | None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def update(self, completed: int, total: int | None = None, description: str | None = None) -> None:
        """Set the absolute position (for callbacks that report "done of total")."""
        self.done = completed
        if self._progress is not None and self._task is not None:
            if total is not None:
                self._progress.update(self._task, total=total)
            self._progress.update(self._task, completed=completed, description=description)


def interactive() -> bool:
    """Progress is drawn only on a terminal, and not with --quiet."""
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet"))
    return not quiet and sys.stderr.isatty()


@contextmanager
def stage_bar(description: str, total: int | None = None, unit: str = "rows") -> Iterator[Bar]:
    """A progress bar that leaves one line behind when its stage is done: what, how many, how long."""
    start = time.perf_counter()
    with progress_bar(description, total, unit) as bar:
        yield bar
    if interactive():
        count = f"{bar.done:>12,} {unit}" if bar.done and unit != "steps" else ""
        click.echo(f"  done  {description:<24}{count:<24}{time.perf_counter() - start:>7.1f} s", err=True)


@contextmanager
def progress_bar(description: str, total: int | None = None, unit: str = "rows") -> Iterator[Bar]:
    if not interactive():
        yield Bar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total))
