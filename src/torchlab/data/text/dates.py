"""The ``dates`` source: dates written in many human formats, paired with their ISO form.

"the 3rd of March 1998", "03/03/98", "Tuesday, March 3, 1998", ... -> "1998-03-03". Dates
are drawn uniformly from 1950-01-01 to 2049-12-31 with a fixed seed, so two-digit years are
unambiguous (50-99 -> 19xx, 00-49 -> 20xx); slashed dates are month first (US style),
dotted ones day first. No source text appears twice, so the test split holds pairs never
seen in training. ``test_formats: unseen`` instead tests on formats held out of training.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import numpy as np

from torchlab.data.base import DataBundle, SourceContext
from torchlab.data.splits import refuse_folds, split_indices
from torchlab.data.text.pairs import pairs_bundle
from torchlab.errors import DataError
from torchlab.registry import DATASETS

FIRST, DAYS = dt.date(1950, 1, 1), 36524  # through 2049-12-31


def ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fmt(pattern: str) -> Callable[[dt.date], str]:
    """A format from ``strftime`` codes plus {o} (ordinal day), {d} and {m} (no zero padding)."""

    def write(date: dt.date) -> str:
        text = pattern.format(o=ordinal(date.day), d=date.day, m=date.month)
        return date.strftime(text)

    return write


# Formats the model trains on (and is tested on, with other dates).
SEEN: dict[str, Callable[[dt.date], str]] = {
    "the-ordinal-of": _fmt("the {o} of %B %Y"),
    "us-slash-short": _fmt("%m/%d/%y"),
    "us-long": _fmt("%B {d}, %Y"),
    "iso-unpadded": _fmt("%Y-{m}-{d}"),
    "day-abbr-short": _fmt("{d} %b %y"),
    "weekday-us-long": _fmt("%A, %B {d}, %Y"),
    "day-month-year": _fmt("{d} %B %Y"),
    "abbr-day-year": _fmt("%b {d} %Y"),
    "dotted": _fmt("%d.%m.%Y"),
    "us-slash-long": _fmt("{m}/{d}/%Y"),
    "year-slash": _fmt("%Y/%m/%d"),
    "us-ordinal": _fmt("%B {o}, %Y"),
    "weekday-abbr": _fmt("%a {d} %b %Y"),
    "compact": _fmt("%Y%m%d"),
    "dashed-abbr": _fmt("{d}-%b-%Y"),
    "iso": _fmt("%Y-%m-%d"),
}
# Formats held out of training (``test_formats: unseen``): new arrangements of known parts.
UNSEEN: dict[str, Callable[[dt.date], str]] = {
    "ordinal-month-year": _fmt("{o} %B %Y"),
    "weekday-day-month": _fmt("%A {d} %B %Y"),
    "year-dotted": _fmt("%Y.%m.%d"),
    "abbr-ordinal": _fmt("%b {o} %Y"),
}


def generate(
    n: int, formats: dict[str, Callable[[dt.date], str]], rng: np.random.Generator,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[str], list[str], list[str]]:  # fmt: skip
    """``n`` distinct (source, ISO target, format name) triples, sources not in ``exclude``."""
    names = list(formats)
    sources: list[str] = []
    targets: list[str] = []
    used: list[str] = []
    seen = set(exclude)
    for _ in range(100):  # rounds of drawing until there are n distinct sources
        need = n - len(sources)
        if need <= 0:
            break
        days = rng.integers(0, DAYS, size=2 * need)
        picks = rng.integers(0, len(names), size=2 * need)
        for day, pick in zip(days.tolist(), picks.tolist(), strict=True):
            date = FIRST + dt.timedelta(days=day)
            text = formats[names[pick]](date)
            if text in seen:
                continue
            seen.add(text)
            sources.append(text)
            targets.append(date.isoformat())
            used.append(names[pick])
            if len(sources) == n:
                break
    return sources, targets, used


@DATASETS.register("dates")
def dates(
    context: SourceContext,
    /,
    *,
    n: int = 20000,
    test_formats: Literal["seen", "unseen"] = "seen",
    seed: int = 0,
) -> DataBundle:
    """Human-written dates -> ISO dates, tokenized by character.

    Args:
        n: Pairs in all (train + val + test).
        test_formats: ``seen`` tests on new dates in the training formats; ``unseen`` tests
            on formats never seen in training (reported separately).
        seed: Seed of the generator (the same seed always gives the same pairs).
    """
    if n < 10:
        raise DataError(f"data.source.n={n} is too small to split; use at least 10 pairs.")
    rng = np.random.default_rng(seed)
    n_test = max(1, round(n * context.test))
    if test_formats == "seen":
        sources, targets, used = generate(n, SEEN, rng)
        parts = split_indices(
            len(sources), val=context.val, test=context.test, seed=context.seed, fold=context.fold
        )
    else:
        refuse_folds(context.fold, "dates", "test_formats=unseen tests on its own formats")
        sources, targets, used = generate(n - n_test, SEEN, rng)
        extra = generate(n_test, UNSEEN, rng, exclude=set(sources))
        train, val, _ = split_indices(
            len(sources), val=context.val / (1 - context.test), test=0.0, seed=context.seed
        )
        test = np.arange(len(sources), len(sources) + len(extra[0]))
        sources, targets, used = sources + extra[0], targets + extra[1], used + extra[2]
        parts = (train, val, test)
    summary = {
        "generator_seed": seed,
        "test_formats": test_formats,
        "train_formats": sorted(SEEN),
        "test_format_names": sorted({used[i] for i in parts[2]}),
        "examples": [[sources[i], targets[i]] for i in parts[0][:8]],
    }
    return pairs_bundle(
        sources, targets, parts, tokenization="char", vocab_size=1000, max_length=64,
        lowercase=True, summary=summary,
    )  # fmt: skip
