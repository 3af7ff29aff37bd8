"""scikit-learn estimators backed by torchlab: ``Classifier`` and ``Regressor``.

They drop into Pipelines, ``cross_val_score`` and ``GridSearchCV``, and are cloneable:
every constructor argument is stored as given and read only in :meth:`fit`.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from torchlab.sklearn import Classifier
    >>> clf = make_pipeline(StandardScaler(), Classifier(hidden=(64,), max_epochs=30))
    >>> clf.fit(X_train, y_train).score(X_test, y_test)

Training goes through the same config validation, registries, task and loop as
``torchlab train``, without a run directory. The arrays go straight into the experiment as
its data bundle (:func:`arrays_bundle`); the config names the ``arrays`` source for the record.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TensorSplit
from torchlab.data.splits import split_indices
from torchlab.registry import DATASETS
from torchlab.training.callbacks import Callback


@DATASETS.register("arrays")
def arrays(context: SourceContext, /) -> DataBundle:
    """Arrays passed in from Python by :mod:`torchlab.sklearn`; a config alone has none."""
    from torchlab.errors import DataError

    raise DataError(
        "The arrays source holds arrays that torchlab.sklearn estimators pass in from Python; "
        "a config cannot read it. Use a csv or parquet source instead."
    )


def arrays_bundle(
    x: np.ndarray, y: np.ndarray, spec: DataSpec, context: SourceContext
) -> DataBundle:
    """The splits of in-memory arrays, cut as a config's ``data.split`` says."""
    stratify = y if context.stratify and spec.target_kind == "categorical" else None
    train, val, test = split_indices(
        len(x), val=context.val, test=context.test, seed=context.seed, stratify=stratify
    )
    inputs = torch.as_tensor(x, dtype=torch.float32)
    target = torch.as_tensor(y)
    splits = {
        n: TensorSplit(inputs[i], target[i])
        for n, i in (("train", train), ("val", val), ("test", test))
    }
    if spec.target_kind == "continuous":
        values = target[train].double()
        std = values.std(dim=0, unbiased=False).clamp_min(1e-12)
        spec = DataSpec(
            spec.input_shape,
            spec.target_kind,
            target_names=spec.target_names,
            target_mean=tuple(values.mean(dim=0).tolist()),
            target_std=tuple(std.tolist()),
        )
    summary = {"source": "arrays", "sizes": {n: len(s) for n, s in splits.items()}}
    return DataBundle(**splits, spec=spec, featurizer=None, summary=summary)


class _KeepBest(Callback):
    """Keep the weights of the epoch with the lowest validation loss, in memory."""

    def __init__(self) -> None:
        self.best, self.state = float("inf"), None

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if logs.get("val/loss", float("inf")) < self.best:
            self.best = logs["val/loss"]
            self.state = copy.deepcopy(trainer.model.state_dict())


