"""Forecasting models: windows of past inputs (and known-future inputs) -> multi-step forecasts.

Every forecaster takes ``{"past": (B, lookback, past_width), "future": (B, horizon,
future_width)}`` and returns ``(B, horizon, targets)`` point forecasts, or ``(B, horizon,
targets, quantiles)`` when the task's loss is ``quantile``. The shared
:class:`~torchlab.models.forecasting.base.Forecaster` normalises each window by its own
level (``normalize: last`` or ``mean``) and adds the level back to the forecast.
"""
