"""An MLflow pyfunc model of a torchlab export folder, logged "from code": MLflow runs this
file to build the model, so nothing of torchlab is pickled (docs/tracking.md).

``predict`` takes a DataFrame and answers as ``torchlab predict`` does on the same rows:
tables as they are; texts in a ``text`` column; images in an ``image`` column, as file
paths or the files' bytes. A forecaster's artifact is its run's files (an export takes
windows, not histories): it takes the recent history, a ``timestamp`` column and the
columns it was trained on (``series`` naming each series of a model of several), and
answers its forecast after each series' last timestamp as ``torchlab serve`` does.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

INPUT_COLUMNS = {"text": "text", "image": "image"}


class ExportedModel(PythonModel):
    """A torchlab export folder (its ``export`` artifact) behind MLflow's pyfunc interface."""

    def load_context(self, context: Any) -> None:
        from torchlab.engine.predict import load_predictor

        self.folder = Path(context.artifacts["export"])
        sidecar = self.folder / "export.json"
        if sidecar.is_file():
            self.kind = json.loads(sidecar.read_text())["preprocessing"]["kind"]
        else:  # a forecaster's run files
            self.kind = json.loads((self.folder / "featurizer.json").read_text())["kind"]
        load_predictor(self.folder)  # fail at load, not at the first request

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return predict_frame(self.folder, self.kind, model_input)


def predict_frame(folder: Path, kind: str, frame: Any) -> Any:
    """``torchlab predict`` of an export folder on the rows of ``frame``."""
    from torchlab.engine.predict import predict

    if kind == "series":
        return forecast_frame(folder, frame)
    if kind not in INPUT_COLUMNS:  # tables, and what predict reads from a frame itself
        return predict(folder, frame)
    values = list(column(frame, INPUT_COLUMNS[kind]))
    if kind == "text":
        return predict(folder, [str(v) for v in values])
    if not any(isinstance(v, (bytes, bytearray)) for v in values):
        return predict(folder, [str(v) for v in values]).assign(id=[str(v) for v in values])
    with tempfile.TemporaryDirectory() as scratch:  # bytes: predicted as the files they are
        paths = [write_image(Path(scratch), i, v) for i, v in enumerate(values)]
        return predict(folder, paths).assign(id=[str(i) for i in range(len(values))])


def forecast_frame(folder: Path, frame: Any) -> Any:
    """Per series of ``frame`` (its recent history), the forecast after its last timestamp:
    ``series`` (several only), ``timestamp`` and ``forecast_<target>`` (with ``lower_`` /
    ``upper_`` bounds when the model has them), as ``torchlab predict RUN --horizon``."""
    from torchlab.engine.predict import load_predictor
    from torchlab.serve.requests import Limits, done
    from torchlab.serve.series import series

    predictor = load_predictor(folder)
    featurizer = predictor.featurizer
    columns = [*featurizer.target_names, *featurizer.past_names, *featurizer.future_names]
    groups = frame.groupby("series", sort=False) if "series" in frame.columns else [(None, frame)]
    items = [
        {
            "id": None if name is None else str(name),
            "timestamps": [str(t) for t in part["timestamp"]],
            "history": {c: part[c].astype(float).tolist() for c in columns},
        }
        for name, part in groups
    ]
    kind = series(predictor, Limits(max_rows=len(items), max_pixels=0, pixels=None))  # type: ignore[arg-type]
    request = kind.model.model_validate({"series": items})
    inputs = done(kind.decode(request))
    answers = kind.records(predictor(inputs), inputs, request)  # type: ignore[misc]
    rows = []
    for item, answer in zip(items, answers, strict=True):
        for step, stamp in enumerate(answer["timestamps"]):
            row = {"series": item["id"]} if item["id"] is not None else {}
            row["timestamp"] = pd.Timestamp(stamp)
            for kind_name in ("forecast", "lower", "upper"):
                for target, values in (answer.get(kind_name) or {}).items():
                    row[f"{kind_name}_{target}"] = values[step]
            rows.append(row)
    return pd.DataFrame(rows)


def column(frame: Any, name: str) -> Any:
    """The input column: ``name``, or the frame's only column."""
    if name in frame.columns:
        return frame[name]
    if len(frame.columns) == 1:
        return frame.iloc[:, 0]
    from torchlab.errors import DataError

    raise DataError(
        f"This model reads a '{name}' column; the frame has {', '.join(map(str, frame.columns))}."
    )


def write_image(folder: Path, index: int, value: Any) -> Path:
    if isinstance(value, (bytes, bytearray)):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(value)) as image:
            suffix = (image.format or "png").lower()
        path = folder / f"{index:06d}.{suffix}"
        path.write_bytes(bytes(value))
        return path
    return Path(str(value))


mlflow.models.set_model(ExportedModel())
