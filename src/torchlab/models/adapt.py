"""A user's own ``nn.Module`` class (or function) as a model builder.

Built-in builders take ``(spec, num_outputs, /, *, settings...)``. A user's class need not:

    class TinyNet(nn.Module):
        def __init__(self, in_features: int, num_classes: int, hidden: int = 64): ...

Its constructor's parameters become the keys under ``model`` (schema, types and
did-you-mean from the signature), and those the data determines are filled in by name
(:data:`DATA_ARGUMENTS`) unless the config sets them. Regression outputs are rescaled to the
target's units, as the built-in heads do, so the model predicts standardised targets.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, get_type_hints

from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.layers import Rescale

_KIND = inspect.Parameter


def _features(spec: DataSpec) -> int | None:
    if spec.vocab_size:  # token ids: their count is a length, not features
        return None
    if spec.horizon:  # forecasting windows (lookback, width): features per step
        return spec.input_shape[-1]
    return math.prod(spec.input_shape)


def _channels(spec: DataSpec) -> int | None:
    return spec.input_shape[0] if len(spec.input_shape) == 3 else None


def _image_size(spec: DataSpec) -> int | tuple[int, int] | None:
    if len(spec.input_shape) != 3:
        return None
    height, width = spec.input_shape[1:]
    return height if height == width else (height, width)


def _length(spec: DataSpec) -> int | None:
    return spec.input_shape[0] if spec.vocab_size or spec.horizon else None


def _num_outputs(_: DataSpec, num_outputs: int) -> int:
    return num_outputs


# Constructor parameter names torchlab fills from the data, and how (None: this data does not
# determine it, so the parameter keeps its default or is set under ``model``).
_FROM_DATA: list[tuple[tuple[str, ...], Callable[[DataSpec, int], Any]]] = [
    (("in_features", "num_features", "n_features", "input_dim", "input_size", "in_dim"),
     lambda spec, _: _features(spec)),
    (("in_channels", "input_channels", "num_channels", "channels_in", "in_chans"),
     lambda spec, _: _channels(spec)),
    (("image_size", "img_size"), lambda spec, _: _image_size(spec)),
    (("num_classes", "n_classes", "num_outputs", "n_outputs", "out_features", "output_size",
      "output_dim", "out_dim"), _num_outputs),
    (("vocab_size", "num_embeddings", "n_tokens", "ntoken"), lambda spec, _: spec.vocab_size or None),
    (("padding_idx", "pad_id"), lambda spec, _: spec.pad_id if spec.vocab_size else None),
    (("seq_len", "sequence_length", "max_length", "max_len", "block_size", "lookback",
      "context_length"), lambda spec, _: _length(spec)),
    (("horizon", "pred_len"), lambda spec, _: spec.horizon or None),
    (("spec",), lambda spec, _: spec),
]  # fmt: skip
DATA_ARGUMENTS = {name: value for names, value in _FROM_DATA for name in names}


def follows_convention(builder: Callable[..., Any]) -> bool:
    """A built-in style builder: ``(spec, num_outputs, /, *, settings...)``."""
    params = list(inspect.signature(builder).parameters.values())
    return len(params) >= 2 and all(p.kind is _KIND.POSITIONAL_ONLY for p in params[:2])


def as_model_builder(target: Any, name: str) -> Any:
    """``target`` as a builder of the built-in form, or unchanged when it is one already."""
    if not callable(target):
        raise ConfigError(f"Model '{name}' is not a class or function; name an nn.Module class.")
    if inspect.isclass(target) and not issubclass(target, nn.Module):
        raise ConfigError(
            f"Model '{name}' is a class but not an nn.Module; name an nn.Module subclass "
            "or a function that returns one."
        )
    if not inspect.isclass(target) and follows_convention(target):
        return target
    params = _parameters(target, name)
    hints = _hints(target)

    def build(spec: DataSpec, num_outputs: int, /, **settings: Any) -> nn.Module:
        arguments = {**_from_data(params, spec, num_outputs, name), **settings}
        model = target(**{k: v for k, v in arguments.items() if v is not None or k in settings})
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Model '{name}' returned {type(model).__name__}, not an nn.Module.")
        if spec.target_kind == "continuous" and spec.target_mean:
            return nn.Sequential(model, Rescale(spec.target_mean, spec.target_std))
        return model

    context = [_KIND("spec", _KIND.POSITIONAL_ONLY), _KIND("num_outputs", _KIND.POSITIONAL_ONLY)]
    settings = [
        _KIND(p.name, _KIND.KEYWORD_ONLY, default=None if p.name in DATA_ARGUMENTS else p.default)
        for p in params
    ]
    build.__signature__ = inspect.Signature(context + settings)  # type: ignore[attr-defined]
    build.__annotations__ = {
        p.name: Any if p.name in DATA_ARGUMENTS else hints.get(p.name, Any) for p in params
    }
    build.__name__ = build.__qualname__ = getattr(target, "__name__", "model")
    build.__doc__ = target.__doc__
    return build


def _parameters(target: Any, name: str) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        raise ConfigError(
            f"Model '{name}' has no readable signature; name a Python class."
        ) from None
    for p in params:
        if p.kind is _KIND.POSITIONAL_ONLY:
            raise ConfigError(
                f"Model '{name}' takes '{p.name}' as positional-only, so torchlab cannot pass "
                f"it by name; make it a normal parameter. torchlab supplies by name: "
                f"{', '.join(sorted(DATA_ARGUMENTS))}."
            )
    return [p for p in params if p.kind in (_KIND.POSITIONAL_OR_KEYWORD, _KIND.KEYWORD_ONLY)]


def _hints(target: Any) -> dict[str, Any]:
    try:
        return get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations: accept any value for those keys
        return {}


def _from_data(
    params: list[inspect.Parameter], spec: DataSpec, num_outputs: int, name: str
) -> dict[str, Any]:
    """The data-determined arguments the constructor asks for; a required one this data
    cannot determine is an error naming it."""
    supplied = {}
    for p in params:
        if p.name not in DATA_ARGUMENTS:
            continue
        value = DATA_ARGUMENTS[p.name](spec, num_outputs)
        if value is None and p.default is _KIND.empty:
            raise ConfigError(
                f"Model '{name}' needs '{p.name}', which this data (inputs {list(spec.input_shape)}) "
                f"does not determine; set model.{p.name} or give it a default."
            )
        supplied[p.name] = value if value is not None else p.default
    return supplied
