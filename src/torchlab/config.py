"""Typed, frozen configuration of a run; YAML is only its serialisation.

A run is described by sections: ``data``, ``model``, ``task``, ``optim``, ``schedule``,
``trainer`` and ``baseline``. Sections that name a registered component (``model``, the
data ``source``, the ``loss``, ...) hold a ``name`` plus that builder's own keyword
arguments, which are checked against the builder's signature before anything runs.

Unknown keys and wrong types are :class:`~torchlab.errors.ConfigError` naming the full
key path, what was expected and what was received.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pydantic
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from torchlab import trust
from torchlab.errors import ConfigError
from torchlab.kinds import KindConfig, kind_of
from torchlab.schema_errors import closest, raise_config_error


class Section(BaseModel):
    """A fixed set of keys: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(BaseModel):
    """A registered component: ``name`` plus the builder's keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The builder's keyword arguments (every key but the declared fields)."""
        return dict(self.model_extra or {})


def _component(value: Any) -> Any:
    """Let ``loss: focal`` stand for ``loss: {name: focal}``."""
    return {"name": value} if isinstance(value, str) else value


class FoldConfig(Section):
    """One fold of k-fold cross-validation as the test part (``torchlab cv`` writes it).

    The samples are dealt into ``folds`` folds, shuffled by the split's seed and ``repeat``
    (stratified for classification); fold ``index`` is the test part, and the validation
    part is cut from the other folds. ``group`` names a column of the source's table whose
    values never span two folds (e.g. a patient id).
    """

    folds: int = Field(ge=2)
    index: int = Field(ge=0)
    repeat: int = Field(0, ge=0)
    group: str | None = None

    @model_validator(mode="after")
    def _index_in_range(self) -> FoldConfig:
        if self.index >= self.folds:
            raise ValueError(f"index must be below folds ({self.folds}); received {self.index}")
        return self


