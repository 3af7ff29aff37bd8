"""A trained run as an MLflow model: a pyfunc over its export folder.

The model is logged from code (``torchlab/pyfunc.py``), with the export folder (ONNX or an
exported program, its sidecar and preprocessing) as its one artifact: nothing of torchlab
is pickled, and ``mlflow.pyfunc.load_model(uri).predict(frame)`` is ``torchlab predict`` on
the export folder.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from torchlab.tracking.settings import Settings

MODEL_NAME = "model"
# The runtime each export format needs beside torchlab.
RUNTIMES = {"onnx": ["onnxruntime"], "exported-program": []}


def log_model(settings: Settings, run_id: str, export_dir: Path) -> dict[str, Any]:
    """Log ``export_dir`` as the run's MLflow model, registered as ``settings.register``
    when given; returns what ``tracking.json`` keeps of it."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from torchlab import __version__

    sidecar = read_sidecar(export_dir)
    code = resources.files("torchlab") / "pyfunc.py"
    requirements = [f"torchlab=={__version__}", "torch", "pandas", "mlflow"]
    requirements += RUNTIMES.get(sidecar["format"], [])
    # The fluent API logs to the global tracking URI and the thread's active run; both are
    # this run's only inside the block.
    with _use_tracking_uri(settings.uri), mlflow.start_run(run_id=run_id):
        mlflow.set_registry_uri(settings.uri)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(code),
            artifacts={"export": str(export_dir)},
            input_example=input_example(sidecar),
            pip_requirements=requirements,
            registered_model_name=settings.register,
        )
    logged: dict[str, Any] = {"uri": info.model_uri, "format": sidecar["format"]}
    if settings.register:
        logged["registered"] = {"name": settings.register, "version": info.registered_model_version}
    return logged


def read_sidecar(export_dir: Path) -> dict[str, Any]:
    """The export's ``export.json``; a forecaster's run files stand for themselves."""
    path = export_dir / "export.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {
        "format": "run",
        "preprocessing": json.loads((export_dir / "featurizer.json").read_text()),
    }


def input_example(sidecar: dict[str, Any]) -> Any:
    """A row the model takes, for its signature: a typical row of a table (each column's
    fill value), a sentence for text, the end of the first series of a forecaster (its
    training history, several series named; no known-future covariates); None where a
    frame cannot hold one."""
    import pandas as pd

    preprocessing = sidecar.get("preprocessing") or {}
    kind = preprocessing.get("kind")
    if kind == "tabular":
        return pd.DataFrame([{c["name"]: c["fill"] for c in preprocessing["columns"]}])
    if kind == "text":
        return pd.DataFrame({"text": ["An example sentence to classify."]})
    if kind == "series" and not preprocessing.get("future_names"):
        tail = preprocessing["tails"][0]
        example = pd.DataFrame({"timestamp": pd.to_datetime(tail["index"])})
        if len(preprocessing["tails"]) > 1:
            example.insert(0, "series", str(tail["id"]))
        for values, names in ((tail["target"], "target_names"), (tail["past"], "past_names")):
            for i, name in enumerate(preprocessing[names]):
                example[name] = [float(row[i]) for row in values]
        return example
    return None
