"""Series data: reading and checking tables, splits and windows without leakage, scalers, features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from torchlab.config import Component
from torchlab.data.base import SourceContext
from torchlab.data.series import read_series
from torchlab.data.series.featurizer import SeriesFeaturizer
from torchlab.data.series.windows import Scaler
from torchlab.errors import DataError
from torchlab.exporters.forecasting import columns
from torchlab.registry import DATASETS

CONTEXT = SourceContext(0.1, 0.2, False, 0, "continuous")


def build(**settings: object):  # type: ignore[no-untyped-def]
    return DATASETS.build(Component(**settings), "data.source", CONTEXT)


def write_csv(path: Path, days: int = 120, ids: tuple[str, ...] = ("a",)) -> Path:
    """Daily series whose value is its step number (+1000 per id), with two covariates."""
    rows = []
    for k, key in enumerate(ids):
        index = pd.date_range("2024-01-01", periods=days, freq="D")
        rows.append(
            pd.DataFrame(
                {
                    "day": index,
                    "store": key,
                    "sales": np.arange(days) + 1000.0 * k,
                    "visits": np.arange(days) * 2.0,
                    "promo": (np.arange(days) % 5 == 0).astype(float),
                }
            )
        )
    path.write_text(pd.concat(rows).to_csv(index=False))
    return path


def csv_bundle(path: Path, **extra: object):  # type: ignore[no-untyped-def]
    settings = {
        "name": "series", "path": str(path), "time_column": "day", "targets": ["sales"],
        "window": {"lookback": 10, "horizon": 5, "stride": 1},
        "split": {"val_size": 20, "test_size": 20}, **extra,
    }  # fmt: skip
    return build(**settings)


def test_parquet_files_read_like_csv(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "s.csv", ids=("a", "b"))
    pd.read_csv(csv, parse_dates=["day"]).to_parquet(tmp_path / "s.parquet")
    from_csv, from_parquet = (
        csv_bundle(csv, id_column="store"),
        csv_bundle(tmp_path / "s.parquet", id_column="store"),
    )
    np.testing.assert_array_equal(
        from_csv.test.tensors["y"].numpy(), from_parquet.test.tensors["y"].numpy()
    )


def test_windows_never_cross_a_split_boundary(tmp_path: Path) -> None:
    bundle = csv_bundle(write_csv(tmp_path / "s.csv"), id_column="store", features={"lags": [3]})
    cuts = bundle.series.prepared[0].cuts
    assert (cuts.val, cuts.test, cuts.end) == (80, 100, 120)
    windows = bundle.series.windows
    lookback, horizon, history = 10, 5, 3
    assert windows["train"] and windows["val"] and windows["test"]
    for _, origin in windows["train"]:  # inputs (with lags) and targets inside train
        assert origin - lookback - history >= 0 and origin + horizon <= cuts.val
    for _, origin in windows["val"]:
        assert cuts.val <= origin and origin + horizon <= cuts.test
    for _, origin in windows["test"]:
        assert cuts.test <= origin and origin + horizon <= cuts.end
    # The values seen by training windows are only those before validation starts.
    p = bundle.series.prepared[0]
    for i in range(len(bundle.train)):
        inputs, target = bundle.train[i]
        raw = p.target_scaler.inverse(
            np.concatenate([inputs["past"][:, :1].numpy(), target.numpy()])
        )
        assert raw.max() < cuts.val


def test_targets_come_back_exactly_in_original_units(tmp_path: Path) -> None:
    bundle = csv_bundle(write_csv(tmp_path / "s.csv"), id_column="store")
    for (s, origin), i in zip(bundle.series.windows["test"], range(len(bundle.test)), strict=True):
        inputs, target = bundle.test[i]
        original = target.double() * inputs["scale"].double() + inputs["loc"].double()
        expected = bundle.series.prepared[s].series.target[origin : origin + 5]
        np.testing.assert_allclose(original.numpy(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["standard", "minmax", "robust", "none"])
def test_scalers_invert_exactly_and_use_training_values_only(name: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(5, 3, (50, 2))
    scaler = Scaler.fit(values, name)  # type: ignore[arg-type]
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values, rtol=0, atol=1e-12)
    back = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(back.loc, scaler.loc)


def test_scaler_statistics_ignore_validation_and_test_values(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv")
    first = csv_bundle(path).series.prepared[0].target_scaler
    frame = pd.read_csv(path)
    frame.loc[90:, "sales"] = 1e6  # only validation and test values change
    frame.to_csv(path, index=False)
    second = csv_bundle(path).series.prepared[0].target_scaler
    np.testing.assert_array_equal(first.loc, second.loc)
    np.testing.assert_array_equal(first.scale, second.scale)
    assert first.loc[0] == pytest.approx(np.arange(80).mean())  # the training part: steps 0-79


def test_ids_and_covariates_become_per_series_windows(tmp_path: Path) -> None:
    bundle = csv_bundle(
        write_csv(tmp_path / "s.csv", ids=("a", "b")), id_column="store",
        past_covariates=["visits"], future_covariates=["promo"], features={"calendar": True},
    )  # fmt: skip
    spec = bundle.spec
    assert spec.horizon == 5 and spec.target_names == ("sales",)
    calendar = 4  # daily: day of week and day of year, sin and cos
    assert spec.input_shape == (10, 1 + 1 + 1 + calendar)
    assert spec.future_width == 1 + calendar
    named = columns(bundle.featurizer.layout, bundle.featurizer)  # what an export's sidecar says
    days = ["dayofweek_sin", "dayofweek_cos", "dayofyear_sin", "dayofyear_cos"]
    assert named == {"past": ["sales", "visits", "promo", *days], "future": ["promo", *days]}
    assert {s for s, _ in bundle.series.windows["test"]} == {0, 1}
    b = bundle.series.prepared[1]
    assert b.series.id == "b" and b.series.target[0, 0] == 1000.0
    inputs, _ = bundle.test[len(bundle.test) - 1]
    s, origin = bundle.series.windows["test"][-1]
    promo = bundle.series.prepared[s].series.future[origin : origin + 5, 0]
    scaler = bundle.series.prepared[s].future_scaler
    np.testing.assert_allclose(
        scaler.inverse(inputs["future"][:, :1].double().numpy())[:, 0], promo, atol=1e-6
    )


def test_lag_features_hold_the_lagged_target(tmp_path: Path) -> None:
    bundle = csv_bundle(write_csv(tmp_path / "s.csv"), features={"lags": [7]})
    p = bundle.series.prepared[0]
    np.testing.assert_allclose(p.past_in[20:, 1], p.target[13:-7, 0], atol=1e-6)  # lag 7 beside y
    assert bundle.spec.future_width == 1  # lag 7 >= horizon 5: known over the whole horizon
    np.testing.assert_allclose(p.future_in[20:, 0], p.target[13:-7, 0], atol=1e-6)


def test_featurizer_rebuilds_the_window_at_the_end_of_the_data(tmp_path: Path) -> None:
    bundle = csv_bundle(write_csv(tmp_path / "s.csv", ids=("a", "b")), id_column="store",
                        future_covariates=["promo"], features={"calendar": True, "lags": [7]})  # fmt: skip
    state = json.loads(json.dumps(bundle.featurizer.to_dict()))
    featurizer = SeriesFeaturizer.from_dict(state)
    future = pd.DataFrame(
        [{"day": t, "store": key, "promo": 1.0} for key in ("a", "b")
         for t in pd.date_range("2024-04-30", periods=5, freq="D")]
    )  # fmt: skip
    inputs = featurizer.forecast_inputs(future, "store", "day")
    for s, p in enumerate(bundle.series.prepared):
        np.testing.assert_allclose(inputs["past"][s].numpy(), p.past_in[110:120], atol=1e-5)
    assert inputs["future"].shape == (2, 5, bundle.spec.future_width)
    promo = featurizer.tails[0].scaler("future").transform(np.ones((1, 1)))[0, 0]
    np.testing.assert_allclose(inputs["future"][:, :, 0].numpy(), promo, atol=1e-6)
    with pytest.raises(DataError, match="promo"):
        featurizer.forecast_inputs(None)


def frame(times: list[str], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"t": times, "y": values})


def read(data: pd.DataFrame, **settings: object):  # type: ignore[no-untyped-def]
    return read_series(data, time_column="t", targets=["y"], name="f.csv", **settings)


def test_unsorted_timestamps_are_named() -> None:
    data = frame(["2024-01-01", "2024-01-03", "2024-01-02", "2024-01-04"], [1, 2, 3, 4])
    with pytest.raises(DataError, match=r"not sorted.*2024-01-02"):
        read(data)


def test_duplicate_timestamps_are_named() -> None:
    data = frame(["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03"], [1, 2, 3, 4])
    with pytest.raises(DataError, match=r"duplicate timestamps 2024-01-02"):
        read(data)


def test_every_duplicate_and_gap_of_every_series_is_named_at_once() -> None:
    days = list(pd.date_range("2024-01-01", periods=30).astype(str))
    data = pd.DataFrame({"store": ["a"] * 30 + ["b"] * 30, "t": days * 2, "y": range(60)})
    data.loc[2, "t"] = "2024-01-02"  # a duplicate in store a, which leaves a gap there
    data = data.drop(index=[40, 50])  # two gaps in store b
    with pytest.raises(DataError) as info:
        read_series(data, time_column="t", targets=["y"], id_column="store", name="sales.csv")
    message = str(info.value)
    assert (
        "series 'a' of sales.csv has duplicate timestamps 2024-01-02 at rows 1 (line 3), 2 (line 4)"
        in message
    )
    assert "series 'a' of sales.csv has 1 gap at 2024-01-03" in message
    assert "series 'b' of sales.csv has 2 gaps at 2024-01-11, 2024-01-21" in message


def test_gaps_are_named_and_filled_only_when_asked() -> None:
    days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05", "2024-01-06"]
    with pytest.raises(DataError, match=r"1 gap at 2024-01-04.*data.source.fill"):
        read(frame(days, [1, 2, 3, 5, 6]), freq="D")
    with pytest.warns(UserWarning, match=r"fill=interpolate: f.csv: 'y' 1\."):
        filled = read(frame(days, [1, 2, 3, 5, 6]), freq="D", fill="interpolate")
    np.testing.assert_allclose(filled.series[0].target[:, 0], [1, 2, 3, 4, 5, 6])
    assert filled.filled == {"f.csv": {"y": 1}}
    assert read(frame(days, [1, 2, 3, 5, 6]), freq="D", fill="ffill").series[0].target[3, 0] == 3
    assert read(frame(days, [1, 2, 3, 5, 6]), freq="D", fill="zero").series[0].target[3, 0] == 0


def test_nan_values_are_named() -> None:
    days = [str(d.date()) for d in pd.date_range("2024-01-01", periods=5)]
    with pytest.raises(DataError, match=r"'y' of f.csv is NaN at 2024-01-03"):
        read(frame(days, [1, 2, np.nan, 4, 5]))


def test_bad_timestamps_and_missing_columns_are_named() -> None:
    with pytest.raises(DataError, match=r"row 1 \(line 3\) \('soon'\)"):
        read(frame(["2024-01-01", "soon", "2024-01-03"], [1, 2, 3]))
    with pytest.raises(DataError, match=r"no column 'price'"):
        read_series(frame(["2024-01-01"], [1]), time_column="t", targets=["price"])


def test_frequency_is_inferred_even_with_gaps() -> None:
    weeks = pd.date_range("2024-01-07", periods=30, freq="W-SUN").delete([10, 11])
    sset = read(pd.DataFrame({"t": weeks, "y": np.arange(28.0)}), fill="ffill")
    assert sset.freq == "W-SUN" and len(sset.series[0]) == 30


def test_backtest_fold_moves_the_test_part_back_and_drops_later_data(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv")
    latest = csv_bundle(path).series.prepared[0].cuts
    earlier = (
        csv_bundle(path, split={"val_size": 20, "test_size": 20, "backtest_fold": 1})
        .series.prepared[0]
        .cuts
    )
    assert (earlier.val, earlier.test, earlier.end) == (
        latest.val - 20,
        latest.test - 20,
        latest.end - 20,
    )


def test_too_short_a_series_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs at least"):
        csv_bundle(write_csv(tmp_path / "s.csv", days=40))


def test_builtin_statsmodels_series_load_offline() -> None:
    co2 = build(name="co2", fill="interpolate", window={"lookback": 36, "horizon": 24},
                split={"val_size": 48, "test_start": "2000-01-01", "test_end": "2001-12-01"})  # fmt: skip
    assert co2.summary["frequency"] == "MS" and co2.series.season == 12
    assert co2.summary["test"].startswith("2000-01-01") and len(co2.test) == 1
    with pytest.raises(DataError, match=r"co2 is NaN at 1958-06-01"):
        build(name="co2")
    for name in ("sunspots", "nile", "elnino", "macrodata"):
        assert len(build(name=name, window={"lookback": 8, "horizon": 4}).train) > 0