class SplitConfig(Section):
    """Fractions held out for validation and test; stratified for classification."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    stratify: bool = True
    # The seed that deals samples into splits; None: the run's seed. Fixed, it keeps the
    # split while ``seed`` varies the model's initialisation and data order.
    seed: int | None = Field(None, ge=0, le=2**32 - 1, strict=True)
    # A k-fold test part instead of the ``test`` fraction (``torchlab cv``).
    fold: FoldConfig | None = None


class DataConfig(Section):
    source: Component
    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = 64
    eval_batch_size: int | None = Field(None, gt=0)
    split: SplitConfig = SplitConfig()
    num_workers: int | Literal["auto"] = "auto"
    pin_memory: bool | Literal["auto"] = "auto"
    drop_last: bool = False

    _source = field_validator("source", mode="before")(_component)


class IntervalsConfig(Section):
    """Split-conformal prediction intervals of a regression run, fitted on the validation
    split after training (``task.intervals: {coverage: 0.9}``)."""

    coverage: float = Field(0.9, gt=0.0, lt=1.0)


class TaskConfig(Component):
    loss: Component | None = None
    metrics: list[str] | None = None
    # After training, a classifier's probabilities can be recalibrated on the validation
    # split: "temperature" fits one temperature (Guo et al. 2017). See engine/calibration.py.
    calibrate: Literal["none", "temperature"] = "none"
    intervals: IntervalsConfig | None = None

    _loss = field_validator("loss", mode="before")(_component)


class OptimConfig(Component):
    name: str = "adamw"
    # "auto": a learning-rate range test picks it before training (torchlab.training.lr_finder).
    lr: float | Literal["auto"] = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    decay_norm_and_bias: bool = False

    @field_validator("lr", mode="before")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not number > 0 or isinstance(value, bool):
            raise ValueError("expected a positive number or 'auto'")
        return number


class ScheduleConfig(Component):
    name: str = "none"


class EarlyStoppingConfig(Section):
    patience: int = Field(10, gt=0)
    min_delta: float = Field(0.0, ge=0)


# ``register`` is the word MLflow's registry uses; pydantic warns that it shadows the ABC
# method of the same name on the class, which no config calls.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class MlflowConfig(Section):
        """Where a run is tracked in MLflow (``docs/tracking.md``).

        ``uri``: the tracking server or store (None: ``MLFLOW_TRACKING_URI``, else
        ``sqlite:///mlflow.db`` in the working directory); ``experiment``: its experiment
        (None: the recipe's name); ``register``: a model-registry name for the trained model;
        ``log_model``: log the trained model as an MLflow model."""

        uri: str | None = None
        experiment: str | None = None
        register: str | None = None
        log_model: bool = True


class TrackingConfig(Section):
    """Experiment trackers a run reports to, beside its own folder (the source of truth)."""

    mlflow: MlflowConfig | None = None


class TrainerConfig(Section):
    max_epochs: int = Field(10, gt=0)
    device: str = "auto"
    precision: Literal["32", "bf16", "16-mixed"] = "32"
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max", "auto"] = "auto"
    early_stopping: EarlyStoppingConfig | None = None
    grad_clip_norm: float | None = Field(None, gt=0)
    grad_clip_value: float | None = Field(None, gt=0)
    accumulate_grad_batches: int = Field(1, gt=0)
    deterministic: bool = False
    log_every_n_steps: int = Field(50, gt=0)
    checkpoint_every_n_steps: int | None = Field(None, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    data_parallel: bool = False
    compile: bool = False
    channels_last: bool = False
    distributed_timeout_s: float = Field(300.0, gt=0)
    callbacks: list[Component] = []
    threads: int | None = Field(None, gt=0)  # torch's CPU threads; None: one per core
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    _callbacks = field_validator("callbacks", mode="before")(
        lambda value: [_component(v) for v in value] if isinstance(value, list) else value
    )


class ParamSpace(Section):
    """One searched setting of a ``tune.space``: a float, an int or a categorical choice.

    ``when`` makes parameters conditional on a categorical's choice, e.g. the momentum of
    ``sgd`` only when ``optim.name`` is ``sgd``: ``when: {sgd: {optim.momentum: {...}}}``.
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    when: dict[str, dict[str, ParamSpace]] = {}

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            unknown = set(self.when) - {str(c) for c in self.choices}
            if unknown:
                raise ValueError(
                    f"'when' names {sorted(unknown)}, which are not among the choices {self.choices}"
                )
            return self
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs 'low' <= 'high'")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs 'low' > 0")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log: true' cannot be combined")
        if self.when or self.choices is not None:
            raise ValueError("'choices' and 'when' belong to categorical parameters only")
        return self


class PrunerConfig(Section):
    """Stops unpromising trials early from their per-epoch validation metric."""

    name: Literal["none", "median", "hyperband"] = "median"
    startup_trials: int = Field(5, ge=0)  # median: trials that are never pruned
    warmup_epochs: int = Field(2, ge=0)  # median: epochs of each trial that are never pruned
    min_epochs: int = Field(1, gt=0)  # hyperband: the smallest budget of a bracket
    reduction_factor: int = Field(3, gt=1)  # hyperband


class TuneConfig(Section):
    """An Optuna study over this config: ``torchlab tune CONFIG``."""

    space: dict[str, ParamSpace] = Field(min_length=1)
    metric: str | None = None  # default: trainer.monitor
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: PrunerConfig = PrunerConfig()
    trials: int = Field(20, gt=0)
    timeout_minutes: float | None = Field(None, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    grace_seconds: float = Field(60.0, gt=0)  # a trial silent this long is failed and retried
    max_retries: int = Field(1, ge=0)
    # Settings tried first, e.g. the recipe's own ({optim.lr: 0.003}), so a study starts
    # from a known point; keys are tune.space keys.
    enqueue: list[dict[str, Any]] = []

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) or value is None else value


class ReportConfig(Section):
    """What a run's report adds to its standard sections."""

    # Table columns whose values split the test rows into slices, each reported with its
    # count and metrics (``report: {slices: [city]}``).
    slices: list[str] = []


# Every random generator torchlab seeds (Python, NumPy, torch, scikit-learn) takes this range.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, strict=True)]

PLAIN_NAME = re.compile(r"[\w.-]+")


def _plain_name(value: str) -> str:
    """A run's ``name`` is one folder under ``output_dir``: nothing that leads elsewhere."""
    if not PLAIN_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            "expected a plain folder name (letters, digits, '-', '_', '.'; no '..' or '/'), "
            "since runs go to <output_dir>/<name>/"
        )
    return value


