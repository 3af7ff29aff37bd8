"""What a study writes besides its storage: plots (PNG) and a table of its trials."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torchlab.notices import notice

PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "slice": "plot_slice",
    "intermediate_values": "plot_intermediate_values",
}


def save_plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNG; a plot its trials cannot support is skipped with a warning.

    Parameter importances need at least two complete trials whose parameters vary, for example.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    folder.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    for name, function in PLOTS.items():
        if not complete:
            break
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():
                # optuna marks these plots experimental; the parallel-coordinate colour bar
                # trips tight_layout's warning, but the saved figure is laid out fine
                warnings.simplefilter("ignore")
                figure = _figure(getattr(vis, function)(study))
                figure.set_size_inches(max(8, figure.get_size_inches()[0]), 5)
                figure.tight_layout()
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            notice(f"Skipped the {name} plot: {exc}")
            plt.close("all")
    return written


def _figure(result: Any) -> Any:
    """Optuna returns an Axes or an array of Axes; either way, their Figure."""
    import numpy as np

    first = np.asarray(result, dtype=object).ravel()[0] if not hasattr(result, "figure") else result
    return first.figure


def save_trials_table(study: Any, path: Path) -> Path:
    """Every trial as a CSV row: number, state, value, parameters, error, run directory."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    keep = [c for c in frame.columns if not c.startswith("user_attrs_") or c in _USER_COLUMNS]
    frame[keep].to_csv(path, index=False)
    return path


_USER_COLUMNS = {"user_attrs_error", "user_attrs_run_dir", "user_attrs_retry_of"}
