"""The report's analysis of a forecasting run: forecast plots and model vs classical methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchlab.report.analysis import Analysis, _plt, png

PLOTTED = 4  # test windows drawn


@torch.inference_mode()
def test_forecasts(parts: Any, loader: Any) -> dict[str, np.ndarray]:
    """The model's forecast (and interval) over every test window, in original units (N, H, T)."""
    parts.model.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for batch in loader.epoch(0):
        batch = batch.to(parts.device)
        outputs = parts.task.evaluation_step(parts.model, batch).outputs
        for key, value in parts.task.original(outputs, batch.inputs).items():
            out.setdefault(key, []).append(value.cpu())
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def comparison(
    parts: Any, model: dict[str, np.ndarray]
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """One row per forecaster (the model first) with the same metrics on the same windows."""
    from torchlab.baselines import run_baseline
    from torchlab.baselines.forecasting import test_windows
    from torchlab.tasks.forecasting import forecast_scores

    bundle = parts.bundle
    if "baselines" not in bundle.series.cache:  # a rebuilt report: fit them again
        run_baseline(parts.config.baseline, bundle)
    baselines = bundle.series.cache.get("baselines", {})
    _, actual, mase = test_windows(bundle)
    names = ("mae", "rmse", "mape", "smape", "mase")
    rows = []
    for name, forecast in {
        f"{parts.config.model.name} (torchlab)": model["forecast"],
        **baselines,
    }.items():
        scores = forecast_scores(
            *(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (forecast, actual, mase)),
            names=names,
        )
        rows.append({"forecaster": name, **scores})
    best = min(r["mase"] for r in rows[1:]) if len(rows) > 1 else None
    for row in rows:
        row["vs best classical"] = (
            ""
            if best is None
            else ("better" if row["mase"] < best else "not better" if row is rows[0] else "")
        )
    return rows, baselines


def window_figure(
    parts: Any, i: int, model: dict[str, np.ndarray], baseline: tuple[str, np.ndarray] | None
) -> bytes:
    """History before one test window, its actuals, the forecast with its interval, the best baseline."""
    plt = _plt()
    data = parts.bundle.series
    s, origin = data.windows["test"][i]
    series, horizon = data.prepared[s].series, data.window.horizon
    targets = data.sset.target_names[:3]
    fig, axes = plt.subplots(len(targets), 1, figsize=(9, 3.2 * len(targets)), squeeze=False)
    past = slice(max(0, origin - 3 * horizon), origin)
    ahead = series.index[origin : origin + horizon]
    for t, (ax, name) in enumerate(zip(axes[:, 0], targets, strict=False)):
        ax.plot(series.index[past], series.target[past, t], color="0.4", label="history")
        ax.plot(ahead, series.target[origin : origin + horizon, t], color="black", label="actual")
        ax.plot(ahead, model["forecast"][i, :, t], color="tab:blue", label="forecast")
        if "lower" in model:
            ax.fill_between(ahead, model["lower"][i, :, t], model["upper"][i, :, t], color="tab:blue",
                            alpha=0.2, label="interval")  # fmt: skip
        if baseline is not None:
            ax.plot(ahead, baseline[1][i, :, t], color="tab:orange", ls="--", label=baseline[0])
        which = f", series '{series.id}'" if len(data.prepared) > 1 else ""
        ax.set_title(f"{name}{which}, forecast from {series.index[origin].date()}")
        ax.legend(loc="upper left", fontsize=8)
    return png(fig)


SERIES_SHOWN = 3  # series (and targets of each) drawn in the data section
PARTS = (("train", "tab:blue"), ("validation", "tab:orange"), ("test", "tab:green"))


def series_overview(bundle: Any) -> bytes | None:
    """Each series' targets over time with its train, validation and test parts shaded."""
    data = getattr(bundle, "series", None)
    if data is None or not getattr(data, "prepared", None):
        return None
    plt = _plt()
    shown = data.prepared[:SERIES_SHOWN]
    targets = list(data.sset.target_names[:SERIES_SHOWN])
    fig, axes = plt.subplots(len(shown) * len(targets), 1, squeeze=False,
                             figsize=(10, 2.6 * len(shown) * len(targets)))  # fmt: skip
    for k, prepared in enumerate(shown):
        series, cuts = prepared.series, prepared.cuts
        bounds = (0, cuts.val, cuts.test, cuts.end)
        for t, name in enumerate(targets):
            ax = axes[k * len(targets) + t, 0]
            ax.plot(series.index, series.target[:, t], color="black", lw=1)
            for (label, color), start, stop in zip(PARTS, bounds[:-1], bounds[1:], strict=True):
                if stop > start:  # shade [start, stop): one part of the time split
                    end = series.index[min(stop, len(series.index) - 1)]  # no gap between parts
                    ax.axvspan(series.index[start], end, color=color,
                               alpha=0.15, label=f"{label} ({stop - start})")  # fmt: skip
            which = f" of series '{series.id}'" if len(data.prepared) > 1 else ""
            ax.set_title(f"{name}{which}", fontsize=10)
            ax.legend(loc="upper left", fontsize=8)
            ax.grid(alpha=0.3)
    return png(fig)


def forecasting(parts: Any, loader: Any) -> Analysis:
    """Metric table of the model beside every classical method, and forecast plots."""
    model = test_forecasts(parts, loader)
    rows, baselines = comparison(parts, model)
    scored = [r for r in rows[1:] if r["forecaster"] in baselines]
    best = min(scored, key=lambda r: r["mase"])["forecaster"] if scored else None
    baseline = (best, baselines[best]) if best else None
    windows = len(parts.bundle.series.windows["test"])
    picks = np.unique(np.linspace(0, windows - 1, min(PLOTTED, windows)).round().astype(int))
    figures = {
        f"Test window {i + 1} of {windows}: forecast, interval and actuals": window_figure(
            parts, int(i), model, baseline
        )
        for i in picks
    }
    return Analysis(
        tables={"Model vs classical forecasters (same test windows)": rows}, figures=figures
    )
