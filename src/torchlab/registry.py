"""One registry idiom for every family of components.

A builder takes runtime context (the data spec, the optimizer, ...) as positional-only
arguments and its settings as keyword-only arguments; the keyword-only part of its signature
is the schema of its config section, so ``model: {name: mlp, hidden: [64, 64]}`` is checked against
``mlp(*, hidden: list[int], ...)`` before anything is built. Built-in leaves are imported
lazily: a lookup imports only the module that registers the name, found in the index
(:mod:`torchlab.registry_index`), which also lets a config be checked before any of them is
imported (:meth:`Registry.check_early`).

Users add their own with the decorator (``@MODELS.register("my-net")``) or by naming
``package.module:attr`` in the config instead of a registered name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, get_type_hints

import pydantic

from torchlab import registry_index
from torchlab.errors import ConfigError, RegistryError
from torchlab.schema_errors import closest, raise_config_error
from torchlab.trust import import_attr


@dataclass(frozen=True)
class Entry:
    """A registered builder and the pydantic schema of its keyword arguments."""

    name: str
    builder: Callable[..., Any]
    # What was registered or imported, when ``builder`` adapts it (a user's nn.Module class).
    source: Any = None

    @cached_property
    def schema(self) -> type[pydantic.BaseModel]:
        return schema_of(self.builder)

    def validate(
        self, params: dict[str, Any], where: str, declared: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Check ``params`` against the builder's signature; errors name ``where.key``.

        ``declared`` are the keys the config section itself defines beside the builder's
        (``name``, ``optim.lr``, ...): valid there, so offered in an unknown key's hint.
        """
        return validate_params(self.schema, params, where, declared, self.name)

    def build(self, params: dict[str, Any], where: str, *context: Any) -> Any:
        """Validate ``params`` and call the builder with runtime ``context`` first."""
        return self.builder(*context, **self.validate(params, where))


def validate_params(
    schema: type[pydantic.BaseModel],
    params: dict[str, Any],
    where: str,
    declared: Iterable[str],
    owner: str,
) -> dict[str, Any]:
    """The settings ``params`` checked against ``schema``: those given, validated."""
    try:
        model = schema.model_validate(params)
    except pydantic.ValidationError as exc:
        raise_config_error(exc, schema, prefix=where, declared=declared, owner=owner)
    values = {key: getattr(model, key) for key in model.model_fields_set}
    for key, value in values.items():
        check_convention(key, params.get(key, value), f"{where}.{key}")
    return values


# Settings whose name fixes their meaning, checked alike in every builder (a user's too).
PROBABILITIES = {"dropout", "attention_dropout", "embedding_dropout", "p"}
SIZES = {
    "hidden", "hidden_size", "channels", "layers", "num_layers", "heads", "num_heads", "width",
    "widths", "d_model", "feedforward", "embedding_dim", "dim", "kernel_size", "filters",
}  # fmt: skip


def check_convention(key: str, value: Any, where: str) -> None:
    """A ``dropout`` is a probability in [0, 1); sizes (``hidden``, ``heads``, ...) are positive."""
    numbers = value if isinstance(value, (list, tuple)) else [value]
    numbers = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if key in PROBABILITIES and not all(0 <= v < 1 for v in numbers):
        raise ConfigError(
            f"Config key '{where}' is a probability, from 0 up to but not including 1; "
            f"received {value!r}."
        )
    if key in SIZES and not all(v > 0 for v in numbers):
        raise ConfigError(f"Config key '{where}' must hold positive sizes; received {value!r}.")


