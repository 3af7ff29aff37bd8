"""A pydantic validation error as one line that names the config key and the fix.

Configs (:mod:`torchlab.config`) and component settings (:mod:`torchlab.registry`) are both
checked by pydantic; both report the first problem the same way.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any, NoReturn

import pydantic
from pydantic import BaseModel

from torchlab.errors import ConfigError


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option most like ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def raise_config_error(
    exc: pydantic.ValidationError,
    model: type[BaseModel],
    prefix: str = "",
    declared: Iterable[str] = (),
    owner: str | None = None,
) -> NoReturn:
    """Turn pydantic's report into one sentence naming the key path and the fix.

    ``declared`` are keys valid beside ``model``'s own at the top level (a component
    section's ``name``, ``optim.lr``), offered in the hint for an unknown key; ``owner`` names
    the component whose settings these are.
    """
    error = exc.errors()[0]
    loc = key_path(error["loc"])
    path = ".".join(filter(None, [prefix, *loc]))
    more = len({tuple(key_path(e["loc"])) for e in exc.errors()}) - 1
    tail = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, error["loc"][:-1])
        if len(error["loc"]) == 1:
            allowed = sorted({*allowed, *declared})
        hint = closest(loc[-1], allowed)
        hint = f" Did you mean '{'.'.join([*path.split('.')[:-1], hint])}'?" if hint else ""
        raise ConfigError(
            f"Unknown config key '{path}'.{hint} Allowed keys here: {', '.join(allowed) or 'none'}.{tail}"
        )
    if kind == "missing":
        by = f" by '{owner}'" if owner else ""
        raise ConfigError(
            f"Config key '{path}' is required{by}; add it to the recipe or override it.{tail}"
        )
    received = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    raise ConfigError(
        f"Config key '{path}' has a bad value: {message[0].lower()}{message[1:]}; "
        f"received {received!r}.{tail}"
    )


# Parts of pydantic's error locations that name a validator or a union member, not a key.
_NOT_KEYS = {"int", "float", "str", "bool", "list", "dict", "tuple", "none"}


def key_path(loc: tuple[Any, ...]) -> list[str]:
    """The config keys of an error location (``data.batch_size``, not ``...constrained-int``)."""
    parts = [str(p) for p in loc]
    return [p for p in parts if not ("-" in p or "[" in p or p.lower() in _NOT_KEYS)]


def allowed_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts, walking nested sections and components."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_in(field.annotation) if field else None
    return sorted(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
