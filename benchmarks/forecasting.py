"""co2 and sunspots: MASE / RMSE of every neural forecaster and every classical method.

Each neural model trains through ``torchlab.train`` on the recipe's split (co2: train to
1999-12, test 2000-01..2001-12; sunspots: train to 1988, test 1989-2008) with several seeds;
the table shows the mean over seeds and the seed ensemble (forecasts averaged), beside the
classical methods fitted on exactly the same test window. Wall times are per run.

    python benchmarks/forecasting.py                      # everything, 3 seeds
    python benchmarks/forecasting.py --datasets co2 --seeds 2 --models nlinear gru
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import torchlab
from torchlab.baselines.forecasting import test_windows
from torchlab.engine.experiment import build_experiment, loaders
from torchlab.report.forecasting import test_forecasts
from torchlab.tasks.forecasting import forecast_scores
from torchlab.training.checkpoint import load_into, load_weights

# Model variants: overrides on top of each recipe (whose own model is the linear one).
# Non-linear models get 100 epochs: with the recipes' 300 and train-loss selection they
# only overfit further on these few hundred windows.
SHORT = {"trainer.max_epochs": 100}
MODELS = {
    "nlinear": {"model": {"name": "mlp-forecaster", "hidden": [], "normalize": "last"}},
    "mlp": {
        "model": {"name": "mlp-forecaster", "hidden": [64], "dropout": 0.1, "normalize": "last"},
        **SHORT,
    },
    "lstm": {"model": {"name": "lstm-forecaster", "hidden": 32, "normalize": "last"}, **SHORT},
    "gru": {"model": {"name": "gru-forecaster", "hidden": 32, "normalize": "last"}, **SHORT},
    "gru-seq2seq": {
        "model": {
            "name": "gru-forecaster",
            "hidden": 32,
            "decoder": "autoregressive",
            "normalize": "last",
        },
        **SHORT,
    },
    "tcn": {"model": {"name": "tcn", "channels": [16, 16, 16], "normalize": "last"}, **SHORT},
    "transformer": {
        "model": {
            "name": "transformer-forecaster",
            "d_model": 16,
            "heads": 2,
            "layers": 1,
            "normalize": "last",
        },
        **SHORT,
    },
}
SUNSPOTS_NORMALIZE = "none"  # the level carries the phase of the cycle (see the recipe)


def overrides_for(dataset: str, model: str, seed: int, epochs: int | None) -> dict:
    settings = json.loads(json.dumps(MODELS[model]))
    if dataset == "sunspots":
        settings["model"]["normalize"] = SUNSPOTS_NORMALIZE
    out = {**settings, "seed": seed, "trainer.progress": "none"}
    if epochs:
        out["trainer.max_epochs"] = epochs
    return out


def forecasts(run: torchlab.Run) -> tuple[np.ndarray, object]:
    """The run's best-weights forecasts over its test windows (N, H, T), and its bundle."""
    parts = build_experiment(run.config)
    load_into(
        parts.model, load_weights(run.dir / "model.safetensors"), run.dir / "model.safetensors"
    )
    return test_forecasts(parts, loaders(parts)["test"])["forecast"], parts.bundle


def score(forecast: np.ndarray, bundle: object) -> dict[str, float]:
    _, actual, mase = test_windows(bundle)
    tensors = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (forecast, actual, mase))
    return forecast_scores(*tensors)


def bench(dataset: str, models: list[str], seeds: int, epochs: int | None, out: Path) -> list[dict]:
    rows, baselines = [], None
    for model in models:
        runs, times, members, bundle = [], [], [], None
        for seed in range(seeds):
            started = time.perf_counter()
            extra = overrides_for(dataset, model, seed, epochs)
            if baselines is not None:  # the classical methods once per dataset
                extra["baseline.methods"] = ["naive"]
            run = torchlab.train(dataset, extra, output_dir=out)
            times.append(time.perf_counter() - started)
            baselines = baselines or run.summary["baselines"]
            forecast, bundle = forecasts(run)
            members.append(forecast)
            runs.append(score(forecast, bundle))
        ensemble = score(np.mean(members, axis=0), bundle)
        rows.append({
            "forecaster": model, "mase": np.mean([r["mase"] for r in runs]),
            "mase_sd": np.std([r["mase"] for r in runs]), "rmse": np.mean([r["rmse"] for r in runs]),
            "ensemble_mase": ensemble["mase"], "ensemble_rmse": ensemble["rmse"],
            "seconds": float(np.mean(times)),
        })  # fmt: skip
        print(dataset, rows[-1], flush=True)
    for row in baselines or []:
        rows.append({"forecaster": row["name"], "mase": row["test/mase"], "rmse": row["test/rmse"],
                     "seconds": row["seconds"], "classical": True})  # fmt: skip
    return rows


def markdown(dataset: str, rows: list[dict], seeds: int) -> str:
    lines = [
        f"### {dataset}",
        "",
        f"| forecaster | MASE (mean of {seeds} seeds ± sd) | RMSE | MASE of the seed ensemble | RMSE of the ensemble | wall s per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.get("classical"):
            lines.append(
                f"| {r['forecaster']} (statsmodels / classical) | {r['mase']:.3f} | {r['rmse']:.3f} | | | {r['seconds']:.2f} |"
            )
        else:
            lines.append(
                f"| {r['forecaster']} | {r['mase']:.3f} ± {r['mase_sd']:.3f} | {r['rmse']:.3f} | "
                f"{r['ensemble_mase']:.3f} | {r['ensemble_rmse']:.3f} | {r['seconds']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["co2", "sunspots"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=None, help="trainer.max_epochs (default: the recipe's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            results[dataset] = bench(dataset, args.models, args.seeds, args.epochs, Path(tmp))
    for dataset, rows in results.items():
        print()
        print(markdown(dataset, rows, args.seeds))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