def schema_of(builder: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """A frozen pydantic model of a builder's keyword-only arguments (unknown keys forbidden)."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    hints = get_type_hints(target)
    fields: dict[str, Any] = {}
    for param in inspect.signature(builder).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.name.startswith("_"):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    return params_model(builder.__name__, fields)


def variant(builder: Callable[..., Any], *data: Any) -> Callable[..., Any]:
    """``builder`` with its leading arguments bound to one variant's ``data``, to register
    under that variant's name (timm's idiom: variants are data, not copied signatures)::

        MODELS.register("gru")(variant(rnn_classifier, "gru"))

    The result keeps the builder's name, module, docstring and the rest of its signature:
    its keyword-only settings, their types and defaults are each variant's config schema.
    """
    bound = functools.partial(builder, *data)
    signature = inspect.signature(bound)  # the builder's, less the bound arguments
    functools.update_wrapper(bound, builder)  # type hints resolve in the builder's module
    bound.__signature__ = signature  # type: ignore[attr-defined]
    return bound


def params_model(name: str, fields: dict[str, Any]) -> type[pydantic.BaseModel]:
    config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    return pydantic.create_model(f"{name}_params", __config__=config, **fields)


def indexed_schema(settings: dict[str, Any]) -> tuple[type[pydantic.BaseModel], set[str]]:
    """The schema of a builder as its index record describes it, and the settings it holds
    exactly; the others (types the index does not write out) accept any value here."""
    fields: dict[str, Any] = {}
    for key, record in settings.items():
        annotation = Any if record["type"] is None else registry_index.parse_type(record["type"])
        fields[key] = (annotation, ... if record.get("required") else None)
    exact = {key for key, record in settings.items() if record["type"] is not None}
    return params_model("indexed", fields), exact


class Registry:
    """Name -> builder for one family (models, losses, optimizers, ...).

    Args:
        kind: What the family is called in messages ("model", "loss", ...).
        modules: Built-in modules that register into this registry, imported on first use.
        adapt: ``module:function`` of torchlab's that turns what a user registers or names
            into a builder of this family's form, ``adapt(obj, name) -> builder``.
    """

    def __init__(self, kind: str, modules: Iterable[str] = (), adapt: str | None = None) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        self._adapt = adapt
        self._entries: dict[str, Entry] = {}
        self._origins: dict[str, str] = {}  # name -> the module that registered it
        self._loaded = False

    def _entry(self, name: str, obj: Any) -> Entry:
        if self._adapt is None:
            return Entry(name, obj, obj)
        module, _, function = self._adapt.partition(":")
        return Entry(name, getattr(importlib.import_module(module), function)(obj, name), obj)

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator that registers a builder under ``name``; a duplicate name raises."""
        origin = sys._getframe(1).f_globals.get("__name__", "")  # what the index records

        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name not in self._entries and origin.partition(".")[0] != "torchlab":
                self._import_builtin(name)  # a built-in of that name comes first: a clash shows now
            if name in self._entries and self._entries[name].source is not builder:
                raise RegistryError(
                    f"A {self.kind} named '{name}' is already registered; choose another name."
                )
            self._entries[name] = self._entry(name, builder)
            self._origins[name] = origin
            return builder

        return decorate

    def names(self) -> list[str]:
        indexed = self._indexed()
        if indexed is None:
            self._load_builtins()
        return sorted({*self._entries, *(indexed or ())})

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self.names()

    def get(self, name: str, where: str | None = None) -> Entry:
        """The entry for ``name``: a registered name or ``package.module:attr``."""
        if name not in self._entries:
            self._import_builtin(name)
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return self._entry(name, import_attr(name, where or self.kind))
        self._load_builtins()  # the index may lag behind a leaf just added
        if name in self._entries:
            return self._entries[name]
        raise self._unknown(name, where)

    def check_early(
        self, name: str, params: dict[str, Any], where: str, declared: Iterable[str] = ()
    ) -> bool:
        """Check a component as ``get(name).validate(params, ...)`` would, from the index,
        without importing the module that registers ``name``.

        Code named as ``module:attr`` is imported, under the trust rules, and checked in
        full: it costs its own imports, not the leaves'. Raises the error the full check
        raises. Returns False, having checked nothing, where only the builder can tell: a
        family without an index, or a setting given whose type the index does not write out.
        """
        if name in self._entries or ":" in name:  # imported already, or the user's own code
            self.get(name, f"{where}.name").validate(params, where, declared)
            return True
        indexed = self._indexed()
        if indexed is None:
            return False
        if name not in indexed:
            raise self._unknown(name, f"{where}.name")
        schema, exact = indexed_schema(indexed[name]["settings"])
        if any(key in schema.model_fields and key not in exact for key in params):
            return False
        validate_params(schema, params, where, declared, name)
        return True

    def build(self, component: Any, where: str, *context: Any) -> Any:
        """Build a config :class:`~torchlab.config.Component` (``name`` plus its keys)."""
        return self.get(component.name, f"{where}.name").build(component.params, where, *context)

    def describe(self) -> dict[str, Any]:
        """This family's record in the index: each built-in name's module and settings."""
        self._load_builtins()
        packages = {module.removesuffix(".*") for module in self._modules}
        builtin = packages | {name for module in self._modules for name in expand_modules(module)}
        names = {
            name: {"module": self._origins[name], "settings": registry_index.settings(entry.schema)}
            for name, entry in sorted(self._entries.items())
            if self._origins.get(name) in builtin
        }
        return {"modules": list(self._modules), "names": names}

    def _indexed(self) -> dict[str, Any] | None:
        return registry_index.family(self.kind, self._modules)

    def _import_builtin(self, name: str) -> None:
        """Import the one module that registers ``name``, as the index says."""
        record = (self._indexed() or {}).get(name)
        if record is not None:
            importlib.import_module(record["module"])

    def _unknown(self, name: str, where: str | None) -> RegistryError:
        names = self.names()
        suggestion = closest(name, names)
        hint = f" Did you mean '{suggestion}'?" if suggestion else ""
        where = f" (at '{where}')" if where else ""
        return RegistryError(
            f"Unknown {self.kind} '{name}'{where}.{hint} "
            f"Choose one of: {', '.join(names)}, or name 'package.module:attr'."
        )

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                for name in expand_modules(module):
                    importlib.import_module(name)


