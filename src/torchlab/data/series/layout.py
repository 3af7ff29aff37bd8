"""Where each value sits in a window's inputs: one layout shared by training and forecasting.

Per step, past inputs are ``[targets (T), lagged targets (T per lag), past covariates (P),
known-future covariates (F), calendar (C)]``, all scaled; targets come first so a model
can normalise them per window. Future inputs (the horizon's steps) are ``[known-future
covariates (F), calendar (C), lagged targets (T per lag >= horizon)]``: a lag at least as
long as the horizon is known for every step being forecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Column counts of the past and future inputs."""

    targets: int
    lags: tuple[int, ...]
    past: int
    future: int
    calendar: int
    horizon: int

    @property
    def future_lags(self) -> tuple[int, ...]:
        return tuple(k for k in self.lags if k >= self.horizon)

    @property
    def past_width(self) -> int:
        return self.targets * (1 + len(self.lags)) + self.past + self.future + self.calendar

    @property
    def future_width(self) -> int:
        return self.future + self.calendar + self.targets * len(self.future_lags)

    @property
    def history(self) -> int:
        """Steps before the lookback that lag features read."""
        return max(self.lags, default=0)


def lagged(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` moved ``k`` steps later (row t holds row t - k); the first k rows are 0."""
    out = np.zeros_like(values)
    out[k:] = values[: len(values) - k]
    return out


def matrices(
    layout: Layout,
    target: np.ndarray,
    past: np.ndarray,
    future: np.ndarray,
    calendar: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-series past (N, past_width) and future (N, future_width) input matrices.

    Args:
        layout: The column counts.
        target: Scaled targets (N, T); rows not yet observed may hold anything (they are
            read only through lags >= horizon, which never reach them).
        past, future, calendar: Scaled covariates (N, P), (N, F) and calendar (N, C).
    """
    lags = [lagged(target, k) for k in layout.lags]
    past_in = np.concatenate([target, *lags, past, future, calendar], axis=1)
    future_lags = [lagged(target, k) for k in layout.future_lags]
    future_in = np.concatenate([future, calendar, *future_lags], axis=1)
    return past_in.astype(np.float32), future_in.astype(np.float32)
