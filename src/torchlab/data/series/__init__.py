"""Time series: tables of one or many series become windows for forecasting models.

A table (CSV, Parquet or a ``statsmodels.datasets`` series) with a timestamp column, one or
more target columns, an optional series id column and covariates is checked (order,
duplicates, gaps, NaN: each reported with the offending timestamps and filled only by the
configured ``fill``), split by time into train / validation / test, scaled with statistics
of the training part only and cut into (lookback, horizon) windows whose targets never
cross a split boundary. :class:`~torchlab.data.series.featurizer.SeriesFeaturizer` keeps
what forecasting beyond the data needs.
"""

from torchlab.data.series.frame import SeriesSet, read_series
from torchlab.data.series.windows import Features, TimeSplit, Windowing

__all__ = ["Features", "SeriesSet", "TimeSplit", "Windowing", "read_series"]
