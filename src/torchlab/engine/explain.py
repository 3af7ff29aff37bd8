"""Explanations of a trained run's predictions on a user's inputs (``torchlab explain``).

Inputs are read exactly as ``torchlab predict`` reads them (files, or data in memory), then
attributed to what the user gave: table columns, text tokens, image pixels (see
:mod:`torchlab.report.attribution`). Tables also get each column's global importance: the
mean absolute attribution over the rows given, and the permutation importance of the
model and of its classical baseline on the run's test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchlab.config import RunConfig
from torchlab.errors import ConfigError
from torchlab.run import Run

KINDS = ("tabular", "text", "image")
SUPPORTED = (
    "torchlab explain supports classification and regression runs on tables, texts and "
    "images (featurizer kinds tabular, text, image)"
)
REPEATS = 5  # shuffles of each column for permutation importance


@dataclass
class Explanation:
    """What ``torchlab explain`` computed and wrote.

    Attributes:
        kind: The inputs' kind: ``tabular``, ``text`` or ``image``.
        method: ``integrated-gradients`` or ``occlusion``.
        ids: One id per input, as ``torchlab predict`` names them.
        predictions: The predicted label (or value) per input.
        attributions: Tables: a DataFrame, one row per input and one column per input
            column. Texts: per input a list of ``(token, attribution)``. Images: a tensor
            ``(N, H, W)`` (channels summed).
        importance: Tables: a DataFrame of each column's global importance; else None.
        notes: What could not be computed, and why (e.g. no baseline to permute).
        files: The files written into ``directory``.
    """

    kind: str
    method: str
    ids: list[str]
    predictions: list[str]
    attributions: Any
    importance: Any = None
    notes: list[str] = field(default_factory=list)
    directory: Path | None = None
    files: list[Path] = field(default_factory=list)


def explain(
    run: str | Path | Run,
    inputs: Any,
    *,
    method: str = "integrated-gradients",
    output: str | Path | None = None,
    steps: int = 32,
    trust_code: bool = False,
) -> Explanation:
    """Attribute a run's predictions on ``inputs`` to the inputs' columns, tokens or pixels.

    Args:
        run: A run directory (an export folder cannot be differentiated).
        inputs: What ``torchlab predict`` takes: files (a CSV, texts, images) or data in
            memory (a DataFrame, a list of texts, images).
        method: ``integrated-gradients`` (any kind) or ``occlusion`` (tables, images).
        output: Folder the files go to (default: ``RUN_DIR/explanations``); files of the
            same names are replaced.
        steps: Points on the integration path of integrated gradients.
        trust_code: Let the run import code it did not record (``--trust-code``).
    """
    from torchlab.report.attribution import check_method, require_captum

    require_captum()
    run = explainable_run(run, trust_code)
    featurizer = run.featurizer
    check_method(method, featurizer.kind)
    model, task = loaded(run)
    features, ids = read(run, featurizer, task, inputs)
    with torch.no_grad():
        outputs = model(features)
    shown, targets = predicted(task, run.spec, outputs)
    result = Explanation(featurizer.kind, method, ids, shown, None)
    result.directory = Path(output) if output is not None else run.dir / "explanations"
    result.directory.mkdir(parents=True, exist_ok=True)
    explain_kind = {"tabular": explain_rows, "text": explain_texts, "image": explain_images}
    explain_kind[featurizer.kind](result, run, model, task, features, targets, steps)
    return result


def explainable_run(run: str | Path | Run, trust_code: bool) -> Run:
    """The run, if explain supports it; else one line naming what it supports."""
    from torchlab.exporters.runtime import is_export_dir
    from torchlab.kinds import kind_of_config
    from torchlab.registry import TASKS

    if not isinstance(run, Run) and is_export_dir(run):
        raise ConfigError(
            f"'{run}' is an export folder; explain the run directory it came from, whose model "
            "can be differentiated."
        )
    run = run if isinstance(run, Run) else Run(run, trust_code=trust_code)
    config = run.config
    if not isinstance(config, RunConfig):
        raise ConfigError(f"{SUPPORTED}; '{run.dir}' is a {kind_of_config(config).name} run.")
    task = TASKS.get(config.task.name, "task.name").builder
    # Tasks with predictions of their own (boxes, masks, forecasts, generated text) have a
    # report analysis of their own or decode; explain takes one output per input.
    own = task.deployment.analysis is not None or task.deployment.decodes is not None
    if own or task.target_kind not in ("categorical", "continuous"):
        raise ConfigError(f"{SUPPORTED}; '{run.dir}' is a {config.task.name} run.")
    kind = run.featurizer.kind
    if kind not in KINDS:
        raise ConfigError(f"{SUPPORTED}; '{run.dir}' is a {config.task.name} run on {kind} inputs.")
    if kind == "text" and not hasattr(run.featurizer, "tokenizer"):
        raise ConfigError(f"{SUPPORTED}; '{run.dir}' reads its texts without a tokenizer.")
    return run


def loaded(run: Run) -> tuple[torch.nn.Module, Any]:
    from torchlab.engine.experiment import load_trained
    from torchlab.tasks import build_task

    return load_trained(run), build_task(run.config.task, run.spec)


def read(run: Run, featurizer: Any, task: Any, inputs: Any) -> tuple[Any, list[str]]:
    """Model inputs and ids, read as ``torchlab predict`` reads them."""
    from torchlab.engine.predict import read_inputs
    from torchlab.exporters.inputs import input_kind
    from torchlab.exporters.runtime import Predictor

    # Only predict's readers are used; the model runs here, with gradients.
    reader = Predictor(None, run.spec, featurizer, task, input_kind(featurizer.kind))  # type: ignore[arg-type]
    in_memory = reader.objects_to_inputs(inputs)
    if in_memory is not None:
        return in_memory
    paths = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    features, ids, _ = read_inputs(featurizer, list(paths), "fail")
    return features, ids


def predicted(task: Any, spec: Any, outputs: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """Readable predictions and the output index explained per row."""
    from torchlab.engine.predict import prediction_columns
    from torchlab.report.attribution import explained_targets

    named = task.predict(outputs)
    name = "label" if "label" in named else next(iter(named))
    column = prediction_columns(name, named[name], spec).iloc[:, 0]
    return [str(v) for v in column], explained_targets(outputs, spec.target_kind)


def explain_rows(result: Explanation, run: Run, model, task, features, targets, steps) -> None:  # type: ignore[no-untyped-def]
    """``attributions.csv`` (one row per input, one column per input column) and
    ``importance.csv`` with ``importance.png`` (each column's global importance)."""
    import pandas as pd

    from torchlab.report.attribution import table_attributions
    from torchlab.report.explanations import importance_figure

    attr = table_attributions(model, features, targets, run.featurizer, result.method, steps)
    names = [c.name for c in run.featurizer.columns]
    frame = pd.DataFrame(attr.numpy(), columns=names)
    frame.insert(0, "prediction", result.predictions)
    frame.insert(0, "id", result.ids)
    mean_abs = attr.abs().mean(0).numpy()
    importance = pd.DataFrame({"column": names, "mean_abs_attribution": mean_abs})
    permutation, result.notes = permutation_importance(run, model, task)
    if permutation is not None:
        importance = importance.merge(permutation, on="column")
    importance = importance.sort_values("mean_abs_attribution", ascending=False, ignore_index=True)
    result.attributions, result.importance = frame, importance
    directory = result.directory
    frame.to_csv(directory / "attributions.csv", index=False)
    importance.to_csv(directory / "importance.csv", index=False)
    label = f"mean |{result.method}| over {len(frame)} rows"
    (directory / "importance.png").write_bytes(importance_figure(names, mean_abs, label))
    result.files = [directory / n for n in ("attributions.csv", "importance.csv", "importance.png")]


def explain_texts(result: Explanation, run: Run, model, task, features, targets, steps) -> None:  # type: ignore[no-untyped-def]
    """``tokens.html``: each text with its tokens highlighted by their attributions."""
    from torchlab.report.attribution import token_attributions
    from torchlab.report.explanations import highlighted, text_tokens
    from torchlab.report.html import environment_for_templates

    attr = token_attributions(model, features, targets, run.spec.pad_id, steps)
    result.attributions, texts = [], []
    for row, (id_, shown) in enumerate(zip(result.ids, result.predictions, strict=True)):
        length = int(features["lengths"][row])
        tokens = text_tokens(run.featurizer, features["ids"][row], length)
        scores = attr[row, :length].tolist()
        result.attributions.append(list(zip(tokens, scores, strict=True)))
        texts.append({"title": f"{id_}: predicted {shown}", "tokens": highlighted(tokens, scores)})
    page = environment_for_templates().get_template("tokens.html.j2")
    path = result.directory / "tokens.html"
    path.write_text(page.render(name=run.config.name, run_dir=str(run.dir), texts=texts))
    result.files = [path]


def explain_images(result: Explanation, run: Run, model, task, features, targets, steps) -> None:  # type: ignore[no-untyped-def]
    """One PNG per image: the image beside its attributions."""
    from torchlab.report.attribution import image_attributions
    from torchlab.report.explanations import overlay_figure

    attr = image_attributions(model, features, targets, result.method, steps)
    result.attributions, result.files = attr, []
    for i, (id_, shown) in enumerate(zip(result.ids, result.predictions, strict=True)):
        path = result.directory / f"{i:03d}-{Path(id_).stem}.png"
        path.write_bytes(overlay_figure(features[i : i + 1], attr[i : i + 1], [f"pred {shown}"]))
        result.files.append(path)


def permutation_importance(run: Run, model: torch.nn.Module, task: Any) -> tuple[Any, list[str]]:
    """Each column's permutation importance on the run's test split, for the model and its
    baseline: how much the score (accuracy, or R² for regression) drops when the column's
    values are shuffled among the rows. Returns the table (None if there is no test split)
    and notes on what could not be computed."""
    import pandas as pd
    from sklearn.inspection import permutation_importance as permuted

    from torchlab.engine.experiment import build_experiment
    from torchlab.report.error_analysis import table_rows

    bundle = build_experiment(run.config, run.dir).bundle
    if not len(bundle.test):
        return None, ["No permutation importance: the run has an empty test split."]
    featurizer, spec, seed = bundle.featurizer, bundle.spec, run.config.seed
    rows = table_rows(featurizer, bundle.test.inputs)
    y = bundle.test.target.numpy()
    score = scorer(spec.target_kind)
    table = pd.DataFrame({"column": list(rows.columns)})

    def model_predict(frame: Any) -> np.ndarray:
        with torch.no_grad():
            named = task.predict(model(featurizer.transform(frame, warn=False)))
        return named["label" if "label" in named else "prediction"].numpy()

    found = permuted(Predicting(model_predict), rows, y, scoring=score, n_repeats=REPEATS, random_state=seed)  # fmt: skip
    table["permutation_importance"] = found.importances_mean
    baseline, note = fitted_baseline(run, bundle)
    if baseline is None:
        return table, [note]

    def baseline_predict(frame: Any) -> np.ndarray:
        return baseline.predict(featurizer.transform(frame, warn=False).numpy())

    found = permuted(Predicting(baseline_predict), rows, y, scoring=score, n_repeats=REPEATS, random_state=seed)  # fmt: skip
    table[f"permutation_importance_{note}"] = found.importances_mean
    return table, []


@dataclass(frozen=True)
class Predicting:
    """A predict function in the shape scikit-learn's permutation importance calls."""

    predict: Any

    def fit(self, *args: Any) -> Predicting:
        return self


def scorer(target_kind: str) -> Any:
    from sklearn import metrics

    if target_kind == "categorical":
        return lambda estimator, x, y: metrics.accuracy_score(y, np.ravel(estimator.predict(x)))
    return lambda estimator, x, y: metrics.r2_score(
        y.reshape(len(y), -1), np.reshape(estimator.predict(x), (len(y), -1))
    )


def fitted_baseline(run: Run, bundle: Any) -> tuple[Any, str]:
    """The run's baseline refitted as training fitted it (train and validation rows), and
    its name; or None and why it cannot be permuted."""
    from torchlab.baselines import arrays
    from torchlab.config import Component
    from torchlab.registry import BASELINES

    component = run.config.baseline
    if component is None and bundle.default_baseline is not None:
        component = Component.model_validate(bundle.default_baseline)
    if component is None:
        return None, "No baseline permutation importance: the run has no baseline."
    estimator = BASELINES.build(component, "baseline", bundle.spec.target_kind)
    if hasattr(estimator, "evaluate") or bundle.baseline_inputs is not None:
        return None, (
            f"No baseline permutation importance: the {component.name} baseline does not "
            "predict from the table's columns."
        )
    (x_tr, y_tr), (x_va, y_va) = arrays(bundle, "train"), arrays(bundle, "val")
    estimator.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    return estimator, component.name
