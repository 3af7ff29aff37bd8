"""Progress of a pass over rows whose count may be unknown: a rich bar on a terminal with
rows per second and, when the total is known, an ETA; nothing elsewhere (logs stay clean).
The pass's rate is kept either way for the line a command prints at its end."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class RowProgress:
    """``with RowProgress("predict", total) as progress: progress.advance(len(rows))``.

    Args:
        description: What the pass does, shown before the bar.
        total: The rows the pass will see, or None when unknown (no bar length, no ETA).
        show: Draw the bar; None draws it when stderr is a terminal.
    """

    def __init__(self, description: str, total: int | None, show: bool | None = None) -> None:
        self.description, self.total = description, total
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
                TextColumn("{task.completed:,.0f}/{task.fields[shown_total]} rows"),
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
            rate = f"{self.rows_per_second:,.0f} rows/s"
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