class _Estimator(BaseEstimator):
    """What Classifier and Regressor share; subclasses say how targets are encoded."""

    _task: str
    _target_kind: str

    def __init__(
        self,
        *,
        model: str = "mlp",
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.0,
        model_params: dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 50,
        schedule: str = "none",
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int = 10,
        device: str = "cpu",
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.dropout = dropout
        self.model_params = model_params
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.schedule = schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.random_state = random_state

    def _config(self) -> Any:
        from torchlab.config import validate

        model = {"name": self.model, **(self.model_params or {})}
        if self.model == "mlp":
            model = {"hidden": list(self.hidden), "dropout": self.dropout, **model}
        stop = {"patience": self.patience} if self.early_stopping else None
        val = self.validation_fraction if self.early_stopping else 0.0
        return validate(
            {
                "name": type(self).__name__.lower(),
                "seed": self.random_state,
                "data": {
                    "source": {"name": "arrays"},
                    "batch_size": self.batch_size,
                    "split": {"val": val, "test": 0.0},
                    "num_workers": 0,
                    "pin_memory": False,
                },
                "model": model,
                "task": self._task,
                "optim": {"name": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay},
                "schedule": self.schedule,
                "trainer": {
                    "max_epochs": self.max_epochs,
                    "device": self.device,
                    "progress": "none",
                    "early_stopping": stop,
                    "monitor": "val/loss" if self.early_stopping else "train/loss",
                },
            }
        )

    def _fit(self, x: np.ndarray, y: np.ndarray, spec: DataSpec) -> _Estimator:
        from torchlab.engine.experiment import build_experiment, loaders
        from torchlab.training.callbacks import EarlyStopping
        from torchlab.training.loop import Trainer
        from torchlab.training.optim import build_optimizer
        from torchlab.training.schedules import build_schedule

        config = self._config()
        split = config.data.split
        context = SourceContext(
            split.val, split.test, split.stratify, config.seed, spec.target_kind
        )
        experiment = build_experiment(config, bundle=arrays_bundle(x, y, spec, context))
        data = loaders(experiment)
        optimizer = build_optimizer(config.optim, experiment.model)
        steps = len(data["train"])
        schedule = build_schedule(config.schedule, optimizer, steps, config.trainer.max_epochs)
        keep = _KeepBest()
        callbacks: list[Callback] = []
        if "val" in data:
            callbacks = [EarlyStopping(monitor="val/loss", patience=self.patience), keep]
        trainer = Trainer(
            config.trainer,
            model=experiment.model,
            task=experiment.task,
            optimizer=optimizer,
            schedule=schedule,
            train_loader=data["train"],
            val_loader=data.get("val"),
            device=experiment.device,
            callbacks=callbacks,
        )
        trainer.fit()
        if keep.state is not None:
            experiment.model.load_state_dict(keep.state)
        # Predictions run in float64 on the CPU: float32 kernels block sums by batch size, so
        # a row's prediction would change with the rows beside it (scikit-learn checks it).
        self.module_ = experiment.model.eval().to("cpu", torch.float64)
        self.task_ = experiment.task
        self.n_iter_ = trainer.state.epoch
        return self

    def _outputs(self, x: Any) -> torch.Tensor:
        check_is_fitted(self, "module_")
        x = validate_data(self, x, reset=False, dtype=np.float32)
        inputs = torch.as_tensor(x, dtype=torch.float64)
        with torch.inference_mode():
            chunks = [self.module_(c) for c in inputs.split(4096)]
        return torch.cat(chunks) if chunks else torch.zeros(0)


class Classifier(ClassifierMixin, _Estimator):
    """A torchlab network as a scikit-learn classifier (softmax over the classes of ``y``).

    Args:
        model: A registered model (``mlp``) or ``package.module:builder``.
        hidden, dropout: The ``mlp``'s layer widths and dropout (ignored by other models).
        model_params: More keyword arguments of the model's builder.
        optimizer, lr, weight_decay, schedule: As in a config's ``optim`` and ``schedule``.
        batch_size, max_epochs: Training length.
        early_stopping: Hold out ``validation_fraction`` of the rows and stop after
            ``patience`` epochs without a lower validation loss (best weights kept).
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        random_state: Seed of weights, data order and split; equal seeds train equal models.
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> Classifier:
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"Classifier needs samples of at least 2 classes in y; received one class: "
                f"{self.classes_.tolist()}."
            )
        spec = DataSpec(
            (X.shape[1],), "categorical", class_names=tuple(str(c) for c in self.classes_)
        )
        return self._fit(X, encoded.astype(np.int64), spec)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(n_samples, n_classes)`` in the order of ``classes_``."""
        return self._outputs(X).softmax(dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "module_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class Regressor(RegressorMixin, _Estimator):
    """A torchlab network as a scikit-learn regressor (one or several targets).

    Takes the same arguments as :class:`Classifier`.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> Regressor:
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float32)
        self._single_output = y.ndim == 1
        target = y.reshape(len(y), -1)
        names = tuple(f"y{i}" for i in range(target.shape[1]))
        spec = DataSpec((X.shape[1],), "continuous", target_names=names)
        return self._fit(X, target, spec)

    def predict(self, X: Any) -> np.ndarray:
        out = self._outputs(X).numpy()
        return out.ravel() if self._single_output else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
