"""Progress of a pass over streamed rows: a bar with rows per second and the time left on a
terminal (standard error), and one closing line with the rate in every case."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RowProgress:
    """Counts the rows a pass has read; :func:`row_progress` shows them."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self.bar, self.task, self.rows = bar, task, 0

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self.bar is not None:
            self.bar.update(self.task, advance=rows)


def rich_bar(what: str, unit: str) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:,.0f} {unit}/s")

    columns = [TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), RowsPerSecond(),
               TimeRemainingColumn()]  # fmt: skip
    return Progress(*columns, console=Console(stderr=True), transient=True)


@contextmanager
def row_progress(
    what: str, total: int | None, *, show: bool = True, unit: str = "rows"
) -> Iterator[RowProgress]:
    """Report a pass over ``total`` rows (None when unknown: no time left is shown); ends
    with a line such as ``statistics: 1,000,000 rows in 3.1 s (322,581 rows/s)``."""
    started = time.perf_counter()
    if show and sys.stderr.isatty():
        with rich_bar(what, unit) as bar:
            progress = RowProgress(bar, bar.add_task(what, total=total))
            yield progress
    else:
        progress = RowProgress()
        yield progress
    seconds = time.perf_counter() - started
    if show:
        rate = progress.rows / seconds if seconds > 0 else 0.0
        line = f"{what}: {progress.rows:,} {unit} in {seconds:.1f} s ({rate:,.0f} {unit}/s)"
        print(line, file=sys.stderr, flush=True)
