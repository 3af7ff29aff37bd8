"""Progress of a pass over rows whose count may be unknown: a rich bar on a terminal with
rows per second and, when the total is known, an ETA; nothing elsewhere (logs stay clean).
The pass's rate is kept either way for the line a command prints at its end
(:func:`row_progress` prints it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any


class RowProgress:
    """``with RowProgress("predict", total) as progress: progress.advance(len(rows))``.

    Args:
        description: What the pass does, shown before the bar.
        total: The rows the pass will see, or None when unknown (no bar length, no ETA).
        show: Draw the bar; None draws it when stderr is a terminal.
        unit: What is counted ("rows", "images").
    """

    def __init__(
        self, description: str, total: int | None, show: bool | None = None, unit: str = "rows"
    ) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.show = sys.stderr.isatty() if show is None else show
        self.rows, self.started, self.ended = 0, 0.0, 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RowProgress:
        self.started = time.perf_counter()
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn(f"{{task.completed:,.0f}}/{{task.fields[shown_total]}} {self.unit}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            shown_total = f"{self.total:,}" if self.total is not None else "?"
            self._task = self._bar.add_task(
                self.description, total=self.total, shown_total=shown_total, rate=""
            )
            self._bar.start()
        return self

    def advance(self, rows: int) -> None:
        """Count ``rows`` more rows done."""
        self.rows += rows
        if self._bar is not None:
            rate = f"{self.rows_per_second:,.0f} {self.unit}/s"
            self._bar.update(self._task, advance=rows, rate=rate)

    @property
    def seconds(self) -> float:
        """Seconds since the pass began (until it ended, once it has)."""
        return (self.ended or time.perf_counter()) - self.started

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.ended = time.perf_counter()
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def row_progress(
    description: str, total: int | None, *, show: bool = True, unit: str = "rows"
) -> Iterator[RowProgress]:
    """A :class:`RowProgress` (its bar on a terminal) that ends with a line such as
    ``statistics: 1,000,000 rows in 3.1 s (322,581 rows/s)`` when ``show``."""
    with RowProgress(description, total, show=None if show else False, unit=unit) as progress:
        yield progress
    if show:
        line = (
            f"{description}: {progress.rows:,} {unit} in {progress.seconds:.1f} s "
            f"({progress.rows_per_second:,.0f} {unit}/s)"
        )
        print(line, file=sys.stderr, flush=True)
