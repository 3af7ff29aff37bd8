"""Notices: what a user should know that does not stop the command.

Code calls ``notice("Filled blanks in train.csv: 'age' 3 with 38.5.")``. A notice is a
Python warning of category :class:`TorchlabWarning`, so library users filter it, or turn it
into an error, as any other warning. The command line prints each one once, as a single
``warning: ...`` line, and leaves other libraries' warnings to ``--debug``
(:func:`show_on_console`). A training run collects its notices (:func:`collecting`) into
its summary and report.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class TorchlabWarning(UserWarning):
    """A notice from torchlab itself, worded for the user."""


# Lists being filled by `collecting()`, innermost last (runs may nest: a tuner's trials).
_collectors: list[list[str]] = []


def notice(message: str) -> None:
    """Tell the user ``message``: once on the console, and in the run's report."""
    for collected in _collectors:
        if message not in collected:
            collected.append(message)
    warnings.warn(message, TorchlabWarning, stacklevel=2)


def collected(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function`` collecting its notices (read them with :func:`current`)."""

    @functools.wraps(function)
    def collecting_notices(*args: Any, **kwargs: Any) -> Any:
        with collecting():
            return function(*args, **kwargs)

    return collecting_notices


def current() -> list[str]:
    """The notices collected so far by the innermost :func:`collecting` block."""
    return list(_collectors[-1]) if _collectors else []


@contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the notices given inside the block, each once, in order."""
    collected: list[str] = []
    _collectors.append(collected)
    try:
        yield collected
    finally:
        _collectors.remove(collected)


def show_on_console(debug: bool = False, stream: TextIO | None = None) -> None:
    """Print each notice once as ``warning: ...``; other warnings only with ``debug``.

    Dependencies' warnings (deprecations, internal advice) are meant for their developers;
    where one matters to a user, torchlab turns it into a notice of its own.
    """
    shown: set[str] = set()
    original: Callable[..., Any] = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, TorchlabWarning):
            original(message, category, *args, **kwargs)
            return
        text = str(message)
        if text not in shown:
            shown.add(text)
            print(f"warning: {text}", file=stream or sys.stderr, flush=True)

    warnings.showwarning = show
    warnings.simplefilter("default" if debug else "ignore")
    warnings.simplefilter("always", TorchlabWarning)  # repeats are dropped by text, above