def expand_modules(module: str) -> list[str]:
    """``package.*`` is every module below that package (so a new leaf file registers
    itself with no edit here); any other name is just that module."""
    if not module.endswith(".*"):
        return [module]
    package = importlib.import_module(module.removesuffix(".*"))
    found = pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    return sorted(info.name for info in found)


ACTIVATIONS = Registry("activation", ["torchlab.models.layers"])
MODELS = Registry("model", ["torchlab.models.*"], adapt="torchlab.models.adapt:as_model_builder")
DATASETS = Registry("dataset", ["torchlab.data.*"])
TASKS = Registry("task", ["torchlab.tasks.*"])
# Tasks register the losses and metrics only they use (Dice, pinball, mAP, ...).
LOSSES = Registry("loss", ["torchlab.training.losses", "torchlab.tasks.*"])
OPTIMIZERS = Registry("optimizer", ["torchlab.training.optim"])
SCHEDULERS = Registry("scheduler", ["torchlab.training.schedules"])
METRICS = Registry("metric", ["torchlab.tasks.*"])
CALLBACKS = Registry("callback", ["torchlab.training.*"])
BASELINES = Registry("baseline", ["torchlab.baselines.*"])
AGENTS = Registry("agent", ["torchlab.rl.agents.*"])
# Supervised training and reinforcement learning (see torchlab.kinds).
RUN_KINDS = Registry("run kind", ["torchlab.engine.supervised", "torchlab.rl.kind"])


def index() -> dict[str, Any]:
    """The index of every family here (imports every built-in leaf); see :mod:`registry_index`."""
    families = [value for value in globals().values() if isinstance(value, Registry)]
    return {family.kind: family.describe() for family in families}


def write_index() -> None:
    """Rewrite ``registry_index.json`` from the registries."""
    registry_index.INDEX_FILE.write_text(registry_index.dumps(index()))
    print(f"Wrote {registry_index.INDEX_FILE}", file=sys.stderr)


if __name__ == "__main__":  # the leaves register into torchlab.registry, not into this copy
    from torchlab.registry import write_index as write

    write()