RunName = Annotated[str, AfterValidator(_plain_name)]


def name_of(recipe: str | Path) -> str:
    """The default ``name``: the recipe file's stem, with what a name cannot hold as '-'."""
    return re.sub(r"[^\w.-]+", "-", Path(str(recipe)).stem).strip("-.") or "run"


# Component settings that name a file or folder on this machine. A relative one is read
# from the working directory, so the resolved config holds it absolute: a run then works
# from any folder. (Names inside such a folder, e.g. a COCO root's ``annotations``, stay
# relative to it.)
LOCAL_PATH_KEYS = ("path", "root", "csv", "weights", "weights_backbone", "vectors")


@dataclass(frozen=True)
class Layering:
    """How layers (child configs, overrides) combine for one kind's configs.

    Attributes:
        components: Sections that name a component, by the key that names it. A layer that
            names a different component replaces the section: the parent's settings belong
            to the component it named. One that names the same component, or none, refines it.
        identity: The keys that say which data or environment a section points at.
        tied: Settings written for the parent's data or environment, wherever they sit: a
            layer that points the config elsewhere drops them from the parent, so the
            defaults (or the layer's own values) apply.
    """

    components: dict[str, str]
    identity: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tied: dict[str, tuple[str, ...]] = field(default_factory=dict)


class RunConfig(Section):
    """Everything that defines a supervised run. Saved as ``config.yaml`` in its run directory."""

    KIND: ClassVar[str] = "supervised"  # its entry in torchlab.registry.RUN_KINDS
    LAYERING: ClassVar[Layering] = Layering(
        components={
            "data.source": "name",
            "model": "name",
            "task": "name",
            "task.loss": "name",
            "optim": "name",
            "schedule": "name",
            "baseline": "name",
        },
        identity={"data.source": ("name", *LOCAL_PATH_KEYS)},
        # Date bounds of one series mean nothing on another (they gave a split with no
        # training steps), and a seasonal period is one series' too.
        tied={
            "data.source": (
                "data.source.split.val_start",
                "data.source.split.test_start",
                "data.source.split.test_end",
                "baseline.season",
            )
        },
    )

    name: RunName
    seed: Seed = 0
    output_dir: str = "runs"
    data: DataConfig
    model: Component
    task: TaskConfig
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    trainer: TrainerConfig = TrainerConfig()
    baseline: Component | None = None
    tune: TuneConfig | None = None
    report: ReportConfig = ReportConfig()

    _model = field_validator("model", "task", "optim", "schedule", "baseline", mode="before")(
        _component
    )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def components(self) -> list[tuple[Any, Component, str, set[str]]]:
        """``(registry, component, where, declared keys)`` of each component it names."""
        from torchlab import registry as r

        sections = [
            (r.DATASETS, self.data.source, "data.source", set()),
            (r.MODELS, self.model, "model", set()),
            (r.TASKS, self.task, "task", set(TaskConfig.model_fields) - {"name"}),
            (r.OPTIMIZERS, self.optim, "optim", {"lr", "weight_decay", "decay_norm_and_bias"}),
            (r.SCHEDULERS, self.schedule, "schedule", set()),
            (r.BASELINES, self.baseline, "baseline", set()),
            (r.LOSSES, self.task.loss, "task.loss", set()),
        ]
        sections += [
            (r.CALLBACKS, c, f"trainer.callbacks.{i}", set())
            for i, c in enumerate(self.trainer.callbacks)
        ]
        return [section for section in sections if section[1] is not None]


# --- reading recipes and YAML files -------------------------------------------------------

RECIPES = resources.files("torchlab") / "recipes"


def recipe_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in RECIPES.iterdir() if p.name.endswith(".yaml")
    )


def recipe_summary(name: str) -> str:
    """The first comment line of a built-in recipe: what it trains."""
    first = (RECIPES / f"{name}.yaml").read_text().splitlines()[0]
    return first.lstrip("# ").strip()


