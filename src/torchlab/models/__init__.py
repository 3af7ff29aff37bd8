"""Models: ``nn.Module`` builders only; nothing here knows about training or files.

Every builder is registered in :data:`torchlab.registry.MODELS` and called as
``builder(spec, num_outputs, *, settings...)``. A builder whose model needs something of its
inputs (the image statistics of its pretrained weights, its pretrained tokenizer) declares it
with :func:`declares_input_needs`; data sources receive it as an
:class:`~torchlab.data.base.InputNeeds` (:func:`input_needs`), never the model's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from torchlab.data.base import InputNeeds
from torchlab.registry import MODELS

if TYPE_CHECKING:
    from torchlab.config import Component

# Settings that only say where a model's initial weights come from (ImageNet, a file).
INITIAL_WEIGHTS = ("weights", "weights_backbone")

# ``needs(settings) -> InputNeeds``: settings are the builder's config keys, defaults filled in.
NeedsOf = Callable[[Mapping[str, Any]], InputNeeds]
Declared = TypeVar("Declared")


def build_model(component, spec, num_outputs, *, trained=False):  # type: ignore[no-untyped-def]
    """Build the model a config's ``model`` section names.

    ``trained=True`` builds it to receive a run's trained weights: pretrained weights are
    not loaded (nor downloaded, nor required to still exist), since they are replaced.
    """
    if trained:
        blank = {key: "none" for key in INITIAL_WEIGHTS if key in component.params}
        component = component.model_copy(update=blank) if blank else component
    return MODELS.build(component, "model", spec, num_outputs)


def declares_input_needs(needs: NeedsOf) -> Callable[[Declared], Declared]:
    """Decorator: the builder's model needs ``needs(settings)`` of its inputs.

    Works on a user's model class or builder too (it sets its ``input_needs`` attribute).
    """

    def decorate(builder: Declared) -> Declared:
        builder.input_needs = needs  # type: ignore[attr-defined]
        return builder

    return decorate


def input_needs(component: Component) -> InputNeeds:
    """What the model a config's ``model`` section names needs of its inputs.

    A builder that declares nothing needs nothing: the data uses its own statistics and
    tokenizer.
    """
    entry = MODELS.get(component.name, "model.name")
    needs: NeedsOf | None = getattr(entry.source, "input_needs", None)
    if needs is None:
        return InputNeeds()
    settings = entry.schema.model_validate(entry.validate(component.params, "model"))
    return needs(dict(settings))


__all__ = ["build_model", "declares_input_needs", "input_needs"]
