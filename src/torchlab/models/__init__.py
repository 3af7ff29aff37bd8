"""Models: ``nn.Module`` builders only; nothing here knows about training or files.

Every builder is registered in :data:`torchlab.registry.MODELS` and called as
``builder(spec, num_outputs, *, settings...)``.
"""

from torchlab.registry import MODELS


def build_model(component, spec, num_outputs):  # type: ignore[no-untyped-def]
    """Build the model a config's ``model`` section names."""
    return MODELS.build(component, "model", spec, num_outputs)


__all__ = ["build_model"]