def load_config(recipe: str | Path, overrides: list[str] | dict[str, Any] = ()) -> KindConfig:
    """Read a built-in recipe or a YAML file, apply dotted overrides and validate.

    The config is the user's own, so the code it names (``model.name: mymodel:Net``) may be
    imported, from the current directory or the config file's (see :mod:`torchlab.trust`).

    Args:
        recipe: A built-in recipe name (``torchlab recipes``) or a path to a YAML file.
        overrides: ``["optim.lr=1e-3", ...]`` or ``{"optim.lr": 1e-3}``.
    """
    path = Path(str(recipe))
    with trust.users_config(path.parent if path.is_file() else None):
        raw = apply_overrides(read_recipe(recipe), overrides)
        return validate(with_absolute_paths(raw))


def with_absolute_paths(raw: Any) -> Any:
    """``raw`` with the relative local paths of its data source and model made absolute
    (values that are no existing path, such as ``weights: imagenet``, are left alone)."""
    if not isinstance(raw, dict):
        return raw
    for section in (
        raw.get("data", {}).get("source") if isinstance(raw.get("data"), dict) else None,
        raw.get("model"),
    ):
        if not isinstance(section, dict):
            continue
        for key in LOCAL_PATH_KEYS:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                path = Path(value).expanduser()
                if path.exists():
                    section[key] = str(path.resolve())
    return raw


def local_paths(config: Any) -> list[str]:
    """The absolute data paths a config's data source reads (what a run fingerprints)."""
    params = config.data.source.params if hasattr(config, "data") else {}
    return [
        v
        for k, v in params.items()
        if k in LOCAL_PATH_KEYS and isinstance(v, str) and Path(v).is_absolute()
    ]


def validate(raw: dict[str, Any]) -> KindConfig:
    """The typed config of ``raw``, as its run kind validates it (:mod:`torchlab.kinds`):
    ``RunConfig`` for supervised training, ``RLConfig`` for reinforcement learning.

    A mistake the registry index can tell is raised first, before any builder's module is
    imported (:func:`check_with_index`); the kind's full check still decides.
    """
    check_early(raw)
    return kind_of(raw).validate(raw)


def check_early(raw: Any) -> bool:
    """Raise the error :func:`validate` would raise for ``raw``, if the registry index can
    tell it (:func:`check_with_index`); return whether every component could be checked."""
    return check_with_index(raw, kind_of(raw).schema)


def validate_supervised(raw: dict[str, Any]) -> RunConfig:
    """A raw mapping as a :class:`RunConfig`: its sections, then each component against its
    builder."""
    config = validated(RunConfig, raw)
    check_components(config)
    return config


def validated(schema: type[BaseModel], raw: Any) -> Any:
    """``schema.model_validate(raw)``, its first problem raised as one line."""
    try:
        return schema.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise_config_error(exc, schema)


def check_with_index(raw: Any, schema: type[BaseModel]) -> bool:
    """Raise the error :func:`validate` would raise for ``raw``, if the registry index can tell
    it without importing any builder; return whether every component could be checked.

    Importing the leaves (torch, torchvision, transformers, ...) takes seconds, and a config
    with a typo should not wait for them (see :mod:`torchlab.precheck`).
    """
    config = validated(schema, raw)
    for registry, component, where, declared in config.components():
        if not registry.check_early(component.name, component.params, where, {"name", *declared}):
            return False  # the full check decides this one, and so whatever comes after it
    return True


