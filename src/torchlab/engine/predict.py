"""Predictions of a trained run, or of an export folder, on users' inputs: files, or data in
memory (``torchlab predict``, and the runs behind ``torchlab serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchlab.data.chunks import image_chunks, is_shards
from torchlab.engine.calibration import CALIBRATION_FILE, read_calibration
from torchlab.engine.experiment import load_trained
from torchlab.errors import ConfigError, DataError, RunError
from torchlab.exporters.inputs import input_kind
from torchlab.exporters.runtime import (
    Predictor,
    interval_half_widths,
    is_export_dir,
    load_export,
)
from torchlab.memory import keep_freed_memory, set_threads
from torchlab.notices import notice
from torchlab.run import Run


def prediction_columns(name: str, values: Any, spec: Any) -> Any:
    """One named prediction tensor as DataFrame columns with readable names.

    ``label`` (N,) becomes class names; ``probabilities`` (N, C) become ``p_<class>``;
    other (N, K) tensors become ``<name>_<class or target>``.
    """
    import pandas as pd

    if values.ndim == 1:
        data = (
            [spec.class_names[i] for i in values.tolist()]
            if name == "label" and spec.class_names
            else values.tolist()
        )
        return pd.DataFrame({name: data})
    labels = spec.class_names or spec.target_names or [str(i) for i in range(values.shape[1])]
    prefix = "p" if name == "probabilities" else name
    return pd.DataFrame(values.tolist(), columns=[f"{prefix}_{label}" for label in labels])


def predict(
    run: str | Path | Run,
    inputs: Any,
    output: str | Path | None = None,
    overwrite: bool = False,
    horizon: int | None = None,
    trust_code: bool = False,
    on_error: str = "fail",
    id_column: str | None = None,
) -> Any:
    """Predict for a user's files (a CSV for tabular runs, image files for image runs), or
    for data in memory: a DataFrame or row dicts, a list of texts, PIL images, arrays or
    tensors (``torchlab.predict(run, ["I love this phone"])``).

    A forecasting run with ``horizon`` forecasts that many steps beyond the end of its data
    (``inputs``: at most one file of known-future covariates); see
    :func:`torchlab.forecasting.forecast`.

    ``run`` may also be an export directory (``torchlab export``): the exported artefact
    then runs (ONNX Runtime, TorchScript, ...) with the run's own preprocessing.
    ``trust_code`` lets a run or export folder import or unpickle code (``--trust-code``).
    ``on_error`` says what an image file that cannot be read, or an empty text, does:
    ``fail`` (one error naming it) or ``skip`` (its row holds the reason in an ``error``
    column, empty for the others, and a warning lists the skipped inputs). ``id_column``
    names a column of the input tables whose values become the ids (``customer_id``)
    instead of ``file:row``.

    Returns a pandas DataFrame with an ``id`` column, the predicted label (or value) and
    one probability column per class (a regression run fitted with ``task.intervals``:
    ``lower_<target>`` and ``upper_<target>`` beside each value); writes it to ``output``
    when given, as Parquet for a ``.parquet`` file and CSV otherwise (inputs of any size:
    :func:`~torchlab.engine.batch_predict.batch_predict`).
    """
    keep_freed_memory()
    run = opened(run, trust_code)
    if horizon is not None:  # forecasting: beyond the end of the run's own data
        from torchlab.engine.forecasting import forecast

        future = inputs[0] if inputs else None
        return forecast(run, horizon, future=future, output=output, overwrite=overwrite)
    if output is not None and Path(output).exists() and not overwrite:
        raise RunError(
            f"Output file '{output}' already exists; choose another name or pass --overwrite."
        )
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error (--on-error) must be fail or skip; received {on_error!r}.")
    predictor = load_predictor(run, trust_code=trust_code)
    in_memory = predictor.objects_to_inputs(inputs)
    if in_memory is None:  # files
        features, ids, skipped = read_inputs(predictor.featurizer, inputs, on_error)
        texts = getattr(predictor.featurizer, "texts", None)
    else:  # a DataFrame, texts, PIL images, arrays, tensors
        (features, ids), skipped = in_memory, {}
        texts = list(inputs) if predictor.featurizer.kind == "text" else None
    if id_column is not None:
        ids = ids_from_column(ids, inputs, id_column)
        skipped = dict(
            zip(ids_from_column(list(skipped), inputs, id_column), skipped.values(), strict=True)
        )
    outputs = predictor(features)
    # Segmentation and detection write overlay images and their table into the folder
    # ``output`` instead of one CSV file.
    folder = Path(output) if output is not None else None
    written = predictor.task.write_predictions(features, outputs, ids, folder, predictor.featurizer)
    if written is not None:
        return with_errors(written, skipped) if on_error == "skip" else written
    frame = prediction_frame(predictor, outputs, ids, texts)
    if on_error == "skip":
        frame = with_errors(frame, skipped)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        if Path(output).suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(output, index=False)
        else:
            frame.to_csv(output, index=False)
    return frame


def opened(run: str | Path | Run, trust_code: bool) -> Path | Run:
    """A run folder as a :class:`Run` (its thread setting applied); an export folder as given."""
    if not isinstance(run, Run) and (Path(run) / "config.yaml").is_file():  # a run, not an export
        run = Run(run, trust_code=trust_code)
    if isinstance(run, Run):
        set_threads(run.config.trainer.threads)
    return Path(run) if isinstance(run, str) else run


def prediction_frame(
    predictor: Predictor, outputs: Any, ids: list[str], texts: list[str] | None = None
) -> Any:
    """The predictions table: ``id``, the ``text`` predicted (texts), then the predicted
    label or values and the class probabilities (see :func:`prediction_columns`)."""
    import pandas as pd

    frame = pd.DataFrame({"id": ids})
    if texts:  # what each row was about
        frame["text"] = texts
    for name, values in predictor.predictions(outputs).items():
        frame = frame.join(prediction_columns(name, values, predictor.spec))
    return frame


def ids_from_column(ids: list[str], inputs: Any, column: str) -> list[str]:
    """``file.csv:3`` ids as the values of ``column`` in row 3 of ``file.csv``."""
    import pandas as pd

    tables: dict[str, list[str]] = {}
    for path in map(Path, inputs if isinstance(inputs, list) else []):
        suffix = path.suffix.lower()
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path).astype(str)
        elif suffix in {".csv", ".tsv"}:
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        else:
            continue
        if column not in frame.columns:
            raise no_id_column(path, column, frame.columns)
        tables[path.name] = frame[column].tolist()
    if not tables:
        raise ConfigError("--id-column applies to CSV, TSV and Parquet inputs; give such files.")
    out = []
    for id_ in ids:
        name, _, row = id_.rpartition(":")
        out.append(tables[name][int(row)] if name in tables and row.isdigit() else id_)
    return out


def no_id_column(path: Path, column: str, columns: Any) -> DataError:
    """The error for an ``--id-column`` that ``path`` lacks."""
    return DataError(
        f"'{path}' has no column '{column}' (columns: {', '.join(map(str, columns))}); "
        "name one of them with --id-column."
    )


def read_inputs(
    featurizer: Any, inputs: list[str | Path], on_error: str
) -> tuple[Any, list[str], dict[str, str]]:
    """Model inputs and ids of the user's files, and the inputs skipped (id -> why).

    Featurizers with a ``skipped`` list can leave out an input they cannot use (an image
    file that cannot be read, an empty text); a table featurizer reads its files whole.
    Folders of shards (``torchlab shard``) are read as the images they hold.
    """
    paths: list[Any] = [Path(p) for p in inputs]
    if featurizer.kind in ("image", "pixels") and any(map(is_shards, paths)):
        _, chunks = image_chunks(paths, chunk_rows=1024)  # shards -> their images, named
        paths = [image for chunk in chunks for image in chunk.read()]
    if not hasattr(featurizer, "skipped"):
        notice_skip_ignored(featurizer, on_error)
        return (*featurizer.load_inputs(paths), {})
    features, ids = featurizer.load_inputs(paths, on_error=on_error)
    notice_skipped(featurizer.skipped, len(ids) + len(featurizer.skipped))
    return features, ids, featurizer.skipped


def notice_skip_ignored(featurizer: Any, on_error: str) -> None:
    """Say that ``on_error='skip'`` does nothing for inputs read whole (tables)."""
    if on_error == "skip":
        notice(
            f"on_error='skip' applies to images and texts; this run reads {featurizer.kind} "
            "inputs, so it is ignored.",
        )


def notice_skipped(skipped: dict[str, str], inputs: int) -> None:
    """Tell the user which of ``inputs`` inputs were skipped, and why (the first 10)."""
    if not skipped:
        return
    shown = list(skipped.items())[:10]
    listed = "; ".join(f"{file}: {reason}" for file, reason in shown)
    if len(skipped) > len(shown):
        listed += f"; and {len(skipped) - len(shown)} more"
    notice(
        f"Skipped {len(skipped)} of {inputs} inputs ({listed}); their rows hold the reason "
        "in the error column.",
    )


def with_errors(frame: Any, skipped: dict[str, str]) -> Any:
    """Predictions with an ``error`` column: empty for predicted rows, the reason for one row
    per skipped file (after the others)."""
    import pandas as pd

    errors = pd.DataFrame({"id": list(skipped), "error": list(skipped.values())})
    return pd.concat([frame.assign(error=""), errors], ignore_index=True)


def load_run(run: Any, trust_code: bool = False) -> Predictor:
    """A predictor for a run directory's best weights (eager PyTorch)."""
    from torchlab.tasks import build_task

    run = run if isinstance(run, Run) else Run(run, trust_code=trust_code)
    model, spec, featurizer = load_trained(run), run.spec, run.featurizer

    # A model may define ``infer`` for prediction when it differs from ``forward`` (seq2seq
    # models decode, language models generate).
    forward = getattr(model, "infer", model)

    def runner(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return forward(inputs)

    kind, task = input_kind(featurizer.kind), build_task(run.config.task, spec)
    metadata = {
        "format": "eager",
        "quantize": None,
        "recipe": run.config.name,
        "input": kind.to_dict(spec.input_shape),
        "output": {"shape": ["batch", task.num_outputs]},
        "source": str(run.dir),
    }
    calibration = read_calibration(run.dir)
    if calibration:
        metadata["calibration"] = calibration
    where = f"'{run.dir / CALIBRATION_FILE}'"
    intervals = interval_half_widths(calibration, spec, where)
    return Predictor(runner, spec, featurizer, task, kind, metadata, intervals)


def load_predictor(path: Any, trust_code: bool = False) -> Predictor:
    """A predictor for an export directory or a run directory."""
    if not isinstance(path, (str, Path)):
        return load_run(path)
    if is_export_dir(path):
        return load_export(path, trust_code)
    if not (Path(path) / "config.yaml").is_file():
        raise RunError(
            f"'{path}' is neither a run directory (no config.yaml) nor an export directory "
            "(no export.json); give a folder under runs/ or one that torchlab export wrote."
        )
    return load_run(path, trust_code)


def generate_text(
    run: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = 0,
) -> list[str]:
    """Continuations of ``prompts`` by a trained language-model run (Python API).

    Args:
        run: A run directory or :class:`~torchlab.run.Run` of a ``language-model`` task.
        prompts: Texts to continue.
        max_new_tokens: Tokens generated per prompt.
        temperature: Sampling temperature; 0 picks the most likely token every time.
        top_k: Sample among the ``top_k`` most likely tokens only (None: all).
        seed: Seed of the sampling (None: not seeded).
    """
    from torchlab.tasks.language_model import continue_prompts

    run = run if isinstance(run, Run) else Run(Path(run))
    model = load_trained(run)
    if not hasattr(model, "generate"):
        raise ConfigError(
            f"Run '{run.dir}' has no generating model (model.name={run.config.model.name})."
        )
    if seed is not None:
        torch.manual_seed(seed)
    return continue_prompts(
        model,
        run.featurizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
    )
