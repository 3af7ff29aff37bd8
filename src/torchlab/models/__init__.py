"""Models: ``nn.Module`` builders only; nothing here knows about training or files.

Every builder is registered in :data:`torchlab.registry.MODELS` and called as
``builder(spec, num_outputs, *, settings...)``.
"""

from torchlab.registry import MODELS

# Settings that only say where a model's initial weights come from (ImageNet, a file).
INITIAL_WEIGHTS = ("weights", "weights_backbone")


def build_model(component, spec, num_outputs, *, trained=False):  # type: ignore[no-untyped-def]
    """Build the model a config's ``model`` section names.

    ``trained=True`` builds it to receive a run's trained weights: pretrained weights are
    not loaded (nor downloaded, nor required to still exist), since they are replaced.
    """
    if trained:
        blank = {key: "none" for key in INITIAL_WEIGHTS if key in component.params}
        component = component.model_copy(update=blank) if blank else component
    return MODELS.build(component, "model", spec, num_outputs)


__all__ = ["build_model"]