def read_recipe(recipe: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a recipe, with ``extends: OTHER`` laid underneath (:func:`lay_over`).

    A config without ``name`` is named after its file, also when it extends another.
    """
    text, label = _recipe_text(recipe)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{label} is not valid YAML ({yaml_problem(exc)}); fix the syntax there."
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} must hold a mapping of sections (data:, model:, ...).")
    base = raw.pop("extends", None)
    if base is None:
        raw.setdefault("name", name_of(recipe))
        return raw
    base_path = Path(str(base))
    if (
        base_path.suffix in {".yaml", ".yml"}
        and not base_path.is_absolute()
        and Path(str(recipe)).is_file()
    ):
        base = Path(str(recipe)).parent / base_path  # relative to the file that names it
    seen = (*_seen, _identity(recipe))
    if _identity(base) in seen:
        raise ConfigError(
            f"{label} extends '{base_path}', which leads back to it; break the cycle."
        )
    merged = read_recipe(base, seen)
    merged.pop("name", None)
    merged = lay_over(merged, raw)
    merged.setdefault("name", name_of(recipe))
    return merged


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, on one line: ``line 4, column 1: expected ',' or '}', but got ...``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _identity(recipe: str | Path) -> str:
    """One spelling per file (``a/../b.yaml`` is ``b.yaml``), so a cycle is seen at once."""
    path = Path(str(recipe))
    return str(path.resolve()) if path.suffix in {".yaml", ".yml"} or path.exists() else str(recipe)


def _recipe_text(recipe: str | Path) -> tuple[str, str]:
    path = Path(recipe)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"Config file '{path}' does not exist; check the path.")
        return path.read_text(), f"Config file '{path}'"
    names = recipe_names()
    if str(recipe) in names:
        return (RECIPES / f"{recipe}.yaml").read_text(), f"Recipe '{recipe}'"
    hint = closest(str(recipe), names)
    hint = f" Did you mean '{hint}'?" if hint else ""
    raise ConfigError(
        f"'{recipe}' is neither a built-in recipe nor a YAML file.{hint} "
        f"Built-in recipes: {', '.join(names)}."
    )


@cache
def layering() -> Layering:
    """The layering rules of every run kind's configs together (layers combine before the
    kind of the result is known)."""
    from torchlab.registry import RUN_KINDS

    rules = [RUN_KINDS.get(name).builder.schema.LAYERING for name in RUN_KINDS.names()]
    return Layering(
        {k: v for rule in rules for k, v in rule.components.items()},
        {k: v for rule in rules for k, v in rule.identity.items()},
        {k: v for rule in rules for k, v in rule.tied.items()},
    )


def lay_over(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """A child config or an override ``layer`` laid over ``base``.

    Mappings merge key by key, with these exceptions: a section naming another component
    replaces the one below (:attr:`Layering.components`); a layer pointing at other data or
    another environment first drops the parent's settings tied to them (``tied``); ``{}``
    replaces a mapping (``env.kwargs: {}`` clears it); ``null`` removes an inherited key,
    so its default applies.
    """
    base = copy.deepcopy(base)
    rules = layering()
    for section, keys in rules.tied.items():
        if _points_elsewhere(_get(base, section), _get(layer, section), rules.identity[section]):
            for key in keys:
                _remove(base, key)
    return deep_merge(base, layer)


def deep_merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``update`` laid over ``base`` key by key (see :func:`lay_over` for the exceptions)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}.{key}" if where else key
        current = out.get(key)
        if value is None:
            out.pop(key, None)
            continue
        components = layering().components
        if path in components and (isinstance(value, dict) or isinstance(current, dict)):
            current, value = _as_section(current, path), _as_section(value, path)
            if _switches(current, value, components[path]):
                out[key] = copy.deepcopy(value)
                continue
        if isinstance(value, dict) and value and isinstance(current, dict):
            out[key] = deep_merge(current, value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_section(value: Any, path: str) -> Any:
    """The ``model: mlp`` shorthand as the mapping it stands for."""
    return {layering().components[path]: value} if isinstance(value, str) else value


def _switches(current: Any, value: Any, naming: str) -> bool:
    return (
        isinstance(current, dict)
        and isinstance(value, dict)
        and naming in value
        and naming in current
        and value[naming] != current[naming]
    )


def _points_elsewhere(current: Any, layer: Any, identity: tuple[str, ...]) -> bool:
    """Whether a layer's section names other data or another environment than ``current``."""
    if not isinstance(current, dict) or not isinstance(layer, dict):
        return False
    return any(key in layer and layer[key] != current.get(key) for key in identity)


def _get(raw: Any, path: str) -> Any:
    """The section at a dotted ``path`` of a raw config, shorthand expanded; None if absent."""
    node = raw
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return _as_section(node, path) if path in layering().components else node


def _remove(raw: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """``raw`` with dotted overrides set. Those that name another component (``model.name=``,
    ``data.source=csv``) or other data (``data.source.path=``, ``env.id=``) go first, laid
    over as a child config would be, so ``model.width=3 model.name=x`` and ``model.name=x
    model.width=3`` both give ``x`` with width 3, and nothing of the recipe's own model."""
    items = list(
        overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    )
    switches = [_switches_layer(k) and v is not None for k, v in items]  # null: in order
    components = layering().components
    for key, value in [item for item, first in zip(items, switches, strict=True) if first]:
        path = key if key in components else key.rpartition(".")[0]
        update = value if key in components else {key.rpartition(".")[2]: value}
        *parents, last = path.split(".")
        update = {last: update}
        for part in reversed(parents):
            update = {part: update}
        raw = lay_over(raw, update)
    for (key, value), first in zip(items, switches, strict=True):
        if not first:
            set_dotted(raw, key, value)
    return raw


def _switches_layer(key: str) -> bool:
    """Whether an override names a component, or the data or environment, as a whole."""
    path, _, last = key.rpartition(".")
    rules = layering()
    return (
        key in rules.components
        or rules.components.get(path) == last
        or last in rules.identity.get(path, ())
    )


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", 0.001)``; values are read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"Override '{text}' is not of the form key.path=value; write e.g. optim.lr=0.001."
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str):  # `source: digits` shorthand being refined
            child = {"name": child}
        elif not isinstance(child, dict):
            if child is not None:
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"Cannot set '{key}': '{where}' holds {child!r}, not a section.")
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def config_for_resume(
    saved: Any, recipe: str | Path | None, overrides: Any, may_change: set[str], where: Path
) -> Any:
    """The config that resumes a saved run: the recipe named again, or the saved config with
    ``overrides``; raises unless only keys in ``may_change`` differ from the saved one."""
    if recipe is not None:
        wanted = load_config(recipe, overrides)
    else:
        wanted = validate(apply_overrides(saved.model_dump(mode="json"), overrides))
    differ = set(_flatten(saved.model_dump())) ^ set(_flatten(wanted.model_dump()))
    changed = sorted({key for key, _ in differ} - may_change)
    if changed:
        raise ConfigError(
            f"Cannot resume '{where}' with a different config (changed: {', '.join(changed)}); "
            f"only {', '.join(sorted(may_change))} may change. Start a new run instead."
        )
    return wanted


def _flatten(data: Any, prefix: str = "") -> set[tuple[str, str]]:
    """``{"a": {"b": 1}}`` -> ``{("a.b", "1")}``: every leaf key with its value."""
    if isinstance(data, dict):
        if not data:
            return {(prefix[:-1], "{}")}
        return set().union(*(_flatten(v, f"{prefix}{k}.") for k, v in data.items()))
    return {(prefix[:-1], repr(data))}


# --- components and error messages --------------------------------------------------------


def check_components(config: Any) -> None:
    """Validate each component's own keys against its registered builder."""
    for registry, component, where, declared in config.components():
        entry = registry.get(component.name, where=f"{where}.name")
        entry.validate(component.params, where, {"name", *declared})


# --- the resolved config, every default written out ----------------------------------------


def show(recipe: str | Path, overrides: list[str] | dict[str, Any] = ()) -> str:
    """The YAML of a config as a run would use it, every default written out, the defaults of
    each component's builder too (``torchlab show``): a full recipe to copy and edit."""
    path = Path(str(recipe))
    with trust.users_config(path.parent if path.is_file() else None):
        config = with_defaults(load_config(recipe, overrides))
        return yaml.dump(config, Dumper=_ShowDumper, sort_keys=False)


class _ShowDumper(yaml.SafeDumper):
    """Block style, except lists of plain values on one line (``hidden: [64, 32]``)."""


_ShowDumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=not any(isinstance(v, (list, dict)) for v in data)
    ),
)


def with_defaults(config: Any) -> dict[str, Any]:
    """``config`` as a mapping in which every component also holds its builder's defaults."""
    raw = config.model_dump(mode="json")
    for registry, component, where, _ in config.components():
        schema = registry.get(component.name).schema
        settings = schema.model_validate(component.params).model_dump(mode="json")
        *parents, last = where.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        section = node[int(last)] if isinstance(node, list) else node[last]
        own = {key: value for key, value in section.items() if key not in settings}
        section.clear()
        section.update({**own, **settings})
    return raw
